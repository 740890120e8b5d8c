package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// openTest opens a store in a fresh directory, closed when the test ends.
func openTest(tb testing.TB) *Store {
	tb.Helper()
	return openDir(tb, tb.TempDir())
}

// openDir opens the store in dir, closed when the test ends.
func openDir(tb testing.TB, dir string) *Store {
	tb.Helper()
	s, err := Open(tb.Context(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// reopen closes s and opens its directory again, as a restart of netbootd
// does: what a test finds then was on disk.
func reopen(tb testing.TB, s *Store, dir string) *Store {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return openDir(tb, dir)
}

func node(hrn, ip, mac string) inventory.Node {
	return inventory.Node{HRN: hrn, Hostname: strings.Split(hrn, ".")[0], ControlIP: ip, ControlMAC: mac}
}

func file(domain string, nodes ...inventory.Node) inventory.File {
	return inventory.File{
		Images:   []inventory.Image{{Name: "orbit-2.0.0", Description: "RAM image"}},
		Testbeds: []inventory.Testbed{{Domain: domain, Nodes: nodes}},
	}
}

func TestImportRejectsWholeFile(t *testing.T) {
	tests := []struct {
		name  string
		f     inventory.File
		wants []string // each must appear in the error
	}{
		{"duplicate hrn", file("sb8", node("a.sb8", "10.0.0.1", "00:00:00:00:00:01"), node("a.sb8", "10.0.0.2", "00:00:00:00:00:02")),
			[]string{`duplicate hrn a.sb8`}},
		{"duplicate ip and mac, two offenders", file("sb8",
			node("a.sb8", "10.0.0.1", "00:00:00:00:00:01"), node("b.sb8", "10.0.0.1", "00:00:00:00:00:02"), node("c.sb8", "10.0.0.3", "00:00:00:00:00:01")),
			[]string{`node "b.sb8": duplicate control_ip 10.0.0.1`, `node "c.sb8": duplicate control_mac 00:00:00:00:00:01`}},
		{"malformed ip and mac", file("sb8", node("a.sb8", "10.0.0.256", "00:00:00:00:00:01"), node("b.sb8", "10.0.0.2", "zz:00")),
			[]string{`control_ip "10.0.0.256"`, `control_mac "zz:00"`}},
		{"ipv6 control ip", file("sb8", node("a.sb8", "fe80::1", "00:00:00:00:00:01")), []string{`not an IPv4 address`}},
		{"bad hrn", file("sb8", node("../etc", "10.0.0.1", "00:00:00:00:00:01")), []string{`hrn "../etc"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			s := openTest(t)
			err := s.Import(ctx, tt.f)
			var ie *inventory.Error
			if !errors.As(err, &ie) {
				t.Fatalf("Import error = %v, want *inventory.Error", err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n, _ := s.NodeCount(ctx); n != 0 {
				t.Errorf("%d nodes stored after a rejected import", n)
			}
			if imgs, _ := s.Images(ctx); len(imgs) != 0 {
				t.Errorf("images stored after a rejected import: %v", imgs)
			}
		})
	}
}

func TestImportMergesAndChecksAgainstDatabase(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.Import(ctx, file("sb8", node("a.sb8", "10.0.0.1", "00:00:00:00:00:01"), node("b.sb8", "10.0.0.2", "00:00:00:00:00:02"))); err != nil {
		t.Fatal(err)
	}
	// c takes a's MAC while a stays: rejected, naming both.
	err := s.Import(ctx, file("sb8", node("c.sb8", "10.0.0.3", "00:00:00:00:00:01")))
	if err == nil || !strings.Contains(err.Error(), `node "c.sb8": duplicate control_mac 00:00:00:00:00:01 (already used by node "a.sb8"`) {
		t.Fatalf("conflict with the database: err = %v", err)
	}
	// a and b swap addresses in one file: fine, since both are replaced.
	if err := s.Import(ctx, file("sb8", node("a.sb8", "10.0.0.2", "00:00:00:00:00:02"), node("b.sb8", "10.0.0.1", "00:00:00:00:00:01"))); err != nil {
		t.Fatalf("swap: %v", err)
	}
	n, err := s.NodeByIP(ctx, "10.0.0.1")
	if err != nil || n.HRN != "b.sb8" {
		t.Fatalf("NodeByIP(10.0.0.1) = %v, %v; want b.sb8", n.HRN, err)
	}
	if _, err := s.Node(ctx, "zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing node: err = %v, want ErrNotFound", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	in := file("sb8", inventory.Node{HRN: "node1-2.sb8.orbit-lab.org", Hostname: "node1-2", ControlIP: "10.18.1.2",
		ControlMAC: "00:03:1D:0C:01:02", X: 1, Y: 2, PXEImage: "orbit-2.0.0", Disk: "/dev/sda"})
	if err := s.Import(ctx, in); err != nil {
		t.Fatal(err)
	}
	out, err := s.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := out.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := inventory.ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := in.Normalize() // the MAC comes back in canonical form
	for i := range want.Testbeds[0].Nodes {
		want.Testbeds[0].Nodes[i].Domain = ""
	}
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("export round trip (-want +got):\n%s", diff)
	}
}

func TestLookupNode(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	f := inventory.File{Testbeds: []inventory.Testbed{
		{Domain: "sb8", Nodes: []inventory.Node{node("node1-1.sb8", "10.0.0.1", "00:00:00:00:00:01")}},
		{Domain: "grid", Nodes: []inventory.Node{node("node1-1.grid", "10.0.1.1", "00:00:00:00:01:01")}},
	}}
	if err := s.Import(ctx, f); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain, name, want string
		err                error
	}{
		{"sb8", "node1-1", "node1-1.sb8", nil},
		{"grid", "node1-1", "node1-1.grid", nil},
		{"", "node1-1.grid", "node1-1.grid", nil},
		{"", "node1-1", "", ErrAmbiguous},
		{"sb8", "node1-1.grid", "", ErrNotFound},
		{"sb8", "nope", "", ErrNotFound},
	}
	for _, tt := range tests {
		n, err := s.LookupNode(ctx, tt.domain, tt.name)
		if !errors.Is(err, tt.err) || n.HRN != tt.want {
			t.Errorf("LookupNode(%q, %q) = %q, %v; want %q, %v", tt.domain, tt.name, n.HRN, err, tt.want, tt.err)
		}
	}
}

func TestLinkReferences(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1000, 0)
	a := BootLink{HRN: "a", ControlIP: "10.0.0.1", Hex: "0A000001", Image: "img1"}
	// Two sets: the link lives until the later reference expires, as OMF's
	// count went 2 -> 1 -> removed.
	if err := s.SetLinks(ctx, []BootLink{a}, t0, 300*time.Second); err != nil {
		t.Fatal(err)
	}
	a.Image = "img2"
	if err := s.SetLinks(ctx, []BootLink{a}, t0.Add(100*time.Second), 300*time.Second); err != nil {
		t.Fatal(err)
	}
	links, _ := s.Links(ctx, t0.Add(150*time.Second))
	if len(links) != 1 || links[0].Refs != 2 || links[0].Image != "img2" || !links[0].ExpiresAt.Equal(t0.Add(400*time.Second)) {
		t.Fatalf("after two sets: %+v", links)
	}
	gone, _ := s.ExpireLinks(ctx, t0.Add(300*time.Second))
	links, _ = s.Links(ctx, t0.Add(300*time.Second))
	if len(gone) != 0 || len(links) != 1 || links[0].Refs != 1 {
		t.Fatalf("after the first expiry: gone %v, links %+v", gone, links)
	}
	gone, _ = s.ExpireLinks(ctx, t0.Add(400*time.Second))
	if len(gone) != 1 || gone[0].Hex != "0A000001" {
		t.Fatalf("after the last expiry: gone %+v", gone)
	}
	if links, _ := s.Links(ctx, t0.Add(400*time.Second)); len(links) != 0 {
		t.Fatalf("link outlived its references: %+v", links)
	}
	// A shorter lifetime on a later set never shortens the link.
	if err := s.SetLinks(ctx, []BootLink{a}, t0, 300*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLinks(ctx, []BootLink{a}, t0.Add(10*time.Second), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	links, _ = s.Links(ctx, t0.Add(20*time.Second))
	if len(links) != 1 || !links[0].ExpiresAt.Equal(t0.Add(300*time.Second)) {
		t.Fatalf("short override shortened the link: %+v", links)
	}
	if err := s.ClearLinks(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if links, _ := s.Links(ctx, t0); len(links) != 0 {
		t.Fatalf("clear left %+v", links)
	}
}

func TestEventsBounded(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1000, 0)
	for i := 0; i < EventsPerNode+20; i++ {
		for _, hrn := range []string{"a", "b"} {
			if err := s.AddEvent(ctx, Event{HRN: hrn, At: t0.Add(time.Duration(i) * time.Second), Source: "tftp", What: "read"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	evs := keptEvents(ctx, t, s, "a")
	if !evs[0].At.Equal(t0.Add(20*time.Second)) || !evs[len(evs)-1].At.Equal(t0.Add(time.Duration(EventsPerNode+19)*time.Second)) {
		t.Errorf("kept the wrong events: first %v last %v", evs[0].At, evs[len(evs)-1].At)
	}
}

// keptEvents is a node's event log after more than EventsPerNode events:
// the test stops unless it holds exactly that many.
func keptEvents(ctx context.Context, t *testing.T, s *Store, hrn string) []Event {
	t.Helper()
	evs, err := s.Events(ctx, hrn)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != EventsPerNode {
		t.Fatalf("%s: %d events kept, want %d", hrn, len(evs), EventsPerNode)
	}
	return evs
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDir(t, dir)
	if err := s.Import(ctx, file("sb8", node("a.sb8", "10.0.0.1", "00:00:00:00:00:01"))); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir) // migrations must not run twice
	if n, _ := s.NodeCount(ctx); n != 1 {
		t.Fatalf("NodeCount after reopen = %d", n)
	}
}

func TestLookupNodesBatch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var nodes []inventory.Node
	var names []string
	for i := range 1500 { // more than one query's worth
		hrn := fmt.Sprintf("n%d.grid", i)
		nodes = append(nodes, node(hrn, fmt.Sprintf("10.%d.%d.1", i/250, i%250), fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256)))
		names = append(names, hrn)
	}
	if err := s.Import(ctx, file("grid", nodes...)); err != nil {
		t.Fatal(err)
	}
	names = append(names, "n7", "ghost", "n3.grid") // a hostname, an unknown, a repeat
	found, missing, err := s.LookupNodes(ctx, "grid", names)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1502 || found[0].HRN != "n0.grid" || found[1500].HRN != "n7.grid" || found[1501].HRN != "n3.grid" {
		t.Errorf("found %d nodes, first %q", len(found), found[0].HRN)
	}
	if diff := cmp.Diff([]string{"ghost"}, missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
}

func TestLinksWhenAddressesSwap(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1000, 0)
	a := BootLink{HRN: "a", ControlIP: "10.0.0.1", Hex: "0A000001", Image: "img"}
	b := BootLink{HRN: "b", ControlIP: "10.0.0.2", Hex: "0A000002", Image: "img"}
	if err := s.SetLinks(ctx, []BootLink{a, b}, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The inventory swapped their addresses; both are set again at once.
	a.ControlIP, a.Hex, b.ControlIP, b.Hex = b.ControlIP, b.Hex, a.ControlIP, a.Hex
	if err := s.SetLinks(ctx, []BootLink{a, b}, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	names, err := s.LinkNames(ctx, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "0A000002", "b": "0A000001"}, names); diff != "" {
		t.Errorf("link names after the swap (-want +got):\n%s", diff)
	}
	// Then a moved away without being set again, and c took its address:
	// pxelinux.cfg/0A000002 is now c's file, so a's row under that name is
	// stale and must go, or a would be reported (and later expired) as
	// owning c's file.
	c := BootLink{HRN: "c", ControlIP: a.ControlIP, Hex: a.Hex, Image: "other"}
	if err := s.SetLinks(ctx, []BootLink{c}, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	names, err = s.LinkNames(ctx, []string{"a", "b", "c", "zz"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"b": "0A000001", "c": "0A000002"}, names); diff != "" {
		t.Errorf("link names after c took a's address (-want +got):\n%s", diff)
	}
	links, err := s.Links(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	byHex := map[string][]string{}
	for _, l := range links {
		byHex[l.Hex] = append(byHex[l.Hex], l.HRN+" "+l.ControlIP+" "+l.Image)
	}
	want := map[string][]string{"0A000001": {"b 10.0.0.1 img"}, "0A000002": {"c 10.0.0.2 other"}}
	if diff := cmp.Diff(want, byHex); diff != "" {
		t.Errorf("links by hex name (-want +got):\n%s", diff)
	}
}

// TestObserveEvents: observers see each committed event once, from both
// AddEvent and AddEvents, and nothing of a write that failed.
func TestObserveEvents(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var seen []string
	var at []time.Time
	s.ObserveEvents(func(e Event) {
		seen = append(seen, e.HRN+" "+e.What)
		at = append(at, e.At)
	})
	// In a zone of its own: observers get UTC, as the store reads it back.
	t0 := time.Unix(1000, 0).In(time.FixedZone("UTC+5", 5*3600))
	if err := s.AddEvent(ctx, Event{HRN: "a", At: t0, Source: "dhcp", What: "DHCPOFFER"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvents(ctx, []Event{{HRN: "b", At: t0, Source: "dhcp", What: "DHCPACK"}, {HRN: "a", At: t0, Source: "rc", What: "enrolled"}}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.AddEvent(canceled, Event{HRN: "c", At: t0, Source: "dhcp", What: "DHCPOFFER"}); err == nil {
		t.Error("AddEvent with a canceled context succeeded")
	}
	if want := []string{"a DHCPOFFER", "b DHCPACK", "a enrolled"}; !slices.Equal(seen, want) {
		t.Errorf("observed %q, want %q", seen, want)
	}
	stored, err := s.Events(ctx, "a")
	if err != nil || len(stored) == 0 {
		t.Fatalf("events of a: %v %v", stored, err)
	}
	for _, a := range at {
		if a != stored[0].At {
			t.Errorf("observed time %v, the store gives back %v", a, stored[0].At)
		}
	}
}
