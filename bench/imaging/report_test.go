package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

func res(mode string, n int, wall time.Duration, sent int64) result {
	return result{mode: mode, appliance: mode == modeUnicast || mode == modeChunked || mode == modeMulticast,
		n: n, wall: wall, sent: sent, stored: 400 * mib, diskSize: 1 << 30}
}

// verdicts checks every target on rs, by name.
func verdicts(rs results) map[string]verdict {
	out := map[string]verdict{}
	for _, t := range targets {
		_, v := t.check(rs)
		out[t.name] = v
	}
	return out
}

// The targets' names, in targets' order.
var (
	tMulticast = targets[0].name
	tBytes     = targets[1].name
	tUdpcast   = targets[2].name
	tDelta     = targets[3].name
	tCurl      = targets[4].name
)

// TestTargets: each target is met on its limit's good side, MISSED on the
// other, and not measured while a mode it needs is absent.
func TestTargets(t *testing.T) {
	s := time.Second
	today := results{
		res(modeUnicast, 1, 10*s, 410*mib), res(modeUdpcast, 1, 12*s, 420*mib), res(modeCurl, 1, 9*s, 410*mib),
		res(modeUnicast, 20, 200*s, 8200*mib), res(modeUdpcast, 20, 30*s, 430*mib),
	}
	all := append(slices.Clone(today),
		res(modeChunked, 1, 8*s, 410*mib), res(modeChunkedReload, 1, s, mib), res(modeMulticast, 20, 11*s, 450*mib))
	tests := []struct {
		name string
		rs   results
		want map[string]verdict
	}{
		{"today's modes only", today, map[string]verdict{
			tMulticast: notMeasured, tBytes: notMeasured, tUdpcast: notMeasured, tDelta: notMeasured,
			tCurl: missed, // unicast@1 10s against the pipeline's 9s
		}},
		{"every mode, every target met", all, map[string]verdict{
			// multicast@20 11s against the best one-node load, chunked 8s: 1.375x
			tMulticast: met, tBytes: met, tUdpcast: met, tDelta: met, tCurl: met,
		}},
		{"every mode, every target missed", append(slices.Clone(today),
			res(modeChunked, 1, 10*s, 410*mib), res(modeChunkedReload, 1, 2100*time.Millisecond, 5*mib),
			res(modeMulticast, 20, 31*s, 500*mib)), map[string]verdict{
			tMulticast: missed, tBytes: missed, tUdpcast: missed, tDelta: missed, tCurl: missed,
		}},
		{"on the limits", results{
			res(modeUnicast, 1, 10*s, 410*mib), res(modeCurl, 1, 10*s, 410*mib), res(modeChunked, 1, 10*s, 410*mib),
			res(modeChunkedReload, 1, 2*s, mib), res(modeMulticast, 5, 15*s, 480*mib), res(modeUdpcast, 5, 15*s, 480*mib),
		}, map[string]verdict{
			tMulticast: met, tBytes: met, tUdpcast: met, tDelta: met, tCurl: met,
		}},
		{"one node only: no N-node time ratio, no pipeline", results{
			res(modeMulticast, 1, 10*s, 410*mib), res(modeUdpcast, 1, 12*s, 420*mib), res(modeUnicast, 1, 10*s, 410*mib),
		}, map[string]verdict{
			tMulticast: notMeasured, tBytes: met, tUdpcast: met, tDelta: notMeasured, tCurl: notMeasured,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := verdicts(tc.rs)
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("%s: %s, want %s", name, got[name], want)
				}
			}
		})
	}
}

// TestPrintReport: a table per node count measured, in the order asked,
// pipes escaped; every target on a line with its verdict.
func TestPrintReport(t *testing.T) {
	rs := results{
		res(modeUnicast, 1, 10*time.Second, 400*mib), res(modeCurl, 1, 8*time.Second, 400*mib),
		res(modeUnicast, 5, 50*time.Second, 2000*mib),
	}
	var b strings.Builder
	printReport(&b, rs, []int{5, 1, 20})
	out := b.String()
	for _, want := range []string{
		"| unicast | 50.00 | 21.5 | 2000.0 | 5.00 |",
		`| curl\|zstd\|dd | 8.00 | 134.2 | 400.0 | 1.00 |`,
		`| one node's load >= 1.0x curl\|zstd\|dd | 0.800x the pipeline's speed (unicast@1 10.000s, curl\|zstd\|dd@1 8.000s) | MISSED |`,
		"| delta reload of an unchanged disk >= 5x faster than a full load | - | not measured |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no line %q in\n%s", want, out)
		}
	}
	if i5, i1 := strings.Index(out, "### 5 node(s)"), strings.Index(out, "### 1 node(s)"); i5 < 0 || i1 < 0 || i5 > i1 {
		t.Errorf("tables not for 5 then 1 nodes:\n%s", out)
	}
	if strings.Contains(out, "### 20 node(s)") {
		t.Errorf("a table for 20 nodes, none measured:\n%s", out)
	}
	for _, tg := range targets {
		if strings.Count(out, "| "+cell(tg.name)+" |") != 1 {
			t.Errorf("target %q not on one line:\n%s", tg.name, out)
		}
	}
	// Every row has its header's cells: no pipe left unescaped.
	cells := 0
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "|") {
			continue
		}
		n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|")
		if strings.HasPrefix(l, "| mode |") || strings.HasPrefix(l, "| target |") {
			cells = n
		}
		if n != cells {
			t.Errorf("row %q: %d pipes, its header %d", l, n, cells)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{"1,5,20", []int{1, 5, 20}, false}, {" 20 , 1 ", []int{20, 1}, false}, {"5,5", []int{5}, false},
		{"0", nil, true}, {"1,x", nil, true}, {"", nil, true}, {"201", nil, true},
	} {
		got, err := parseCounts(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("parseCounts(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if got, err := parseModes("udpcast, unicast"); err != nil || !slices.Equal(got, []string{modeUdpcast, modeUnicast}) {
		t.Errorf("parseModes: %v, %v", got, err)
	}
	if _, err := parseModes("unicast,frisbee"); err == nil || !strings.Contains(err.Error(), `"frisbee"`) {
		t.Errorf("parseModes of an unknown mode: %v", err)
	}
}
