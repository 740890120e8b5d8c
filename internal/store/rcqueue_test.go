package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/rc/proto"
)

// TestRCCommandsTakenInOrder: an RC gets its queued commands oldest first,
// one at a time: nbctl load queues LOAD_IMAGE before REBOOT, and the
// reboot must not overtake the write. Another enrollment's commands are
// not handed out.
func TestRCCommandsTakenInOrder(t *testing.T) {
	ctx := context.Background()
	at := time.Unix(1000, 0).UTC()
	s, e, other := twoRCs(t, at)
	queue(t, s, other, proto.Execute)
	var want []int64
	for _, typ := range []string{proto.LoadImage, proto.Reboot, proto.Execute} {
		want = append(want, queue(t, s, e, typ).ID)
	}
	var got []int64
	for {
		c, err := s.TakeRCCommand(ctx, e.ID, at)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.State != proto.StateRunning || c.Enrollment != e.ID {
			t.Errorf("taken command %+v: want running, of enrollment %d", c, e.ID)
		}
		got = append(got, c.ID)
		if len(got) > len(want) {
			t.Fatalf("took %v, more than the %d queued", got, len(want))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commands taken (-queued order +taken order):\n%s", diff)
	}
}
