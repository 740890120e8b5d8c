// Package timeline turns TFTP transfers into events on the timeline of the
// node concerned, found in the inventory by its control IP. Traffic from
// hosts that are not in the inventory is not recorded. (dhcpd and the RC
// broker know their node already and write their events to the store.)
//
// It is netbootd's wiring between two services (tftpd's TransferSink and
// the store), so it lives under cmd/netbootd: no internal/ package imports
// a service.
package timeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/tftpd"
)

// Store is what the recorder needs of the database.
type Store interface {
	NodeByIP(ctx context.Context, ip string) (inventory.Node, error)
	AddEvent(ctx context.Context, e store.Event) error
}

// Recorder writes events; it is safe for concurrent use.
type Recorder struct {
	st  Store
	log *slog.Logger
	now func() time.Time
}

// New returns a Recorder writing to st.
func New(st Store, log *slog.Logger) *Recorder {
	return &Recorder{st: st, log: log, now: time.Now}
}

var _ tftpd.TransferSink = (*Recorder)(nil)

// TransferDone records a TFTP read of a known node. A missing file is not
// an event: pxelinux asks for several config names before one exists.
func (r *Recorder) TransferDone(ctx context.Context, t tftpd.Transfer) {
	if errors.Is(t.Err, tftpd.ErrNotFound) {
		return
	}
	n, err := r.st.NodeByIP(ctx, t.Client.Addr().String())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.log.Error("timeline: node lookup", "ip", t.Client.Addr(), "err", err)
		}
		return
	}
	detail := fmt.Sprintf("%d bytes, blksize %d, %s", t.Bytes, t.BlkSize, t.Duration.Round(time.Millisecond))
	if t.Err != nil {
		detail = fmt.Sprintf("failed after %d bytes: %v", t.Bytes, t.Err)
	}
	r.add(ctx, store.Event{HRN: n.HRN, At: r.now(), Source: "tftp", What: t.File, Detail: detail})
}

// add writes an event; a transfer cut by shutdown is still recorded.
func (r *Recorder) add(ctx context.Context, e store.Event) {
	if err := r.st.AddEvent(context.WithoutCancel(ctx), e); err != nil {
		r.log.Error("timeline: add event", "hrn", e.HRN, "err", err)
	}
}
