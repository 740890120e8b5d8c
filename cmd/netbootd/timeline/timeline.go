// Package timeline turns boot-file transfers, TFTP's and HTTP's, into
// events on the timeline of the node concerned, found in the inventory by
// its control IP, and counts them all in netbootd's metrics. Traffic from
// hosts that are not in the inventory is counted, not recorded. (dhcpd and the RC broker know their node already and write
// their events to the store.)
//
// It is netbootd's wiring between services (tftpd's TransferSink,
// httpboot's Sink) and the store, so it lives under cmd/netbootd: no
// internal/ package imports a service.
package timeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/orbit-lab/netboot/am/httpboot"
	"github.com/orbit-lab/netboot/internal/bootpath"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/metrics"
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
	met *metrics.Metrics
	log *slog.Logger
	now func() time.Time
}

// New returns a Recorder writing to st and counting in met (nil: not
// counted).
func New(st Store, met *metrics.Metrics, log *slog.Logger) *Recorder {
	return &Recorder{st: st, met: met, log: log, now: time.Now}
}

var (
	_ tftpd.TransferSink = (*Recorder)(nil)
	_ httpboot.Sink      = (*Recorder)(nil)
)

// TransferDone records a TFTP read of a known node. A missing file is not
// an event: pxelinux asks for several config names before one exists.
func (r *Recorder) TransferDone(ctx context.Context, t tftpd.Transfer) {
	r.met.Transfer("tftp", outcome(t.Err, errors.Is(t.Err, tftpd.ErrNotFound), false), t.Bytes, t.Duration)
	r.met.TFTPUnacked(t.Unacked)
	if errors.Is(t.Err, tftpd.ErrNotFound) {
		return
	}
	detail := fmt.Sprintf("%d bytes, blksize %d, %s", t.Bytes, t.BlkSize, t.Duration.Round(time.Millisecond))
	if t.Err != nil {
		detail = fmt.Sprintf("failed after %d bytes: %v", t.Bytes, t.Err)
	}
	if t.Unacked > 0 {
		// A lossy link to this node shows on its timeline.
		detail += fmt.Sprintf(", %d not acknowledged in time", t.Unacked)
	}
	r.add(ctx, t.Client.Addr(), "tftp", t.File, detail)
}

// FetchDone records a known node's HTTP GET of a boot file, as
// TransferDone does a TFTP read. A HEAD (UEFI HTTP Boot asks one before
// its GET) and a write attempt moved no file, and a missing file is a
// probe (shim asks for revocation lists most sites do not have): none is
// an event.
func (r *Recorder) FetchDone(ctx context.Context, f httpboot.Fetch) {
	if f.Method == http.MethodGet {
		r.met.Transfer("http", outcome(f.Err, errors.Is(f.Err, bootpath.ErrNotFound), f.Status == http.StatusNotModified), f.Bytes, f.Duration)
	}
	if f.Method != http.MethodGet || errors.Is(f.Err, bootpath.ErrNotFound) {
		return
	}
	took := f.Duration.Round(time.Millisecond)
	var detail string
	switch {
	case f.Err != nil:
		detail = fmt.Sprintf("failed after %d bytes: %v", f.Bytes, f.Err)
	case f.Status == http.StatusPartialContent:
		detail = fmt.Sprintf("partial: %s, %d of %d bytes, %s", f.Range, f.Bytes, f.Size, took)
	case f.Status == http.StatusNotModified:
		detail = fmt.Sprintf("not modified, %s", took)
	default:
		detail = fmt.Sprintf("%d bytes, %s", f.Bytes, took)
	}
	r.add(ctx, f.Client.Addr(), "http", f.File, detail)
}

// outcome is a transfer's outcome for the metrics.
func outcome(err error, notFound, notModified bool) string {
	switch {
	case notFound:
		return metrics.TransferNotFound
	case err != nil:
		return metrics.TransferError
	case notModified:
		return metrics.TransferNotModified
	}
	return metrics.TransferOK
}

// add writes an event for the node whose control IP is ip, if there is
// one. A transfer cut by shutdown, or by its client hanging up (which ends
// an HTTP request's context), is still recorded.
func (r *Recorder) add(ctx context.Context, ip netip.Addr, source, what, detail string) {
	ctx = context.WithoutCancel(ctx)
	n, err := r.st.NodeByIP(ctx, ip.String())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.log.Error("timeline: node lookup", "ip", ip, "err", err)
		}
		return
	}
	e := store.Event{HRN: n.HRN, At: r.now(), Source: source, What: what, Detail: detail}
	if err := r.st.AddEvent(ctx, e); err != nil {
		r.log.Error("timeline: add event", "hrn", e.HRN, "err", err)
	}
}
