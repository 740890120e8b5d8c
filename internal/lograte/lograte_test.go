package lograte

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLimiter(t *testing.T) {
	type event struct {
		At   time.Duration // since the start
		Key  string
		OK   bool
		Supp int
	}
	tests := []struct {
		name   string
		max    int
		events []event
	}{
		{"first line passes, repeats are counted", 10, []event{
			{0, "a", true, 0},
			{time.Second, "a", false, 0},
			{2 * time.Second, "a", false, 0},
			{9 * time.Second, "a", false, 0},
			{10 * time.Second, "a", true, 3},
			{11 * time.Second, "a", false, 0},
			{30 * time.Second, "a", true, 1},
			{45 * time.Second, "a", true, 0},
		}},
		{"keys do not share a limit", 10, []event{
			{0, "a", true, 0},
			{0, "b", true, 0},
			{time.Second, "a", false, 0},
			{time.Second, "b", false, 0},
		}},
		{"a full table prunes old entries", 2, []event{
			{0, "a", true, 0},
			{0, "b", true, 0},
			{11 * time.Second, "c", true, 0}, // a and b are old: pruned
			{12 * time.Second, "a", true, 0}, // a starts afresh
		}},
		{"a full table of recent entries sends new keys to one shared entry", 2, []event{
			{0, "a", true, 0},
			{0, "b", true, 0},
			{time.Second, "c", true, 0}, // the overflow entry's first line
			{2 * time.Second, "d", false, 0},
			{3 * time.Second, "e", false, 0},
			{4 * time.Second, "a", false, 0}, // a still has its own entry
			{11 * time.Second, "f", true, 0}, // all pruned: f starts afresh, the held-back count is lost
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			var now time.Time
			l := New(10*time.Second, tc.max, "")
			l.now = func() time.Time { return now }
			var got []event
			for _, e := range tc.events {
				now = start.Add(e.At)
				ok, supp := l.Allow(e.Key)
				got = append(got, event{e.At, e.Key, ok, supp})
			}
			if diff := cmp.Diff(tc.events, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if len(l.entries) > tc.max+1 {
				t.Errorf("%d entries, bound %d (+1 overflow)", len(l.entries), tc.max)
			}
		})
	}
}
