package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/bench/internal/diskdata"
)

// TestBenchSmall runs the whole benchmark on a tiny image and two nodes:
// the rig comes up, every mode loads every disk byte-exact (bench fails
// the test otherwise), and the report has a row per mode and node count.
func TestBenchSmall(t *testing.T) {
	o := options{size: 3 * diskdata.Block, nodes: []int{1, 2}, dir: t.TempDir(), rate: "1gbit", udpRate: "900m", verify: true,
		mix: diskdata.Mix{Seed: 1, RandomPct: 40, ZeroPct: 30}}
	var out strings.Builder
	bench(t.Context(), t, o, &out)
	report := out.String()
	for _, n := range o.nodes {
		_, table, _ := strings.Cut(report, fmt.Sprintf("### %d node(s)\n", n))
		table, _, _ = strings.Cut(table, "###")
		for _, m := range modes() {
			if m.oneNode && n > 1 {
				continue
			}
			if !strings.Contains(table, "\n| "+cell(m.name)+" | ") {
				t.Errorf("no row for %s at %d nodes:\n%s", m.name, n, report)
			}
		}
	}
}
