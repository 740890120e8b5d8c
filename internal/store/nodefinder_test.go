package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNodeFinderFollowsInventory(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	a := node("a.sb8", "10.0.0.1", "00:00:00:00:00:01")
	a.Domain = "sb8"
	if _, err := s.PutNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	f, err := s.NewNodeFinder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := t0
	f.now = func() time.Time { return now }
	lookup := func() string {
		n, err := f.NodeByMAC(ctx, "00:00:00:00:00:01")
		if errors.Is(err, ErrNotFound) {
			return "not found"
		}
		if err != nil {
			t.Fatal(err)
		}
		return n.HRN + " " + n.ControlIP + " " + n.Domain
	}
	want := func(w string) {
		t.Helper()
		if got := lookup(); got != w {
			t.Errorf("NodeByMAC = %q, want %q", got, w)
		}
	}
	want("a.sb8 10.0.0.1 sb8")
	if _, err := f.NodeByMAC(ctx, "00:00:00:00:00:99"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown MAC: %v", err)
	}
	a.ControlIP = "10.0.0.7"
	if _, err := s.PutNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	want("a.sb8 10.0.0.1 sb8") // within NodeFinderMaxStale: the cache
	now = now.Add(NodeFinderMaxStale)
	want("a.sb8 10.0.0.7 sb8")
	if err := s.Import(ctx, file("grid", node("a.sb8", "10.0.0.8", "00:00:00:00:00:01"))); err != nil {
		t.Fatal(err)
	}
	now = now.Add(NodeFinderMaxStale)
	want("a.sb8 10.0.0.8 grid")
	if err := s.DeleteNode(ctx, "a.sb8"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(NodeFinderMaxStale)
	want("not found")
	// And it agrees with Store.NodeByMAC.
	if _, err := s.NodeByMAC(ctx, "00:00:00:00:00:01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Store.NodeByMAC: %v", err)
	}
}
