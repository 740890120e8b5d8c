package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/imaging"
	"github.com/orbit-lab/netboot/rc/proto"
)

func TestBoard(t *testing.T) {
	updates := []imaging.Update{
		{Node: "a", Phase: imaging.PhaseNetboot},
		{Node: "b", Phase: imaging.PhaseNetboot},
		{Node: "a", Phase: imaging.PhaseLoad},
		{Node: "a", Phase: imaging.PhaseLoad, Progress: proto.Progress{Done: 10, Total: 100}},
		{Node: "a", Phase: imaging.PhaseLoad, Progress: proto.Progress{Done: 20, Total: 100}}, // same quarter
		{Node: "a", Phase: imaging.PhaseLoad, Progress: proto.Progress{Done: 60, Total: 100}},
		{Node: "b", Phase: imaging.PhaseFailed, Note: "b: no RC"},
	}
	tests := []struct {
		name string
		tty  bool
		want []string // lines written, ANSI sequences removed
	}{
		{"log: a line per step, progress by quarters", false, []string{
			"a  netbooting", "b  netbooting", "a  loading", "a  loading [###-", "a  loading [##################-", "b  failed: b: no RC",
		}},
		{"terminal: every node seen so far redrawn each time", true, []string{
			"a  netbooting", // the first draw: b has not been heard of
			"a  netbooting", "b  netbooting",
			"a  loading", "b  netbooting",
			"a  loading [###-", "b  netbooting",
			"a  loading [######-", "b  netbooting",
			"a  loading [##################-", "b  netbooting",
			"a  loading [##################-", "b  failed: b: no RC",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			b := newBoard(&out)
			b.tty = tc.tty
			for _, u := range updates {
				b.update(u)
			}
			text := out.String()
			// Up the one line drawn before b came, then up both.
			if tc.tty && (strings.Count(text, "\033[1A") != 1 || strings.Count(text, "\033[2A") != len(updates)-2) {
				t.Errorf("want the cursor moved up over the lines drawn before each redraw but the first:\n%q", text)
			}
			for _, esc := range []string{"\033[1A", "\033[2A", "\r\033[K"} {
				text = strings.ReplaceAll(text, esc, "")
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
				// Keep what does not depend on time: up to the bar's first '-'.
				if i := strings.Index(l, "-"); i > 0 && strings.Contains(l, "[") {
					l = l[:i+1]
				}
				got = append(got, strings.TrimRight(l, " "))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
