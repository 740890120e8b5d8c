package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestAddEventsTrims(t *testing.T) {
	// One batch bringing a node trimEvery or more events always trims it.
	ctx := context.Background()
	s := openTest(t)
	var batch []Event
	for i := range EventsPerNode + 10 {
		batch = append(batch, Event{HRN: "a.sb8", At: t0.Add(time.Duration(i)), Source: "dhcp", What: "DHCPACK", Detail: fmt.Sprint(i)})
	}
	batch = append(batch, Event{HRN: "b.sb8", At: t0, Source: "dhcp", What: "DHCPOFFER"})
	if err := s.AddEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	a, err := s.Events(ctx, "a.sb8")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != EventsPerNode || a[0].Detail != "10" || a[len(a)-1].Detail != fmt.Sprint(EventsPerNode+9) {
		t.Errorf("a.sb8: %d events, first %q last %q", len(a), a[0].Detail, a[len(a)-1].Detail)
	}
	if b, _ := s.Events(ctx, "b.sb8"); len(b) != 1 || b[0].What != "DHCPOFFER" {
		t.Errorf("b.sb8 events = %+v", b)
	}
}

func TestAddEventsKeepsOrderAndBound(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	// Many small batches, 70 rows each (two full multi-row INSERTs and a
	// remainder), a few events per node per batch: trimmed now and then.
	for b := range 100 {
		var batch []Event
		for i := range 70 {
			batch = append(batch, Event{HRN: fmt.Sprintf("n%d", i%10), At: t0.Add(time.Duration(b*70 + i)), Source: "dhcp", What: "DHCPACK", Detail: fmt.Sprint(b*70 + i)})
		}
		if err := s.AddEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := s.Events(ctx, "n3")
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != EventsPerNode {
		t.Fatalf("%d events, want %d", len(ev), EventsPerNode)
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].At.Before(ev[i-1].At) || ev[i].ID <= ev[i-1].ID {
			t.Fatalf("out of order at %d: %+v %+v", i, ev[i-1], ev[i])
		}
	}
	if last := ev[len(ev)-1].Detail; last != fmt.Sprint(99*70+63) {
		t.Errorf("newest event %q", last)
	}
	var rows int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE hrn = 'n3'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows < EventsPerNode {
		t.Errorf("%d rows stored for one node: trimmed below %d", rows, EventsPerNode)
	}
	// A batch that brings a node trimEvery events always trims it. (Smaller
	// ones trim at random, 1 in trimEvery: how many rows are left before
	// this depends on when the last one did.)
	var force []Event
	for i := range trimEvery {
		force = append(force, Event{HRN: "n3", At: t0.Add(time.Hour + time.Duration(i)), Source: "dhcp", What: "DHCPACK"})
	}
	if err := s.AddEvents(ctx, force); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE hrn = 'n3'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != EventsPerNode {
		t.Errorf("%d rows stored for one node after a full batch, want %d", rows, EventsPerNode)
	}
}
