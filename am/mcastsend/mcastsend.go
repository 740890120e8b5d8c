// Package mcastsend is the appliance's side of multicast image
// distribution: a Session sends numbered frames (a chunked image's zstd
// frames) to a multicast group in rounds, each round what its receivers
// last reported missing, paced to a rate, until every receiver has what
// it needs. The wire format is rc/proto/mcast's.
//
// A session's life: it sends heartbeats and waits up to FirstWait for a
// report from each receiver the caller registered that says multicast
// reaches it (so that a receiver's delta, the chunks its disk already
// holds, is never sent), then runs rounds while some receiver misses
// something; between rounds it waits up to ReportWait for every active
// receiver's report on the round. Only receivers that hear the group are
// served or waited for: one that multicast does not reach would have
// every round resend all it misses, and leaves for HTTP anyway. Receivers
// nobody registered are served too, once they report. The session ends
// when every receiver is done, has left (fell back to HTTP) or has been
// silent for IdleTimeout; or when the caller's context ends.
package mcastsend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/time/rate"

	"github.com/orbit-lab/netboot/internal/mcastif"
	"github.com/orbit-lab/netboot/rc/proto/mcast"
)

// Frames are what a session sends: frame i is chunk i's bytes.
type Frames interface {
	// Count is the number of chunks.
	Count() int
	// Frame returns chunk i's frame; nil with a nil error when chunk i
	// has nothing to send (an all-zero chunk). An error ends the session.
	Frame(i int) ([]byte, error)
}

// Config is one session's.
type Config struct {
	// Group is the multicast group and port, "239.255.18.7:40007".
	Group string
	// Source is the local address ("ip" or "ip:port") of the session's
	// socket: datagrams leave from it and receivers report to it (Addr).
	// Empty: any address, an ephemeral port.
	Source string
	// Interface names the interface multicast leaves by; empty: the one
	// holding Source's IP, else the kernel's route toward the group.
	Interface string
	// TTL of the multicast datagrams; 0 means 1 (the local network).
	TTL int
	// Rate caps what the session sends, in bits per second counted on the
	// wire (each datagram plus WireOverhead bytes); required unless
	// Limiter is set.
	Rate int64
	// Limiter, if set, paces the session instead of Rate: sessions that
	// share one (made by NewLimiter) together stay under its rate.
	Limiter *rate.Limiter
	// Key (mcast.KeySize bytes) and Session identify and authenticate the
	// session's datagrams.
	Key     []byte
	Session uint64
	// FragSize is the frame bytes per DATA datagram; 0 means the most
	// that fits (mcast.MaxPayload).
	FragSize int
	// FirstWait is how long the first round waits for every registered
	// receiver's first report (default 1 s).
	FirstWait time.Duration
	// ReportWait is how long the session waits after a round for every
	// active receiver's report on it (default 500 ms).
	ReportWait time.Duration
	// Heartbeat is how often CONTROL datagrams go out while no round
	// runs (default 200 ms): receivers tell a working multicast path by them.
	Heartbeat time.Duration
	// IdleTimeout is how long the session waits for a registered receiver
	// that has not reported yet, from its registration or the session's
	// start, whichever is later (a node still scanning its disk; default
	// 30 s). With no receiver at all it ends after it.
	IdleTimeout time.Duration
	// Silence is how long a receiver that has reported may stay silent
	// (it reports every ~200 ms) before the session stops serving and
	// waiting for it (default 3 s): a receiver whose "done" was lost
	// costs at most that.
	Silence time.Duration
	// Linger keeps a session whose receivers are all done open that long
	// for more: nodes of one load enroll seconds apart, and a node that
	// joins the lingering session costs only the chunks it misses, where a
	// new session would send the whole image again. 0: end at once.
	Linger time.Duration
	// Log receives the session's events; nil: none.
	Log *slog.Logger
}

// WireOverhead is what the rate counts per datagram beyond its UDP
// payload: the Ethernet (14), IPv4 (20) and UDP (8) headers.
const WireOverhead = 42

// State is where a receiver stands.
type State int

// The receiver states.
const (
	Waiting State = iota // registered, not heard from yet
	Active               // reported chunks missing (served once it hears the group)
	Done                 // reported it has everything
	Left                 // gave up on multicast (falls back to HTTP)
	Gone                 // silent past Silence (or, never heard, IdleTimeout)
)

func (s State) String() string {
	switch s {
	case Waiting:
		return "waiting"
	case Active:
		return "active"
	case Done:
		return "done"
	case Left:
		return "left"
	case Gone:
		return "gone"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ReceiverState is what the session knows of one receiver.
type ReceiverState struct {
	ID        string
	Addr      string // where its reports come from; "" before the first
	State     State
	Hears     bool      // its last report says multicast reaches it
	Missing   int       // chunks missing, by its last report
	LastHeard time.Time // zero before the first report
	Reports   int       // complete reports received
}

// Stats counts what a session did.
type Stats struct {
	Datagrams uint64 // sent, of every type
	Segmented uint64 // of those, sent in segmented sends (UDP GSO)
	Bytes     uint64 // UDP payload bytes sent
	Rounds    uint64
	Frames    uint64 // frames sent in a round, whole or in part
	Reports   uint64 // complete receiver reports
	Rejected  uint64 // datagrams received and refused (MAC, session, malformed, wrong chunk count)
	WriteErrs uint64 // datagrams the socket would not send
}

// Session is one multicast distribution; make it with New, then Run it.
type Session struct {
	cfg     Config
	frames  Frames
	count   int
	conn    *net.UDPConn
	group   *net.UDPAddr
	limiter *rate.Limiter
	// Only the session's goroutine sends: these need no lock.
	runLen   int          // datagrams per segmented send
	segments bool         // the kernel segments UDP (until a send says otherwise)
	codec    *mcast.Codec // Run's goroutine's; the reader has its own
	log      *slog.Logger

	reported chan struct{} // a report completed (capacity 1)

	mu        sync.Mutex
	ending    bool // Run is ending: no receiver joins any more
	start     time.Time
	receivers map[string]*receiver
	absent    map[int]bool // chunks asked for that have no frame

	datagrams, segmented, bytes, rounds, framesSent, reports, rejected, writeErrs atomic.Uint64
}

// receiver is the session's record of one receiver, under Session.mu.
type receiver struct {
	id         string
	registered bool
	added      time.Time // when AddReceiver registered it
	addr       string
	heard      time.Time
	reports    int
	// The report being assembled: parts of sequence seq.
	seq   uint32
	parts []*mcast.Status
	got   int
	// The last complete report.
	have    bool
	last    *mcast.Status // header of the last complete report
	missing mcast.Report  // its entries, all parts'
}

// New opens the session's socket. Run sends; Close only if Run is never
// called.
func New(cfg Config, frames Frames) (*Session, error) {
	limiter := cfg.Limiter
	if limiter == nil {
		if cfg.Rate <= 0 {
			return nil, fmt.Errorf("mcastsend: rate %d bit/s, want > 0", cfg.Rate)
		}
		limiter = NewLimiter(cfg.Rate)
	}
	if cfg.FragSize == 0 {
		cfg.FragSize = mcast.MaxPayload
	}
	if cfg.FragSize < 1 || cfg.FragSize > mcast.MaxPayload {
		return nil, fmt.Errorf("mcastsend: fragment size %d, want 1..%d", cfg.FragSize, mcast.MaxPayload)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 1
	}
	cfg.FirstWait = orDefault(cfg.FirstWait, time.Second)
	cfg.ReportWait = orDefault(cfg.ReportWait, 500*time.Millisecond)
	cfg.Heartbeat = orDefault(cfg.Heartbeat, 200*time.Millisecond)
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, 30*time.Second)
	cfg.Silence = orDefault(cfg.Silence, 3*time.Second)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := frames.Count()
	if n < 0 || int64(n) > 1<<32-1 {
		return nil, fmt.Errorf("mcastsend: %d chunks", n)
	}
	codec, err := mcast.NewCodec(cfg.Key, cfg.Session)
	if err != nil {
		return nil, fmt.Errorf("mcastsend: %w", err)
	}
	group, err := mcast.ResolveGroup(cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("mcastsend: %w", err)
	}
	local, err := sourceAddr(cfg.Source)
	if err != nil {
		return nil, err
	}
	ifi, err := mcastif.Lookup(cfg.Interface, local.IP)
	if err != nil {
		return nil, fmt.Errorf("mcastsend: %w", err)
	}
	conn, err := net.ListenUDP("udp4", local)
	if err != nil {
		return nil, fmt.Errorf("mcastsend: socket: %w", err)
	}
	// Every receiver reports at once when a round ends. Best effort: a
	// lost report is replaced by the next, 200 ms later.
	_ = mcastif.GrowReadBuffer(conn, 4<<20)
	p := ipv4.NewPacketConn(conn)
	err = p.SetMulticastTTL(cfg.TTL)
	if err == nil && ifi != nil {
		err = p.SetMulticastInterface(ifi)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("mcastsend: multicast options: %w", err)
	}
	full := dataDatagram(cfg.FragSize)
	return &Session{
		cfg: cfg, frames: frames, count: n, conn: conn, group: group,
		limiter: limiter, codec: codec, log: log, segments: true,
		// A run is paced as one: it must fit the limiter's bucket.
		runLen:   max(1, min(mcastif.MaxSegments, (0xffff-28)/full, limiter.Burst()/(full+WireOverhead))),
		reported: make(chan struct{}, 1), receivers: map[string]*receiver{}, absent: map[int]bool{},
	}, nil
}

// NewLimiter returns the pacing of bitsPerSecond on the wire, for
// Config.Limiter: tokens are bytes (a datagram plus WireOverhead). The
// bucket holds 10 ms of the rate (1.1 MB at 900 Mbit/s), at least four
// datagrams: it absorbs the timer's lateness, and over any span the bytes
// sent stay within the rate plus that bucket. With 2 ms, a busy sender's
// wake-ups came late often enough that the bucket overflowed: 1 GiB to
// one node took 14.5 s at 900 Mbit/s instead of about 4 (bench/imaging).
func NewLimiter(bitsPerSecond int64) *rate.Limiter {
	bps := float64(bitsPerSecond) / 8
	burst := max(int(bps/100), 4*(mcast.MaxDatagram+WireOverhead))
	return rate.NewLimiter(rate.Limit(bps), burst)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// sourceAddr parses Config.Source: "ip", "ip:port" or empty.
func sourceAddr(s string) (*net.UDPAddr, error) {
	if s == "" {
		return &net.UDPAddr{IP: net.IPv4zero}, nil
	}
	if ip := net.ParseIP(s); ip != nil {
		return &net.UDPAddr{IP: ip}, nil
	}
	a, err := net.ResolveUDPAddr("udp4", s)
	if err != nil {
		return nil, fmt.Errorf("mcastsend: source %q: %w", s, err)
	}
	return a, nil
}

// Addr is the session's unicast address, where receivers report (the
// command's Sender).
func (s *Session) Addr() *net.UDPAddr { return s.conn.LocalAddr().(*net.UDPAddr) }

// Close releases the socket of a session that is not run.
func (s *Session) Close() error { return s.conn.Close() }

// AddReceiver registers a receiver the session waits for (by the id its
// reports carry, e.g. the node's name). It returns false once the session
// is ending: the receiver would hear only its finish, so it is not
// registered and needs another session.
func (s *Session) AddReceiver(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return false
	}
	// A new registration is a new load on that node (while the session
	// lingers, the same node may load the image again): what it reported
	// before says nothing of it, and its reports count from 1 again.
	s.receivers[id] = &receiver{id: id, registered: true, added: time.Now()}
	return true
}

// Bounds on what receivers' reports make the session hold: a whole grid,
// and reports of a 4 TiB image's chunks missing in any pattern.
const (
	maxReceivers   = 4096
	maxReportParts = 1024
)

// receiver returns id's record, making it; s.mu is held.
func (s *Session) receiver(id string) *receiver {
	r := s.receivers[id]
	if r == nil {
		r = &receiver{id: id}
		s.receivers[id] = r
	}
	return r
}

// Stats is a snapshot of the session's counters.
func (s *Session) Stats() Stats {
	return Stats{
		Datagrams: s.datagrams.Load(), Bytes: s.bytes.Load(), Rounds: s.rounds.Load(),
		Frames: s.framesSent.Load(), Reports: s.reports.Load(), Rejected: s.rejected.Load(),
		WriteErrs: s.writeErrs.Load(), Segmented: s.segmented.Load(),
	}
}

// Receivers is every receiver's state, by id.
func (s *Session) Receivers() []ReceiverState {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]ReceiverState, 0, len(s.receivers))
	for _, r := range s.receivers {
		st := ReceiverState{ID: r.id, Addr: r.addr, State: s.state(r, now), LastHeard: r.heard, Reports: r.reports}
		if r.have {
			st.Missing, st.Hears = int(r.last.Missing), r.last.Hears
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ReceiverState) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// state is r's state at now; s.mu is held.
func (s *Session) state(r *receiver, now time.Time) State {
	switch {
	case r.have && r.last.Done:
		return Done
	case r.have && r.last.Leave:
		return Left
	}
	heard, timeout := r.heard, s.cfg.Silence
	if heard.IsZero() {
		heard, timeout = s.start, s.cfg.IdleTimeout
		if r.added.After(heard) {
			heard = r.added
		}
	}
	if !s.start.IsZero() && now.Sub(heard) > timeout {
		return Gone
	}
	if !r.have {
		return Waiting
	}
	return Active
}

// Run runs the session until every receiver is done, left or gone (nil),
// ctx ends (its error), or a frame cannot be read. It announces the end
// to the group and closes the socket either way.
func (s *Session) Run(ctx context.Context) error {
	s.mu.Lock()
	s.start = time.Now()
	s.mu.Unlock()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		s.read()
	}()
	err := s.run(ctx)
	s.mu.Lock()
	s.ending = true
	s.mu.Unlock()
	// The finish goes out even when ctx has ended: receivers then fall
	// back at once instead of at their timeout.
	for range 3 {
		// Only ctx's end fails a send, and this context does not end.
		_ = s.control(context.WithoutCancel(ctx), mcast.PhaseFinish, 0)
	}
	s.conn.Close()
	<-readDone
	return err
}

func (s *Session) run(ctx context.Context) error {
	// The first round waits for the registered receivers' reports: a
	// receiver whose disk holds most chunks gets only the others.
	var beat time.Time // when the next heartbeat is due
	for first := time.Now().Add(s.cfg.FirstWait); time.Now().Before(first) && !s.allHeard(); {
		if err := s.heartbeat(ctx, &beat, mcast.PhaseIdle, 0); err != nil {
			return err
		}
		if err := s.wait(ctx, min(time.Until(beat), time.Until(first))); err != nil {
			return err
		}
	}
	var round uint32
	var idle time.Time // since when every receiver is done, while lingering
	for {
		if s.finished() {
			if idle.IsZero() {
				idle = time.Now()
			}
			// A node registered meanwhile makes end refuse: serve it.
			if time.Since(idle) >= s.cfg.Linger && s.end() {
				s.log.Info("mcast session done", "session", s.cfg.Session, "rounds", round, "bytes", s.bytes.Load())
				return nil
			}
			if err := s.heartbeat(ctx, &beat, mcast.PhaseIdle, round); err != nil {
				return err
			}
			if err := s.wait(ctx, min(time.Until(beat), s.cfg.Linger-time.Since(idle))); err != nil {
				return err
			}
			continue
		}
		idle = time.Time{}
		want := s.collect()
		if len(want) == 0 {
			if err := s.heartbeat(ctx, &beat, mcast.PhaseIdle, round); err != nil {
				return err
			}
			if err := s.wait(ctx, time.Until(beat)); err != nil {
				return err
			}
			continue
		}
		round++
		s.rounds.Add(1)
		before := s.bytes.Load()
		if err := s.sendRound(ctx, round, want); err != nil {
			return err
		}
		s.log.Debug("mcast round sent", "session", s.cfg.Session, "round", round, "frames", len(want), "bytes", s.bytes.Load()-before)
		// Wait for every active receiver's report on the round, saying the
		// end again now and then: a receiver that lost it reports anyway,
		// but later.
		beat = time.Now().Add(s.cfg.Heartbeat / 2)
		for until := time.Now().Add(s.cfg.ReportWait); time.Now().Before(until) && !s.allReported(round); {
			if err := s.wait(ctx, min(time.Until(beat), time.Until(until))); err != nil {
				return err
			}
			if !time.Now().Before(beat) {
				if err := s.control(ctx, mcast.PhaseEnd, round); err != nil {
					return err
				}
				beat = time.Now().Add(s.cfg.Heartbeat / 2)
			}
		}
		beat = time.Time{}
	}
}

// wanted is one frame a round sends: whole, or the fragment ranges some
// receiver lacks.
type wanted struct {
	chunk int
	whole bool
	frags []mcast.Range
}

// sendRound sends want, between a round start and two round ends.
func (s *Session) sendRound(ctx context.Context, round uint32, want []wanted) error {
	if err := s.control(ctx, mcast.PhaseStart, round, uint32(len(want))); err != nil {
		return err
	}
	buf := make([]byte, 0, s.runLen*s.datagramSize())
	for _, w := range want {
		frame, err := s.frames.Frame(w.chunk)
		if err != nil {
			return fmt.Errorf("mcastsend: frame %d: %w", w.chunk, err)
		}
		if len(frame) == 0 {
			s.mu.Lock()
			s.absent[w.chunk] = true
			s.mu.Unlock()
			s.log.Warn("mcast: a receiver asks for a chunk with no frame", "session", s.cfg.Session, "chunk", w.chunk)
			continue
		}
		if int64(len(frame)) > 1<<32-1 {
			return fmt.Errorf("mcastsend: frame %d of %d bytes", w.chunk, len(frame))
		}
		frags := mcast.NewSet(mcast.Fragments(len(frame), s.cfg.FragSize))
		if w.whole {
			frags = mcast.FullSet(frags.Len())
		}
		for _, r := range w.frags {
			frags.AddRange(r)
		}
		if frags.Count() == 0 {
			continue // fragments past the frame's end: nothing real
		}
		s.framesSent.Add(1)
		// A frame's datagrams are all full but its last, so a run of them
		// fits one segmented send (the last segment may be short).
		run, n := buf[:0], 0
		for k := frags.Next(0); k >= 0; k = frags.Next(k + 1) {
			off := k * s.cfg.FragSize
			d := mcast.Data{Round: round, Chunk: uint32(w.chunk), FrameSize: uint32(len(frame)), Offset: uint32(off),
				FragSize: uint16(s.cfg.FragSize), Payload: frame[off:min(off+s.cfg.FragSize, len(frame))]}
			run, n = s.codec.AppendData(run, &d), n+1
			if n == s.runLen {
				if err := s.sendRun(ctx, run, n); err != nil {
					return err
				}
				run, n = run[:0], 0
			}
		}
		if n > 0 {
			if err := s.sendRun(ctx, run, n); err != nil {
				return err
			}
		}
	}
	for range 2 {
		if err := s.control(ctx, mcast.PhaseEnd, round); err != nil {
			return err
		}
	}
	return nil
}

// heartbeat sends a CONTROL of phase once *next is due, and sets *next to
// the one after: receivers hear of an idle sender every Heartbeat however
// often reports wake the session.
func (s *Session) heartbeat(ctx context.Context, next *time.Time, phase mcast.Phase, round uint32) error {
	if time.Now().Before(*next) {
		return nil
	}
	*next = time.Now().Add(s.cfg.Heartbeat)
	return s.control(ctx, phase, round)
}

// control sends a CONTROL datagram; frames is the round's, for a start.
func (s *Session) control(ctx context.Context, phase mcast.Phase, round uint32, frames ...uint32) error {
	m := mcast.Control{Round: round, Chunks: uint32(s.count), Phase: phase}
	if len(frames) > 0 {
		m.Frames = frames[0]
	}
	return s.send(ctx, s.codec.AppendControl(nil, &m))
}

// send paces and sends one datagram to the group.
func (s *Session) send(ctx context.Context, d []byte) error { return s.sendRun(ctx, d, 1) }

// datagramSize is the size of a DATA datagram carrying a full fragment.
func (s *Session) datagramSize() int { return dataDatagram(s.cfg.FragSize) }

func dataDatagram(fragSize int) int { return fragSize + mcast.MaxDatagram - mcast.MaxPayload }

// sendRun paces and sends n datagrams to the group, concatenated in b, all
// of datagramSize bytes but the last: in one segmented send (GSO) where
// the kernel can, else one by one. A datagram the socket refuses (a full
// queue: ENOBUFS) is counted and dropped: the next round repairs it. Only
// ctx's end is an error.
func (s *Session) sendRun(ctx context.Context, b []byte, n int) error {
	if err := s.limiter.WaitN(ctx, len(b)+n*WireOverhead); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("mcastsend: pacing: %w", err)
	}
	if n > 1 && s.segments {
		err := mcastif.WriteSegments(s.conn, b, s.datagramSize(), s.group)
		if !errors.Is(err, mcastif.ErrNoSegmentation) {
			if s.sent(n, len(b), err) {
				s.segmented.Add(uint64(n))
			}
			return nil
		}
		s.segments = false
		s.log.Info("mcast: no UDP segmentation offload here, a datagram per send", "session", s.cfg.Session, "err", err)
	}
	for len(b) > 0 {
		d := b[:min(len(b), s.datagramSize())]
		_, err := s.conn.WriteToUDP(d, s.group)
		s.sent(1, len(d), err)
		b = b[len(d):]
	}
	return nil
}

// sent counts the n datagrams of size bytes a send took, or refused; ok:
// taken.
func (s *Session) sent(n, size int, err error) (ok bool) {
	if err != nil {
		if s.writeErrs.Add(uint64(n)) == uint64(n) {
			s.log.Warn("mcast: send failed (more are only counted)", "session", s.cfg.Session, "err", err)
		}
		return false
	}
	s.datagrams.Add(uint64(n))
	s.bytes.Add(uint64(size))
	return true
}

// wait returns after d, or once a report completes, or with ctx's error.
func (s *Session) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.reported:
	case <-t.C:
	}
	return nil
}

// allHeard reports whether every registered receiver has reported that
// it hears the group, or left.
func (s *Session) allHeard() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, r := range s.receivers {
		if st := s.state(r, now); r.registered && (st == Waiting || st == Active && !r.last.Hears) {
			return false
		}
	}
	return true
}

// served reports whether r is served: active and hearing the group; s.mu
// is held.
func (s *Session) served(r *receiver, now time.Time) bool {
	return s.state(r, now) == Active && r.last.Hears
}

// allReported reports whether every active receiver has reported on
// round (seen its end).
func (s *Session) allReported(round uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, r := range s.receivers {
		if s.served(r, now) && r.last.Round < round {
			return false
		}
	}
	return true
}

// finished reports whether no receiver is left to serve: none waiting or
// active, but for served ones that ask only for chunks with no frame
// (nothing the session could ever send them); with none ever known, once
// IdleTimeout has passed.
func (s *Session) finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finishedLocked()
}

// end marks the session as ending if it is finished: from then on
// AddReceiver refuses, so no node joins a session that will not serve it.
func (s *Session) end() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.finishedLocked() {
		return false
	}
	s.ending = true
	return true
}

// finishedLocked is finished with s.mu held.
func (s *Session) finishedLocked() bool {
	now := time.Now()
	for _, r := range s.receivers {
		st := s.state(r, now)
		if st == Waiting || st == Active && (!s.served(r, now) || !s.onlyAbsent(r)) {
			return false
		}
	}
	return len(s.receivers) > 0 || now.Sub(s.start) > s.cfg.IdleTimeout
}

// onlyAbsent reports whether r's last report asks for chunks and every
// one has turned out to have no frame; s.mu is held. (A report that asks
// for nothing, not done, has frames being delivered, which may fail.)
func (s *Session) onlyAbsent(r *receiver) bool {
	if r.missing.Empty() {
		return false
	}
	for _, rg := range r.missing.Whole {
		for i := uint64(rg.Start); i < rg.End(); i++ {
			if !s.absent[int(i)] {
				return false
			}
		}
	}
	for _, p := range r.missing.Partial {
		if !s.absent[int(p.Chunk)] {
			return false
		}
	}
	return true
}

// collect is the next round: the union of the served receivers' last
// reports, in chunk order, without chunks that have no frame.
func (s *Session) collect() []wanted {
	s.mu.Lock()
	defer s.mu.Unlock()
	whole := mcast.NewSet(s.count)
	frags := map[int][]mcast.Range{}
	now := time.Now()
	for _, r := range s.receivers {
		if !s.served(r, now) {
			continue
		}
		for _, rg := range r.missing.Whole {
			whole.AddRange(rg)
		}
		for _, p := range r.missing.Partial {
			frags[int(p.Chunk)] = append(frags[int(p.Chunk)], p.Missing...)
		}
	}
	var want []wanted
	for i := whole.Next(0); i >= 0; i = whole.Next(i + 1) {
		if !s.absent[i] {
			want = append(want, wanted{chunk: i, whole: true})
		}
	}
	for i, rs := range frags {
		if !whole.Has(i) && !s.absent[i] {
			want = append(want, wanted{chunk: i, frags: rs})
		}
	}
	slices.SortFunc(want, func(a, b wanted) int { return a.chunk - b.chunk })
	return want
}

// read takes the receivers' reports until the socket closes.
func (s *Session) read() {
	codec, err := mcast.NewCodec(s.cfg.Key, s.cfg.Session)
	if err != nil {
		return // New checked the key
	}
	buf := make([]byte, mcast.MaxDatagram+1)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := codec.Parse(buf[:n])
		st, ok := m.(*mcast.Status)
		if err != nil || !ok || st.Chunks != uint32(s.count) {
			if s.rejected.Add(1) == 1 {
				s.log.Warn("mcast: refused a datagram (more are only counted)", "session", s.cfg.Session, "from", from, "err", err)
			}
			continue
		}
		if s.take(st, from.String()) {
			s.log.Debug("mcast report", "session", s.cfg.Session, "receiver", st.Receiver, "seq", st.Seq, "round", st.Round,
				"missing", st.Missing, "done", st.Done, "leave", st.Leave)
			s.reports.Add(1)
			select {
			case s.reported <- struct{}{}:
			default:
			}
		}
	}
}

// take files one STATUS part, and reports whether it completed a report.
func (s *Session) take(st *mcast.Status, from string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Every node of the session holds its key: what one of them says of
	// other receivers, or of the size of its report, is bounded here.
	if int(st.Parts) > maxReportParts || s.receivers[st.Receiver] == nil && len(s.receivers) >= maxReceivers {
		return false
	}
	r := s.receiver(st.Receiver)
	r.heard, r.addr = time.Now(), from
	switch {
	case r.parts != nil && st.Seq == r.seq && int(st.Parts) == len(r.parts):
	case r.have && st.Seq <= r.last.Seq, r.parts != nil && st.Seq < r.seq:
		return false // older than what the session holds
	default:
		r.seq, r.parts, r.got = st.Seq, make([]*mcast.Status, st.Parts), 0
	}
	if r.parts[st.Part] != nil {
		return false
	}
	r.parts[st.Part] = st
	if r.got++; r.got < len(r.parts) {
		return false
	}
	var rep mcast.Report
	for _, p := range r.parts {
		rep.Whole = append(rep.Whole, p.Report.Whole...)
		rep.Partial = append(rep.Partial, p.Report.Partial...)
	}
	r.have, r.last, r.missing, r.parts = true, st, rep, nil
	r.reports++
	return true
}
