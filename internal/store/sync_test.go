package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// TestSyncInventory: the inventory becomes what the file says, and only
// what the file changes is written: an unchanged node keeps its timeline
// and boot link, a node the file drops goes with its timeline, an empty
// testbed the file drops goes.
func TestSyncInventory(t *testing.T) {
	a := node("a.sb8", "10.0.0.1", "00:00:00:00:00:01")
	b := node("b.sb8", "10.0.0.2", "00:00:00:00:00:02")
	c := node("c.sb8", "10.0.0.3", "00:00:00:00:00:03")
	withPower := func(n inventory.Node) inventory.Node { n.Power = "qemu:/run/n.qmp"; return n }
	moved := func(n inventory.Node, ip string) inventory.Node { n.ControlIP = ip; return n }
	start := inventory.File{
		Images: []inventory.Image{{Name: "orbit-2.0.0"}, {Name: "registered"}},
		Testbeds: []inventory.Testbed{
			{Domain: "sb8", Nodes: []inventory.Node{a, b}},
			{Domain: "grid", Nodes: []inventory.Node{node("g.grid", "10.1.0.1", "00:00:00:01:00:01")}},
		},
	}
	tests := []struct {
		name      string
		to        inventory.File
		want      SyncResult // hrns and counts; Removed and Readdressed by hrn
		removed   []string
		readdress []string
		testbeds  []string
	}{
		{
			name: "power added to one node, one node added, a testbed dropped",
			to:   file("sb8", a, withPower(b), c),
			want: SyncResult{Added: []string{"c.sb8"}, Changed: []string{"b.sb8"}, Unchanged: 1},
			// grid's node goes, and grid with it.
			removed:  []string{"g.grid"},
			testbeds: []string{"sb8"},
		},
		{
			name:     "a node removed, an empty testbed named in the file stays",
			to:       inventory.File{Testbeds: []inventory.Testbed{{Domain: "sb8", Nodes: []inventory.Node{a}}, {Domain: "grid"}}},
			want:     SyncResult{Unchanged: 1},
			removed:  []string{"b.sb8", "g.grid"},
			testbeds: []string{"grid", "sb8"},
		},
		{
			name:      "two nodes swap addresses",
			to:        file("sb8", moved(withPower(a), "10.0.0.2"), inventory.Node{HRN: "b.sb8", Hostname: "b", ControlIP: "10.0.0.1", ControlMAC: "00:00:00:00:00:02"}),
			want:      SyncResult{Changed: []string{"a.sb8", "b.sb8"}},
			removed:   []string{"g.grid"},
			readdress: []string{"a.sb8", "b.sb8"},
			testbeds:  []string{"sb8"},
		},
		{
			name:     "the same file again changes nothing",
			to:       start,
			want:     SyncResult{Unchanged: 3},
			testbeds: []string{"grid", "sb8"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := openTest(t)
			if _, err := s.SyncInventory(ctx, start); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for _, hrn := range []string{"a.sb8", "b.sb8", "g.grid"} {
				if err := s.AddEvent(ctx, Event{HRN: hrn, At: now, Source: "dhcp", What: "ack"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetLinks(ctx, []BootLink{{HRN: "a.sb8", ControlIP: "10.0.0.1", Hex: "0A000001", Image: "orbit-2.0.0"}}, now, time.Hour); err != nil {
				t.Fatal(err)
			}
			got, err := s.SyncInventory(ctx, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			hrns := func(ns []inventory.Node) (out []string) {
				for _, n := range ns {
					out = append(out, n.HRN)
				}
				slices.Sort(out)
				return out
			}
			if diff := cmp.Diff(tc.removed, hrns(got.Removed)); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.readdress, hrns(got.Readdressed)); diff != "" {
				t.Errorf("readdressed (-want +got):\n%s", diff)
			}
			got.Removed, got.Readdressed = nil, nil
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			// The database now exports what the file says.
			exp, err := s.Export(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := tc.to.Normalize()
			for _, tb := range want.Testbeds {
				i := slices.IndexFunc(exp.Testbeds, func(e inventory.Testbed) bool { return e.Domain == tb.Domain })
				if i < 0 || !cmp.Equal(exp.Testbeds[i].Nodes, tb.Nodes, cmpEmptyNil) {
					t.Errorf("testbed %s after the sync: %+v, want %+v", tb.Domain, exp.Testbeds, tb)
				}
			}
			var domains []string
			for _, tb := range exp.Testbeds {
				domains = append(domains, tb.Domain)
			}
			if diff := cmp.Diff(tc.testbeds, domains); diff != "" {
				t.Errorf("testbeds (-want +got):\n%s", diff)
			}
			// Images are never removed: nbctl image build registers some.
			if imgs, _ := s.Images(ctx); len(imgs) != 2 {
				t.Errorf("images %v: want both kept", imgs)
			}
			for _, hrn := range []string{"a.sb8", "b.sb8", "g.grid"} {
				evs, err := s.Events(ctx, hrn)
				kept := !slices.Contains(tc.removed, hrn)
				if err != nil || (len(evs) == 1) != kept {
					t.Errorf("%s: events %v, %v; want kept: %v", hrn, evs, err, kept)
				}
			}
			// The store leaves boot links to the caller (pxelink clears the
			// files and the rows together).
			if links, err := s.Links(ctx, now); err != nil || len(links) != 1 || links[0].HRN != "a.sb8" {
				t.Errorf("links %+v, %v: want a's untouched", links, err)
			}
		})
	}
}

// cmpEmptyNil: a testbed without nodes exports nil nodes.
var cmpEmptyNil = cmp.Transformer("nonil", func(ns []inventory.Node) []inventory.Node {
	if ns == nil {
		return []inventory.Node{}
	}
	return ns
})

// TestSyncInventoryRejects: a bad document changes nothing and names
// every problem.
func TestSyncInventoryRejects(t *testing.T) {
	ctx := t.Context()
	s := openTest(t)
	good := file("sb8", node("a.sb8", "10.0.0.1", "00:00:00:00:00:01"))
	if _, err := s.SyncInventory(ctx, good); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Export(ctx)
	bad := file("sb8", node("b.sb8", "10.0.0.2", "00:00:00:00:00:02"), node("c.sb8", "10.0.0.2", "zz"))
	_, err := s.SyncInventory(ctx, bad)
	var ie *inventory.Error
	if !errors.As(err, &ie) || len(ie.Problems) != 1 {
		t.Fatalf("SyncInventory: %v, want one problem", err)
	}
	after, _ := s.Export(ctx)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("a rejected sync changed the inventory (-before +after):\n%s", diff)
	}
}
