package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// TestRecentEvents: the newest n events of every node, oldest first
// within a node, nodes apart; a node with fewer gives all it has.
func TestRecentEvents(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	t0 := time.Unix(1000, 0).UTC()
	for i := range 5 {
		for _, hrn := range []string{"b.sb8", "a.sb8"} {
			if err := s.AddEvent(ctx, Event{HRN: hrn, At: t0.Add(time.Duration(i) * time.Second), Source: "dhcp", What: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.AddEvent(ctx, Event{HRN: "c.sb8", At: t0, Source: "rc", What: "enrolled"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, "a.sb8:4 b.sb8:4 c.sb8:enrolled "},
		{3, "a.sb8:2 a.sb8:3 a.sb8:4 b.sb8:2 b.sb8:3 b.sb8:4 c.sb8:enrolled "},
		{9, "a.sb8:0 a.sb8:1 a.sb8:2 a.sb8:3 a.sb8:4 b.sb8:0 b.sb8:1 b.sb8:2 b.sb8:3 b.sb8:4 c.sb8:enrolled "},
	} {
		evs, err := s.RecentEvents(ctx, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, e := range evs {
			if e.ID == 0 || !e.At.After(t0.Add(-time.Second)) {
				t.Errorf("n=%d: event without its id or time: %+v", tc.n, e)
			}
			got += e.HRN + ":" + e.What + " "
		}
		if got != tc.want {
			t.Errorf("n=%d: %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestActiveRCCommands: queued and running commands of every node, not
// those that are over.
func TestActiveRCCommands(t *testing.T) {
	ctx := context.Background()
	s, e, other := twoRCs(t, time.Unix(1000, 0).UTC())
	done := queue(t, s, e, proto.Execute)
	if _, err := s.TakeRCCommand(ctx, e.ID, time.Unix(1001, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.ReportRCCommand(ctx, done.ID, e.ID, proto.Report{Seq: 1, State: proto.StateDone, Reply: "OK"}, 1<<10, time.Unix(1002, 0)); err != nil {
		t.Fatal(err)
	}
	running := queue(t, s, e, proto.Execute)
	if _, err := s.TakeRCCommand(ctx, e.ID, time.Unix(1003, 0)); err != nil {
		t.Fatal(err)
	}
	queued := queue(t, s, other, proto.Execute)
	got, err := s.ActiveRCCommands(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != running.ID || got[0].State != proto.StateRunning || got[1].ID != queued.ID || got[1].State != proto.StateQueued {
		t.Errorf("active: %+v; want %d running, %d queued", got, running.ID, queued.ID)
	}
}
