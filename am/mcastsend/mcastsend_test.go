package mcastsend

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc/proto/mcast"
)

var testKey = bytes.Repeat([]byte{7}, mcast.KeySize)

// frames is a Frames of fixed frames; a nil one is absent.
type frames [][]byte

func (f frames) Count() int                  { return len(f) }
func (f frames) Frame(i int) ([]byte, error) { return f[i], nil }

func testConfig() Config {
	return Config{Group: "239.255.18.1:40001", Source: "127.0.0.1", Rate: 100e6, Key: testKey, Session: 42}
}

func newSession(t *testing.T, cfg Config, f Frames) *Session {
	t.Helper()
	s, err := New(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no rate", func(c *Config) { c.Rate = 0 }},
		{"short key", func(c *Config) { c.Key = testKey[:16] }},
		{"unicast group", func(c *Config) { c.Group = "10.0.0.1:40000" }},
		{"no port", func(c *Config) { c.Group = "239.1.1.1" }},
		{"fragment too large", func(c *Config) { c.FragSize = mcast.MaxPayload + 1 }},
		{"bad source", func(c *Config) { c.Source = "nowhere:x" }},
		{"no such interface", func(c *Config) { c.Interface = "nosuchif0" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(&cfg)
			if s, err := New(cfg, frames{{1}}); err == nil {
				s.Close()
				t.Errorf("New(%+v): no error", cfg)
			}
		})
	}
}

// status is one report part as a receiver sends it.
func status(id string, seq, part, parts uint16, rep mcast.Report, flags ...string) *mcast.Status {
	s := &mcast.Status{Receiver: id, Seq: uint32(seq), Chunks: 10, Part: part, Parts: parts, Report: rep, Hears: true}
	for _, f := range flags {
		switch f {
		case "done":
			s.Done = true
		case "leave":
			s.Leave = true
		case "deaf":
			s.Hears = false
		}
	}
	return s
}

func whole(start, count uint32) mcast.Report {
	return mcast.Report{Whole: []mcast.Range{{Start: start, Count: count}}}
}

func TestTakeAndCollect(t *testing.T) {
	s := newSession(t, testConfig(), make(frames, 10))
	s.start = time.Now()
	s.AddReceiver("a")
	s.AddReceiver("quiet")
	steps := []struct {
		st       *mcast.Status
		complete bool
	}{
		{status("a", 1, 0, 2, whole(0, 2)), false},
		{status("a", 1, 0, 2, whole(0, 2)), false}, // a duplicate part
		{status("a", 1, 1, 2, mcast.Report{Partial: []mcast.Partial{{Chunk: 5, Missing: []mcast.Range{{Start: 3, Count: 2}}}}}), true},
		{status("a", 1, 0, 1, whole(9, 1)), false}, // an old report again
		{status("b", 4, 0, 1, mcast.Report{Whole: []mcast.Range{{Start: 1, Count: 1}}, Partial: []mcast.Partial{
			{Chunk: 5, Missing: []mcast.Range{{Start: 0, Count: 1}}},
			{Chunk: 7, Missing: []mcast.Range{{Start: 2, Count: 1}}},
		}}), true},
		{status("c", 1, 0, 1, whole(0, 10), "leave"), true},
		{status("d", 1, 0, 1, mcast.Report{}, "done"), true},
		{status("e", 2, 0, 1, whole(8, 1)), true},  // e is then newer...
		{status("e", 1, 0, 1, whole(3, 1)), false}, // ...than its seq 1, late
		{status("deaf", 1, 0, 1, whole(4, 1), "deaf"), true},
	}
	for i, step := range steps {
		if got := s.take(step.st, "10.0.0.1:5"); got != step.complete {
			t.Errorf("step %d (%s seq %d part %d): complete %v, want %v", i, step.st.Receiver, step.st.Seq, step.st.Part, got, step.complete)
		}
	}
	want := []wanted{
		{chunk: 0, whole: true},
		{chunk: 1, whole: true},
		{chunk: 5, frags: []mcast.Range{{Start: 3, Count: 2}, {Start: 0, Count: 1}}},
		{chunk: 7, frags: []mcast.Range{{Start: 2, Count: 1}}},
		{chunk: 8, whole: true},
	}
	got := s.collect()
	// The order of one chunk's fragment ranges is the map's: compare as sets.
	for i := range got {
		slicesSortRanges(got[i].frags)
	}
	for i := range want {
		slicesSortRanges(want[i].frags)
	}
	if d := gocmp.Diff(want, got, gocmp.AllowUnexported(wanted{})); d != "" {
		t.Errorf("collect (-want +got):\n%s", d)
	}
	states := map[string]State{}
	for _, r := range s.Receivers() {
		states[r.ID] = r.State
	}
	if d := gocmp.Diff(map[string]State{"a": Active, "b": Active, "c": Left, "d": Done, "e": Active, "deaf": Active, "quiet": Waiting}, states); d != "" {
		t.Errorf("states (-want +got):\n%s", d)
	}
	if s.finished() || s.allHeard() {
		t.Errorf("finished %v, allHeard %v with active and waiting receivers", s.finished(), s.allHeard())
	}
	// A chunk found to have no frame is not asked for again, and a
	// receiver asking for nothing else keeps no session alive.
	s.absent[8] = true
	if got := s.collect(); got[len(got)-1].chunk == 8 {
		t.Errorf("collect still sends absent chunk 8: %+v", got)
	}
	s.take(status("f", 1, 0, 1, mcast.Report{}), "10.0.0.2:5") // delivering its last frames
	for id, want := range map[string]bool{"a": false, "e": true, "f": false} {
		if got := s.onlyAbsent(s.receivers[id]); got != want {
			t.Errorf("onlyAbsent(%s) = %v, want %v", id, got, want)
		}
	}
	// A receiver silent past Silence is gone, not served; one never heard
	// from waits for the IdleTimeout.
	s.receivers["a"].heard = time.Now().Add(-s.cfg.Silence - time.Second)
	s.start = time.Now().Add(-s.cfg.Silence - time.Second)
	for _, r := range s.Receivers() {
		if want, ok := map[string]State{"a": Gone, "quiet": Waiting}[r.ID]; ok && r.State != want {
			t.Errorf("%s silent since %v: %v, want %v", r.ID, r.LastHeard, r.State, want)
		}
	}
	for _, w := range s.collect() {
		if w.chunk == 0 {
			t.Errorf("collect serves gone receiver a's chunk 0: %+v", w)
		}
	}
	// Past the idle timeout every silent receiver is gone and the session over.
	s.start = time.Now().Add(-time.Hour)
	for _, r := range s.receivers {
		r.heard = s.start
	}
	if !s.finished() {
		t.Errorf("not finished with every receiver silent past the idle timeout: %+v", s.Receivers())
	}
}

func slicesSortRanges(rs []mcast.Range) {
	slices.SortFunc(rs, func(a, b mcast.Range) int { return cmp.Compare(a.Start, b.Start) })
}

// TestNoReceiversEndsAfterIdleTimeout: a session no receiver joins ends
// after its idle timeout, and takes no receiver after that.
func TestNoReceiversEndsAfterIdleTimeout(t *testing.T) {
	testenv.Root(t, "a network namespace for multicast on loopback")
	ns := multicastLoopback(t)
	cfg := testConfig()
	cfg.IdleTimeout, cfg.FirstWait = 300*time.Millisecond, 10*time.Millisecond
	var s *Session
	if err := netns.Do(ns, func() (err error) { s, err = New(cfg, make(frames, 3)); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run with no receiver = %v, want nil after the idle timeout", err)
	}
	if st := s.Stats(); st.Rounds != 0 || st.Datagrams == 0 {
		t.Errorf("stats %+v: want heartbeats and no round", st)
	}
	// A node handed this session now would hear nothing of it.
	if s.AddReceiver("late") {
		t.Error("AddReceiver after the session ended = true, want false: the node needs another session")
	}
}

// multicastLoopback makes a namespace whose loopback carries multicast.
func multicastLoopback(t *testing.T) string {
	t.Helper()
	testenv.Programs(t, "Debian: iproute2", "ip")
	ns := netnstest.Temp(t, "mcs-")
	netnstest.IP(t, "-n", ns, "route", "add", "224.0.0.0/4", "dev", "lo")
	return ns
}

// TestSendsWhatIsMissing: a hand-made receiver on loopback reports one
// chunk missing whole and two fragments of another; the round carries
// exactly those, and the session ends when it reports done.
func TestSendsWhatIsMissing(t *testing.T) {
	testenv.Root(t, "a network namespace for multicast on loopback")
	ns := multicastLoopback(t)
	const fragSize = 100
	f := make(frames, 6)
	for i := range f {
		f[i] = bytes.Repeat([]byte{byte('a' + i)}, 250+i) // 3 fragments each
	}
	f[4] = nil // an absent chunk
	cfg := testConfig()
	cfg.FragSize, cfg.FirstWait, cfg.ReportWait, cfg.IdleTimeout = fragSize, 5*time.Second, 5*time.Second, 20*time.Second
	var (
		s    *Session
		recv *net.UDPConn
		fb   *net.UDPConn
	)
	err := netns.Do(ns, func() (err error) {
		if s, err = New(cfg, f); err != nil {
			return err
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		group, _ := net.ResolveUDPAddr("udp4", cfg.Group)
		if recv, err = net.ListenMulticastUDP("udp4", lo, group); err != nil {
			return err
		}
		fb, err = net.DialUDP("udp4", nil, s.Addr())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	defer fb.Close()
	s.AddReceiver("r1")
	codec, err := mcast.NewCodec(testKey, cfg.Session)
	if err != nil {
		t.Fatal(err)
	}
	report := func(st *mcast.Status, rep mcast.Report) {
		t.Helper()
		st.Receiver, st.Chunks = "r1", uint32(len(f))
		ds, err := codec.StatusDatagrams(st, rep)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if _, err := fb.Write(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	report(&mcast.Status{Seq: 1, Missing: 2, Hears: true}, mcast.Report{
		Whole:   []mcast.Range{{Start: 1, Count: 1}},
		Partial: []mcast.Partial{{Chunk: 3, Missing: []mcast.Range{{Start: 0, Count: 1}, {Start: 2, Count: 1}}}},
	})
	type frag struct{ Chunk, Off int }
	var got []frag
	buf := make([]byte, mcast.MaxDatagram)
	for ended := false; !ended; {
		if err := recv.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := recv.Read(buf)
		if err != nil {
			t.Fatalf("waiting for round 1: %v (so far %v)", err, got)
		}
		m, err := codec.Parse(buf[:n])
		if err != nil {
			t.Fatalf("the sender's datagram: %v", err)
		}
		switch m := m.(type) {
		case *mcast.Data:
			if want := f[m.Chunk][m.Offset : int(m.Offset)+len(m.Payload)]; m.Round != 1 || !bytes.Equal(m.Payload, want) || int(m.FrameSize) != len(f[m.Chunk]) {
				t.Errorf("DATA %+v: not chunk %d's bytes at %d in round 1", m, m.Chunk, m.Offset)
			}
			got = append(got, frag{int(m.Chunk), int(m.Offset)})
		case *mcast.Control:
			ended = m.Phase == mcast.PhaseEnd && m.Round == 1
			if m.Phase == mcast.PhaseStart && m.Frames != 2 {
				t.Errorf("round start %+v: want 2 frames", m)
			}
		}
	}
	if d := gocmp.Diff([]frag{{1, 0}, {1, 100}, {1, 200}, {3, 0}, {3, 200}}, got); d != "" {
		t.Errorf("round 1 sent (-want +got):\n%s", d)
	}
	report(&mcast.Status{Seq: 2, Round: 1, Done: true, Hears: true}, mcast.Report{})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil once the only receiver is done", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not end after the receiver's done")
	}
	rs := s.Receivers()
	if len(rs) != 1 || rs[0].State != Done || rs[0].Reports != 2 {
		t.Errorf("receivers %+v, want r1 done after 2 reports", rs)
	}
	if st := s.Stats(); st.Rounds != 1 || st.Frames != 2 || st.Reports != 2 {
		t.Errorf("stats %+v: want 1 round, 2 frames, 2 reports", st)
	}
	// The finish reaches the group.
	for {
		if err := recv.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := recv.Read(buf)
		if err != nil {
			t.Fatalf("no finish: %v", err)
		}
		if m, err := codec.Parse(buf[:n]); err == nil {
			if c, ok := m.(*mcast.Control); ok && c.Phase == mcast.PhaseFinish {
				break
			}
		} else if !errors.Is(err, mcast.ErrMAC) {
			t.Fatal(err)
		}
	}
}

// TestLimiterNeverAboveRate offers datagrams as fast as the limiter takes
// them over a simulated second (the limiter's own clock, given, not
// slept): what it lets through stays within the rate plus its bucket.
func TestLimiterNeverAboveRate(t *testing.T) {
	for _, bits := range []int64{1e6, 100e6, 900e6, 10e9} {
		l := NewLimiter(bits)
		if l.Burst() < mcast.MaxDatagram+WireOverhead {
			t.Fatalf("%d bit/s: bucket of %d bytes holds no datagram", bits, l.Burst())
		}
		const size = mcast.MaxDatagram + WireOverhead
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var sent int64
		for now := start; now.Before(start.Add(time.Second)); now = now.Add(10 * time.Microsecond) {
			for l.AllowN(now, size) {
				sent += size
			}
		}
		limit := bits/8 + int64(l.Burst())
		if sent > limit || sent < bits/8*9/10 {
			t.Errorf("%d bit/s: %d bytes in a second, want %d..%d", bits, sent, bits/8*9/10, limit)
		}
	}
}

// TestSharedLimiter: sessions given one limiter draw what they send from
// it, not from a limiter of their own: two sessions' heartbeats empty a
// shared bucket that refills at a byte a second.
func TestSharedLimiter(t *testing.T) {
	testenv.Root(t, "a network namespace for multicast on loopback")
	ns := multicastLoopback(t)
	l := NewLimiter(8)
	full := l.TokensAt(time.Now())
	var sent uint64
	for i, group := range []string{"239.255.18.1:40001", "239.255.18.2:40001"} {
		cfg := testConfig()
		cfg.Group, cfg.Session, cfg.Rate, cfg.Limiter = group, uint64(50+i), 0, l
		cfg.IdleTimeout, cfg.FirstWait, cfg.Heartbeat = 200*time.Millisecond, 10*time.Millisecond, 20*time.Millisecond
		var s *Session
		if err := netns.Do(ns, func() (err error) { s, err = New(cfg, make(frames, 3)); return err }); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := s.Run(ctx)
		cancel()
		if err != nil {
			t.Fatalf("session %d: Run = %v", i, err)
		}
		st := s.Stats()
		sent += st.Bytes + st.Datagrams*WireOverhead
	}
	// The bucket refilled a byte a second meanwhile: allow 10.
	if left := l.TokensAt(time.Now()); left > full-float64(sent)+10 || sent == 0 {
		t.Errorf("the shared bucket holds %.0f of %.0f bytes after the sessions sent %d: they did not draw from it", left, full, sent)
	}
}

// TestReregistered: a node registered again (it loads the image again
// while the session lingers, or a node of the same load enrolls late) is
// waited for anew: what it reported before says nothing, its reports
// count from 1 again, and its idle timeout runs from its registration,
// not from the session's start.
func TestReregistered(t *testing.T) {
	s := newSession(t, testConfig(), make(frames, 4))
	s.start = time.Now().Add(-time.Hour) // a session long under way
	s.AddReceiver("n1")
	s.take(status("n1", 7, 0, 1, mcast.Report{}, "done"), "10.0.0.1:5")
	if !s.finished() {
		t.Fatalf("not finished with its one receiver done: %+v", s.Receivers())
	}
	s.AddReceiver("n1")
	if st := s.Receivers()[0].State; s.finished() || st != Waiting {
		t.Errorf("registered again: %v, finished %v; want waiting, not finished", st, s.finished())
	}
	if !s.take(status("n1", 1, 0, 1, whole(2, 1)), "10.0.0.1:5") {
		t.Errorf("the new registration's first report (seq 1) was not taken")
	}
	if got := s.collect(); len(got) != 1 || got[0].chunk != 2 || !got[0].whole {
		t.Errorf("collect: %+v, want chunk 2 whole", got)
	}
}

// TestReportBounds: a report in more parts than any real one, or from a
// receiver past the session's bound, is dropped before the session holds
// anything of it (any node of the session holds the key).
func TestReportBounds(t *testing.T) {
	s := newSession(t, testConfig(), make(frames, 4))
	s.start = time.Now()
	if s.take(status("big", 1, 0, maxReportParts+1, whole(0, 1)), "10.0.0.1:5") || s.receivers["big"] != nil {
		t.Errorf("a report of %d parts was taken", maxReportParts+1)
	}
	for i := range maxReceivers {
		s.take(status(fmt.Sprintf("r%d", i), 1, 0, 1, whole(0, 1)), "10.0.0.1:5")
	}
	if s.take(status("one-more", 1, 0, 1, whole(0, 1)), "10.0.0.1:5") || len(s.receivers) != maxReceivers {
		t.Errorf("%d receivers held, want at most %d", len(s.receivers), maxReceivers)
	}
	if !s.take(status("r7", 2, 0, 1, whole(1, 1)), "10.0.0.1:5") {
		t.Errorf("a known receiver's report was dropped at the bound")
	}
}
