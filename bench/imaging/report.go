package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// result is one mode's load onto n nodes.
type result struct {
	mode      string
	appliance bool // the mode is the appliance's own full load
	n         int
	wall      time.Duration
	sent      int64 // bytes the appliance's link sent meanwhile
	stored    int64 // the stored image's size
	diskSize  int64
}

// ratio is sent over stored: 1.0 is the image sent once.
func (r result) ratio() float64 { return float64(r.sent) / float64(r.stored) }

// perNode is each node's rate, in MB/s of disk bytes.
func (r result) perNode() float64 { return float64(r.diskSize) / 1e6 / r.wall.Seconds() }

type results []result

func (rs results) get(mode string, n int) (result, bool) {
	for _, r := range rs {
		if r.mode == mode && r.n == n {
			return r, true
		}
	}
	return result{}, false
}

// oneNode is the fastest full load the appliance made onto one node.
func (rs results) oneNode() (result, bool) {
	var best result
	for _, r := range rs {
		if r.appliance && r.n == 1 && (best.mode == "" || r.wall < best.wall) {
			best = r
		}
	}
	return best, best.mode != ""
}

// most is the largest node count measured (the targets speak of
// 20 nodes: the default -nodes ends there).
func (rs results) most() int {
	n := 0
	for _, r := range rs {
		n = max(n, r.n)
	}
	return n
}

// printTable prints the results at n nodes as a Markdown table.
func printTable(w io.Writer, rs results, n int) {
	fmt.Fprintf(w, "\n### %d node(s)\n\n", n)
	fmt.Fprintln(w, "| mode | wall s | MB/s per node | appliance MiB sent | x stored size |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, r := range rs {
		if r.n == n {
			fmt.Fprintf(w, "| %s | %.2f | %.1f | %.1f | %.2f |\n", cell(r.mode), r.wall.Seconds(), r.perNode(), float64(r.sent)/(1<<20), r.ratio())
		}
	}
}

// cell escapes a Markdown table cell's pipes (curl|zstd|dd).
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// verdict is a target's outcome.
type verdict string

const (
	met         verdict = "met"
	missed      verdict = "MISSED"
	notMeasured verdict = "not measured"
)

// target is one of issue 16's goals, checked on the results: what it
// measured (empty when not measured) and whether that meets it.
type target struct {
	name  string
	check func(rs results) (string, verdict)
}

// within is met if value <= limit.
func within(value, limit float64) verdict {
	if value <= limit {
		return met
	}
	return missed
}

func label(r result) string { return fmt.Sprintf("%s@%d %.3fs", r.mode, r.n, r.wall.Seconds()) }

// targets are issue 16's, point 5. Those at "N nodes" take the largest N
// of the run (20 with the default -nodes).
var targets = []target{
	{"N nodes by multicast in <= 1.5x one node's time", func(rs results) (string, verdict) {
		mc, ok1 := rs.get(modeMulticast, rs.most())
		one, ok2 := rs.oneNode()
		if !ok1 || !ok2 || rs.most() < 2 {
			return "", notMeasured
		}
		v := mc.wall.Seconds() / one.wall.Seconds()
		return fmt.Sprintf("%.3fx (%s / %s)", v, label(mc), label(one)), within(v, 1.5)
	}},
	{"appliance bytes <= 1.2x the stored image (multicast, N nodes)", func(rs results) (string, verdict) {
		mc, ok := rs.get(modeMulticast, rs.most())
		if !ok {
			return "", notMeasured
		}
		return fmt.Sprintf("%.3fx (%d nodes: %.1f MiB of %.1f MiB)", mc.ratio(), mc.n, float64(mc.sent)/(1<<20), float64(mc.stored)/(1<<20)),
			within(mc.ratio(), 1.2)
	}},
	{"multicast at least udpcast's speed (N nodes)", func(rs results) (string, verdict) {
		mc, ok1 := rs.get(modeMulticast, rs.most())
		uc, ok2 := rs.get(modeUdpcast, rs.most())
		if !ok1 || !ok2 {
			return "", notMeasured
		}
		v := uc.wall.Seconds() / mc.wall.Seconds()
		return fmt.Sprintf("%.3fx udpcast's speed (%s, %s)", v, label(mc), label(uc)), within(1.0, v)
	}},
	{"delta reload of an unchanged disk >= 5x faster than a full load", func(rs results) (string, verdict) {
		full, ok1 := rs.get(modeChunked, 1)
		re, ok2 := rs.get(modeChunkedReload, 1)
		if !ok1 || !ok2 {
			return "", notMeasured
		}
		v := full.wall.Seconds() / re.wall.Seconds()
		return fmt.Sprintf("%.1fx faster (%s, %s)", v, label(re), label(full)), within(5.0, v)
	}},
	{"one node's load >= 1.0x curl|zstd|dd", func(rs results) (string, verdict) {
		one, ok1 := rs.oneNode()
		pipe, ok2 := rs.get(modeCurl, 1)
		if !ok1 || !ok2 {
			return "", notMeasured
		}
		v := pipe.wall.Seconds() / one.wall.Seconds()
		return fmt.Sprintf("%.3fx the pipeline's speed (%s, %s)", v, label(one), label(pipe)), within(1.0, v)
	}},
}

// printReport prints a table per node count, in the order given, and the
// targets.
func printReport(w io.Writer, rs results, counts []int) {
	for _, n := range counts {
		if !slices.ContainsFunc(rs, func(r result) bool { return r.n == n }) {
			continue
		}
		printTable(w, rs, n)
	}
	fmt.Fprintf(w, "\n### Targets (issue 16)\n\n")
	fmt.Fprintln(w, "| target | measured | verdict |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, t := range targets {
		value, v := t.check(rs)
		if value == "" {
			value = "-"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", cell(t.name), cell(value), v)
	}
}
