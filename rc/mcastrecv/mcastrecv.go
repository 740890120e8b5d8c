// Package mcastrecv is a node's side of multicast image distribution: it
// joins a session's group, takes the frames it needs in any order,
// reports what it still misses to the sender, and hands every completed
// frame to the caller, until nothing is missing. When multicast does not
// reach the node (no valid datagram within a few seconds) it returns
// ErrNoMulticast and what is missing, for the caller to fetch over HTTP.
// The wire format is rc/proto/mcast's.
package mcastrecv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/orbit-lab/netboot/internal/mcastif"
	"github.com/orbit-lab/netboot/rc/proto/mcast"
)

// Why Receive gave up before having everything; the Result's Missing says
// what is left to fetch another way.
var (
	// ErrNoMulticast: no valid datagram of the session arrived within
	// Config.NoData of the start.
	ErrNoMulticast = errors.New("mcastrecv: no multicast datagram of the session arrived")
	// ErrSenderLost: datagrams arrived, then none for Config.NoData.
	ErrSenderLost = errors.New("mcastrecv: the sender went silent")
	// ErrSessionEnded: the sender ended the session.
	ErrSessionEnded = errors.New("mcastrecv: the sender ended the session")
)

// Config is one receiver's view of a session.
type Config struct {
	// Group is the session's multicast group and port; Sender the
	// sender's unicast address, where reports go.
	Group, Sender string
	// Interface names the interface to join the group on; empty: the one
	// the kernel routes toward Sender.
	Interface string
	// Key and Session authenticate the session's datagrams.
	Key     []byte
	Session uint64
	// ID names this receiver in its reports (the node's name).
	ID string
	// Chunks is the image's chunk count; Need the chunks to receive (the
	// ones the disk does not hold yet), each below Chunks.
	Chunks int
	Need   []int
	// NoData is how long Receive waits for a valid datagram, at the start
	// and later, before it gives up (default 3 s).
	NoData time.Duration
	// ReportEvery is how often the receiver reports while it misses
	// something (default 200 ms); it also reports at once on a round's end.
	ReportEvery time.Duration
	// Workers is how many deliver calls run at once (default GOMAXPROCS).
	Workers int
	// MaxFrame is the largest frame taken (default 64 MiB): a larger one
	// ends Receive with an error (the sender and this receiver disagree
	// on the image). MaxPartial caps the bytes of frames held in part
	// (default 512 MiB, at least MaxFrame): past it a new frame is left
	// for a later round.
	MaxFrame, MaxPartial int
	// FrameSizes, if set, is every chunk's frame size (the manifest's):
	// a datagram saying otherwise is refused as malformed. Without it a
	// datagram's size is believed, and another receiver of the session,
	// which holds the key too, could make this one drop a frame it was
	// assembling.
	FrameSizes []int
	// Log receives the receiver's events; nil: none.
	Log *slog.Logger
}

// Stats counts what a receiver saw.
type Stats struct {
	Datagrams  uint64 // valid datagrams of the session
	Bytes      uint64 // frame bytes taken (new fragments of needed frames)
	Forged     uint64 // datagrams whose MAC did not verify
	Foreign    uint64 // datagrams of another session, version or protocol
	Malformed  uint64 // valid MAC, body refused (or not fitting this session)
	Unneeded   uint64 // fragments of chunks not needed (any more)
	Duplicates uint64 // fragments already held
	Deferred   uint64 // fragments of new frames left for later: MaxPartial held
	Delivered  uint64 // frames deliver accepted
	Refused    uint64 // frames deliver refused (stay missing)
	Reports    uint64 // reports sent (each of one or more datagrams)
	Rounds     uint64 // round ends seen
}

// Result is how a Receive ended.
type Result struct {
	// Missing lists the needed chunks not delivered, in order.
	Missing []int
	Stats   Stats
}

// Receive joins cfg's session and calls deliver with each needed frame
// once it is complete; deliver returning an error leaves the chunk
// missing (e.g. its hash did not verify) for a later round. deliver runs
// on up to cfg.Workers goroutines at once and never after Receive
// returns; the frame is deliver's to keep. Receive returns nil once every
// needed chunk is delivered (having told the sender), or an error
// (ErrNoMulticast, ErrSenderLost, ErrSessionEnded, ctx's, or another for
// a bad config or socket) with the chunks still missing.
func Receive(ctx context.Context, cfg Config, deliver func(i int, frame []byte) error) (Result, error) {
	r, err := newReceiver(cfg, deliver)
	if err != nil {
		return Result{Missing: slices.Clone(cfg.Need)}, err
	}
	defer r.close()
	err = r.run(ctx)
	r.stopWorkers()
	missing := r.need.Members()
	if len(missing) == 0 {
		// The last frames were being delivered when the session ended:
		// nothing is missing.
		err = nil
	}
	return Result{Missing: missing, Stats: r.stats()}, err
}

type receiver struct {
	cfg     Config
	deliver func(int, []byte) error
	codec   *mcast.Codec
	conn    *net.UDPConn // the group
	fb      *net.UDPConn // to the sender
	log     *slog.Logger

	mu       sync.Mutex
	need     *mcast.Set // not delivered, not being delivered
	inflight int        // frames with deliver
	partial  map[int]*partial
	held     int // bytes of partial frames

	work chan job
	wg   sync.WaitGroup

	seq        uint32
	seenEnd    uint32    // the last round whose end arrived
	hears      bool      // a valid datagram of the session has arrived
	lastValid  time.Time // of the last valid datagram; zero: none yet
	nextReport time.Time // when the next report is due

	datagrams, bytes, forged, foreign, malformed, unneeded, dups, deferred, delivered, refused, reports, rounds atomic.Uint64
}

// partial is a frame held in part.
type partial struct {
	buf      []byte
	fragSize int
	got      *mcast.Set // fragments held
	left     int        // fragments still missing
}

type job struct {
	chunk int
	frame []byte
}

func newReceiver(cfg Config, deliver func(int, []byte) error) (*receiver, error) {
	if cfg.Chunks < 0 || int64(cfg.Chunks) > 1<<32-1 {
		return nil, fmt.Errorf("mcastrecv: %d chunks", cfg.Chunks)
	}
	cfg.NoData = orDefault(cfg.NoData, 3*time.Second)
	cfg.ReportEvery = orDefault(cfg.ReportEvery, 200*time.Millisecond)
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = 64 << 20
	}
	if cfg.MaxPartial <= 0 {
		cfg.MaxPartial = 512 << 20
	}
	cfg.MaxPartial = max(cfg.MaxPartial, cfg.MaxFrame)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.ID) == 0 || len(cfg.ID) > mcast.MaxIDLen {
		return nil, fmt.Errorf("mcastrecv: receiver id %q: want 1..%d bytes", cfg.ID, mcast.MaxIDLen)
	}
	codec, err := mcast.NewCodec(cfg.Key, cfg.Session)
	if err != nil {
		return nil, fmt.Errorf("mcastrecv: %w", err)
	}
	if cfg.FrameSizes != nil && len(cfg.FrameSizes) != cfg.Chunks {
		return nil, fmt.Errorf("mcastrecv: %d frame sizes for %d chunks", len(cfg.FrameSizes), cfg.Chunks)
	}
	need := mcast.NewSet(cfg.Chunks)
	for _, i := range cfg.Need {
		if i < 0 || i >= cfg.Chunks {
			return nil, fmt.Errorf("mcastrecv: needed chunk %d of %d", i, cfg.Chunks)
		}
		need.Add(i)
	}
	group, err := mcast.ResolveGroup(cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("mcastrecv: %w", err)
	}
	sender, err := net.ResolveUDPAddr("udp4", cfg.Sender)
	if err != nil {
		return nil, fmt.Errorf("mcastrecv: sender %q: %w", cfg.Sender, err)
	}
	var local net.IP
	if cfg.Interface == "" {
		if local, err = mcastif.Toward(cfg.Sender); err != nil {
			return nil, fmt.Errorf("mcastrecv: %w", err)
		}
	}
	ifi, err := mcastif.Lookup(cfg.Interface, local)
	if err != nil {
		return nil, fmt.Errorf("mcastrecv: %w", err)
	}
	fb, err := net.DialUDP("udp4", nil, sender)
	if err != nil {
		return nil, fmt.Errorf("mcastrecv: report socket: %w", err)
	}
	conn, err := net.ListenMulticastUDP("udp4", ifi, group)
	if err != nil {
		fb.Close()
		return nil, fmt.Errorf("mcastrecv: join %s: %w", group, err)
	}
	// A round arrives at the sender's rate while deliver may be slow: a
	// deep queue loses less. Best effort: losses are repaired.
	_ = mcastif.GrowReadBuffer(conn, 16<<20)
	r := &receiver{
		cfg: cfg, deliver: deliver, codec: codec, conn: conn, fb: fb, log: log,
		need: need, partial: map[int]*partial{}, work: make(chan job, cfg.Workers),
	}
	for range cfg.Workers {
		r.wg.Add(1)
		go r.worker()
	}
	return r, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (r *receiver) close() {
	r.conn.Close()
	r.fb.Close()
}

// stopWorkers lets the queued frames be delivered and waits for them.
func (r *receiver) stopWorkers() {
	close(r.work)
	r.wg.Wait()
}

func (r *receiver) worker() {
	defer r.wg.Done()
	for j := range r.work {
		err := r.deliver(j.chunk, j.frame)
		r.mu.Lock()
		r.inflight--
		if err != nil {
			r.need.Add(j.chunk)
		}
		last := r.inflight == 0 && r.need.Count() == 0
		r.mu.Unlock()
		if err != nil {
			r.refused.Add(1)
			r.log.Warn("mcast: frame refused, stays missing", "chunk", j.chunk, "err", err)
		} else {
			r.delivered.Add(1)
		}
		if last {
			// Wake the reader: there may be nothing left to wait for.
			_ = r.conn.SetReadDeadline(time.Now())
		}
	}
}

func (r *receiver) stats() Stats {
	return Stats{
		Datagrams: r.datagrams.Load(), Bytes: r.bytes.Load(), Forged: r.forged.Load(), Foreign: r.foreign.Load(),
		Malformed: r.malformed.Load(), Unneeded: r.unneeded.Load(), Duplicates: r.dups.Load(), Deferred: r.deferred.Load(),
		Delivered: r.delivered.Load(), Refused: r.refused.Load(), Reports: r.reports.Load(), Rounds: r.rounds.Load(),
	}
}

// complete reports whether nothing is missing or being delivered.
func (r *receiver) complete() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inflight == 0 && r.need.Count() == 0
}

// batchSize is how many datagrams one read takes at most: a receiver that
// fell behind (a busy node) catches up a batch per system call instead of
// a datagram per call.
const batchSize = 64

func (r *receiver) run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = r.conn.SetReadDeadline(time.Now()) })
	defer stop()
	pc := ipv4.NewPacketConn(r.conn)
	msgs := make([]ipv4.Message, batchSize)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, mcast.MaxDatagram+1)}
	}
	r.report(false)
	r.nextReport = time.Now().Add(r.cfg.ReportEvery)
	start := time.Now()
	var deadline time.Time // the read deadline last set
	for {
		if r.complete() {
			return r.finish()
		}
		if err := ctx.Err(); err != nil {
			r.leave()
			return err
		}
		heard := r.lastValid
		if heard.IsZero() {
			heard = start
		}
		if time.Since(heard) >= r.cfg.NoData {
			r.leave()
			if r.lastValid.IsZero() {
				return fmt.Errorf("%w within %v on %s", ErrNoMulticast, r.cfg.NoData, r.cfg.Group)
			}
			return fmt.Errorf("%w for %v on %s", ErrSenderLost, r.cfg.NoData, r.cfg.Group)
		}
		if !time.Now().Before(r.nextReport) {
			r.report(false)
			r.nextReport = time.Now().Add(r.cfg.ReportEvery)
		}
		// While data flows the deadline is the next report's, which moves
		// every ReportEvery: setting it only when it moves saves a timer
		// update per datagram.
		if d := earliest(r.nextReport, heard.Add(r.cfg.NoData)); !d.Equal(deadline) {
			if err := r.conn.SetReadDeadline(d); err != nil {
				return fmt.Errorf("mcastrecv: %w", err)
			}
			deadline = d
		}
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("mcastrecv: read: %w", err)
		}
		for _, m := range msgs[:n] {
			if done, err := r.handle(ctx, m.Buffers[0][:m.N]); done || err != nil {
				return err
			}
		}
	}
}

// handle takes one datagram; done: the receiver is through (err says how).
func (r *receiver) handle(ctx context.Context, b []byte) (done bool, err error) {
	m, err := r.codec.Parse(b)
	switch {
	case errors.Is(err, mcast.ErrMAC):
		r.forged.Add(1)
		return false, nil
	case errors.Is(err, mcast.ErrMalformed) || errors.Is(err, mcast.ErrType):
		r.malformed.Add(1)
		return false, nil
	case err != nil:
		r.foreign.Add(1)
		return false, nil
	}
	if !r.hears {
		// Multicast reaches this node: say so at once, the sender
		// serves only receivers that hear it.
		r.hears = true
		r.log.Debug("mcast: the session's first datagram", "group", r.cfg.Group)
		r.report(false)
		r.nextReport = time.Now().Add(r.cfg.ReportEvery)
	}
	switch m := m.(type) {
	case *mcast.Data:
		if int64(m.Chunk) >= int64(r.cfg.Chunks) || r.cfg.FrameSizes != nil && int64(m.FrameSize) != int64(r.cfg.FrameSizes[m.Chunk]) {
			r.malformed.Add(1)
			return false, nil
		}
		r.lastValid = time.Now()
		r.datagrams.Add(1)
		// The last frame's worker wakes the read loop, which then finds
		// the receiver complete: nothing to check per datagram here.
		if err := r.take(ctx, m); err != nil {
			r.leave()
			return true, err
		}
	case *mcast.Control:
		if int64(m.Chunks) != int64(r.cfg.Chunks) {
			r.malformed.Add(1)
			return false, nil
		}
		r.lastValid = time.Now()
		r.datagrams.Add(1)
		switch m.Phase {
		case mcast.PhaseEnd:
			if m.Round > r.seenEnd {
				r.seenEnd = m.Round
				r.rounds.Add(1)
				r.report(false)
				r.nextReport = time.Now().Add(r.cfg.ReportEvery)
			}
		case mcast.PhaseFinish:
			if r.complete() {
				return true, r.finish()
			}
			return true, fmt.Errorf("%w (round %d)", ErrSessionEnded, m.Round)
		}
	default:
		// A STATUS on the group: another receiver's, not for us.
		r.malformed.Add(1)
	}
	return false, nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// take files one fragment; a completed frame goes to the workers.
func (r *receiver) take(ctx context.Context, d *mcast.Data) error {
	chunk := int(d.Chunk)
	r.mu.Lock()
	if !r.need.Has(chunk) {
		r.mu.Unlock()
		r.unneeded.Add(1)
		return nil
	}
	p := r.partial[chunk]
	if p != nil && (len(p.buf) != int(d.FrameSize) || p.fragSize != int(d.FragSize)) {
		// The sender changed its mind about the frame: start again.
		r.held -= len(p.buf)
		delete(r.partial, chunk)
		p = nil
	}
	if p == nil {
		if int(d.FrameSize) > r.cfg.MaxFrame {
			r.mu.Unlock()
			return fmt.Errorf("mcastrecv: chunk %d: a frame of %d bytes, over the %d this receiver takes", chunk, d.FrameSize, r.cfg.MaxFrame)
		}
		if r.held+int(d.FrameSize) > r.cfg.MaxPartial {
			r.mu.Unlock()
			r.deferred.Add(1)
			return nil
		}
		nfrag := mcast.Fragments(int(d.FrameSize), int(d.FragSize))
		p = &partial{buf: make([]byte, d.FrameSize), fragSize: int(d.FragSize), got: mcast.NewSet(nfrag), left: nfrag}
		r.partial[chunk] = p
		r.held += len(p.buf)
	}
	k := int(d.Offset) / p.fragSize
	if p.got.Has(k) {
		r.mu.Unlock()
		r.dups.Add(1)
		return nil
	}
	copy(p.buf[d.Offset:], d.Payload)
	p.got.Add(k)
	p.left--
	r.bytes.Add(uint64(len(d.Payload)))
	if p.left > 0 {
		r.mu.Unlock()
		return nil
	}
	delete(r.partial, chunk)
	r.held -= len(p.buf)
	r.need.Remove(chunk)
	r.inflight++
	r.mu.Unlock()
	select {
	case r.work <- job{chunk, p.buf}:
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		r.inflight--
		r.need.Add(chunk)
		r.mu.Unlock()
		return ctx.Err()
	}
}

// missing is the report of what is still missing, and how many chunks.
func (r *receiver) missing() (mcast.Report, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep mcast.Report
	whole := mcast.NewSet(r.cfg.Chunks)
	whole.AddSet(r.need)
	for _, chunk := range slices.Sorted(maps.Keys(r.partial)) {
		whole.Remove(chunk)
		p := r.partial[chunk]
		lack := mcast.FullSet(p.got.Len())
		for k := p.got.Next(0); k >= 0; k = p.got.Next(k + 1) {
			lack.Remove(k)
		}
		rep.Partial = append(rep.Partial, mcast.Partial{Chunk: uint32(chunk), Missing: lack.Ranges()})
	}
	rep.Whole = whole.Ranges()
	return rep, r.need.Count()
}

// report sends what is missing to the sender; with leave set, only that
// the receiver gives up on multicast.
func (r *receiver) report(leave bool) {
	rep, n := r.missing()
	if leave {
		rep = mcast.Report{}
	}
	r.send(&mcast.Status{Missing: uint32(n), Leave: leave}, rep)
}

func (r *receiver) send(s *mcast.Status, rep mcast.Report) {
	r.seq++
	s.Receiver, s.Seq, s.Round, s.Chunks, s.Hears = r.cfg.ID, r.seq, r.seenEnd, uint32(r.cfg.Chunks), r.hears
	ds, err := r.codec.StatusDatagrams(s, rep)
	if err != nil {
		r.log.Warn("mcast: report not encoded", "err", err)
		return
	}
	r.reports.Add(1)
	for _, d := range ds {
		// Errors (an ICMP refusal of an earlier report) are not ours to
		// fix: the next report tries again.
		_, _ = r.fb.Write(d)
	}
}

// finish tells the sender this receiver is done, thrice a few ms apart:
// while the sender lacks it, it serves this receiver's last report again
// (for up to its Silence).
func (r *receiver) finish() error {
	for i := range 3 {
		if i > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		r.send(&mcast.Status{Done: true}, mcast.Report{})
	}
	return nil
}

// leave tells the sender this receiver gives up on multicast.
func (r *receiver) leave() {
	for range 2 {
		r.report(true)
	}
}
