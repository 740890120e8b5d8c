package dhcpd

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orbit-lab/netboot/internal/lograte"
	"github.com/orbit-lab/netboot/internal/store"
)

// recorder writes boot events and discovered MACs to the database off the
// reply path: a reply never waits for a commit. Events go through a
// bounded queue and are written in batches (one transaction for whatever
// queued up meanwhile); sightings of unknown MACs are merged in memory and
// written once a second. When the database cannot keep up, events are
// dropped and counted, never queued without bound.
type recorder struct {
	sink   EventSink // nil: no boot events
	disc   Sightings
	log    *slog.Logger
	events chan store.Event

	mu   sync.Mutex
	seen map[string]*store.Sighting // bounded by maxSightings

	dropped      atomic.Uint64 // events and sightings that did not fit
	flushEvery   time.Duration
	maxSightings int
	dropLog      *lograte.Limiter[string]
}

const (
	eventQueue   = 8192
	eventBatch   = 512
	eventLinger  = 5 * time.Millisecond
	maxSightings = 4096
)

func newRecorder(sink EventSink, disc Sightings, log *slog.Logger) *recorder {
	return &recorder{
		sink: sink, disc: disc, log: log,
		events:       make(chan store.Event, eventQueue),
		seen:         map[string]*store.Sighting{},
		flushEvery:   time.Second,
		maxSightings: maxSightings,
		dropLog:      lograte.New(time.Minute, 4, ""),
	}
}

// event queues e; it never blocks.
func (r *recorder) event(e store.Event) {
	if r.sink == nil {
		return
	}
	select {
	case r.events <- e:
	default:
		r.dropped.Add(1)
		if ok, held := r.dropLog.Allow("events"); ok {
			r.log.Warn("boot events dropped: the database is not keeping up", "node", e.HRN, "what", e.What, "held_back", held)
		}
	}
}

// offered notes the pool address given to an unknown MAC.
func (r *recorder) offered(mac string, ip netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.seen[mac]; ok {
		v.IP = ip.String()
	}
}

// sighting notes one request of an unknown MAC.
func (r *recorder) sighting(x *exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.seen[x.mac]
	if !ok {
		if len(r.seen) >= r.maxSightings {
			r.dropped.Add(1)
			return
		}
		v = &store.Sighting{MAC: x.mac, First: x.now}
		r.seen[x.mac] = v
	}
	v.Last = x.now
	v.Count++
	if x.client.vendor != "" {
		v.VendorClass = x.client.vendor
	}
	v.Relay = ""
	if gi := addr4(x.req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		v.Relay = gi.String()
	}
}

// writeTimeout bounds one database write of the recorder.
const writeTimeout = 10 * time.Second

// run writes until ctx is done, then writes what is left (with a short
// deadline of its own) and returns. A write in progress when ctx ends is
// finished, not cancelled: ctx only says when to stop.
func (r *recorder) run(ctx context.Context) {
	tick := time.NewTicker(r.flushEvery)
	defer tick.Stop()
	wctx := context.WithoutCancel(ctx)
	batch := make([]store.Event, 0, eventBatch)
	for {
		select {
		case e := <-r.events:
			// Gather what comes within eventLinger: under load one commit
			// carries many events; alone, an event waits that long.
			batch = append(batch[:0], e)
			linger := time.NewTimer(eventLinger)
		fill:
			for len(batch) < eventBatch {
				select {
				case e := <-r.events:
					batch = append(batch, e)
				case <-linger.C:
					break fill
				case <-ctx.Done():
					break fill
				}
			}
			linger.Stop()
			r.writeEvents(wctx, batch)
		case <-tick.C:
			r.writeSightings(wctx)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			defer cancel()
			for {
				batch = batch[:0]
			drain:
				for len(batch) < eventBatch {
					select {
					case e := <-r.events:
						batch = append(batch, e)
					default:
						break drain
					}
				}
				if len(batch) == 0 {
					break
				}
				r.writeEvents(fctx, batch)
			}
			r.writeSightings(fctx)
			return
		}
	}
}

func (r *recorder) writeEvents(ctx context.Context, batch []store.Event) {
	r.write(ctx, "write", "writing boot events", "events", len(batch), func(ctx context.Context) error {
		return r.sink.AddEvents(ctx, batch)
	})
}

func (r *recorder) writeSightings(ctx context.Context) {
	r.mu.Lock()
	if len(r.seen) == 0 {
		r.mu.Unlock()
		return
	}
	list := make([]store.Sighting, 0, len(r.seen))
	for _, v := range r.seen {
		list = append(list, *v)
	}
	clear(r.seen)
	r.mu.Unlock()
	r.write(ctx, "discovered", "writing discovered MACs", "macs", len(list), func(ctx context.Context) error {
		return r.disc.RecordDiscovered(ctx, list)
	})
}

// write runs one store write of n records within writeTimeout. A failed
// one counts its records as dropped and is logged as msg (with the count
// under the key unit), rate-limited under key.
func (r *recorder) write(ctx context.Context, key, msg, unit string, n int, put func(context.Context) error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := put(ctx); err != nil {
		r.dropped.Add(uint64(n))
		if ok, held := r.dropLog.Allow(key); ok {
			r.log.Error(msg, unit, n, "err", err, "held_back", held)
		}
	}
}
