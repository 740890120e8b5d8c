package mcastrecv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/mcastsend"
	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc/mcastrecv"
	"github.com/orbit-lab/netboot/rc/proto/mcast"
)

var testKey = bytes.Repeat([]byte{0x3c}, mcast.KeySize)

// image is a Frames of random frames; a nil one is an absent (zero) chunk.
type image [][]byte

func (im image) Count() int                  { return len(im) }
func (im image) Frame(i int) ([]byte, error) { return im[i], nil }

// newImage makes n frames of 1..maxSize random bytes, every absentEvery'th
// one absent.
func newImage(seed uint64, n, maxSize, absentEvery int) image {
	rng := rand.New(rand.NewPCG(seed, 1))
	im := make(image, n)
	for i := range im {
		if absentEvery > 0 && i%absentEvery == absentEvery-1 {
			continue
		}
		im[i] = make([]byte, 1+rng.IntN(maxSize))
		for k := range im[i] {
			im[i][k] = byte(rng.Uint32())
		}
	}
	return im
}

// present lists the chunks of im that have a frame.
func (im image) present() []int {
	var out []int
	for i, f := range im {
		if f != nil {
			out = append(out, i)
		}
	}
	return out
}

// sizes is every chunk's frame size, as a manifest says it.
func (im image) sizes() []int {
	out := make([]int, len(im))
	for i, f := range im {
		out[i] = len(f)
	}
	return out
}

// disk is what a receiver's deliver wrote: frames by chunk.
type disk struct {
	mu     sync.Mutex
	frames map[int][]byte
	calls  int
	refuse map[int]int // chunk: how many more deliveries of it to refuse
}

func newDisk() *disk { return &disk{frames: map[int][]byte{}, refuse: map[int]int{}} }

func (d *disk) deliver(i int, frame []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.refuse[i] > 0 {
		d.refuse[i]--
		return fmt.Errorf("chunk %d: hash mismatch (simulated)", i)
	}
	if _, dup := d.frames[i]; dup {
		return fmt.Errorf("chunk %d delivered twice", i)
	}
	d.frames[i] = bytes.Clone(frame)
	return nil
}

// check fails t unless d holds exactly im's frames of need, byte for byte.
func (d *disk) check(t *testing.T, who string, im image, need []int) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	got := slices.Sorted(maps.Keys(d.frames))
	if !slices.Equal(got, need) {
		t.Errorf("%s: delivered chunks %v, want %v", who, got, need)
	}
	for _, i := range need {
		if f, ok := d.frames[i]; ok && !bytes.Equal(f, im[i]) {
			t.Errorf("%s: chunk %d: %d bytes differ from the image's %d", who, i, len(f), len(im[i]))
		}
	}
}

// startSender makes a session in namespace ns and runs it until the test
// ends or it ends; the channel gets Run's error.
func startSender(t *testing.T, ns string, cfg mcastsend.Config, im image, receivers ...string) (*mcastsend.Session, <-chan error) {
	t.Helper()
	var s *mcastsend.Session
	if err := netns.Do(ns, func() (err error) { s, err = mcastsend.New(cfg, im); return err }); err != nil {
		t.Fatal(err)
	}
	for _, r := range receivers {
		s.AddReceiver(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, exited := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(exited)
		done <- s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	return s, done
}

// outcome is one Receive's.
type outcome struct {
	res mcastrecv.Result
	err error
}

// startReceiver runs Receive in namespace ns in the background.
func startReceiver(ctx context.Context, ns string, cfg mcastrecv.Config, d *disk) <-chan outcome {
	out := make(chan outcome, 1)
	go func() {
		var o outcome
		err := netns.Do(ns, func() error {
			o.res, o.err = mcastrecv.Receive(ctx, cfg, d.deliver)
			return nil
		})
		if err != nil {
			o.err = err
		}
		out <- o
	}()
	return out
}

func wait(t *testing.T, who string, c <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(50 * time.Second):
		t.Fatalf("%s: Receive did not return", who)
		return outcome{}
	}
}

// loopbackLab is a namespace whose loopback carries multicast.
func loopbackLab(t *testing.T) string {
	t.Helper()
	testenv.Root(t, "a network namespace for multicast on loopback")
	testenv.Programs(t, "Debian: iproute2", "ip")
	ns := netnstest.Temp(t, "mcr-")
	netnstest.IP(t, "-n", ns, "route", "add", "224.0.0.0/4", "dev", "lo")
	wireSized(t, ns, "lo")
	return ns
}

func senderConfig(group string, session uint64) mcastsend.Config {
	return mcastsend.Config{Group: group, Source: "127.0.0.1", Rate: 200e6, Key: testKey, Session: session,
		FragSize: 1000, FirstWait: 2 * time.Second, ReportWait: time.Second, IdleTimeout: 20 * time.Second}
}

func receiverConfig(id, group string, s *mcastsend.Session, chunks int, need []int) mcastrecv.Config {
	return mcastrecv.Config{Group: group, Sender: s.Addr().String(), Key: testKey, Session: 0, ID: id,
		Chunks: chunks, Need: need, NoData: 5 * time.Second}
}

// TestLoopback: on one namespace's loopback, receivers needing all, part
// or none of an image, one of them refusing a frame once (its hash did
// not verify), all end with exactly their frames, and the session ends
// when they are done. A second session on another group runs at once.
func TestLoopback(t *testing.T) {
	ns := loopbackLab(t)
	im := newImage(1, 60, 9000, 7)
	all := im.present()
	delta := []int{0, 3, 4, 19, 21, 22, 59} // 20 is absent
	other := newImage(2, 10, 3000, 0)
	type rcv struct {
		id     string
		need   []int
		refuse map[int]int
	}
	rcvs := []rcv{{id: "full", need: all}, {id: "delta", need: delta}, {id: "flaky", need: all, refuse: map[int]int{3: 1, 40: 2}}, {id: "none"}}
	cfg := senderConfig("239.255.18.1:40001", 11)
	s, sdone := startSender(t, ns, cfg, im, "full", "delta", "flaky", "none")
	cfg2 := senderConfig("239.255.18.2:40001", 12)
	s2, s2done := startSender(t, ns, cfg2, other, "other")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	disks := map[string]*disk{}
	outs := map[string]<-chan outcome{}
	for _, r := range rcvs {
		d := newDisk()
		for k, v := range r.refuse {
			d.refuse[k] = v
		}
		rc := receiverConfig(r.id, cfg.Group, s, len(im), r.need)
		rc.Session = cfg.Session
		disks[r.id], outs[r.id] = d, startReceiver(ctx, ns, rc, d)
	}
	oc := receiverConfig("other", cfg2.Group, s2, len(other), other.present())
	oc.Session = cfg2.Session
	otherDisk := newDisk()
	otherOut := startReceiver(ctx, ns, oc, otherDisk)
	for _, r := range rcvs {
		o := wait(t, r.id, outs[r.id])
		if o.err != nil || len(o.res.Missing) != 0 {
			t.Errorf("%s: Receive = %v missing %v, want nil", r.id, o.err, o.res.Missing)
		}
		disks[r.id].check(t, r.id, im, r.need)
		if r.refuse != nil && o.res.Stats.Refused != 3 {
			t.Errorf("%s: %d frames refused, want 3", r.id, o.res.Stats.Refused)
		}
		// The other session shares the port: its datagrams reach this
		// socket (bound to the port, as Go binds multicast) and are
		// refused by session id, not counted as forged.
		if o.res.Stats.Forged+o.res.Stats.Malformed != 0 {
			t.Errorf("%s: forged or malformed datagrams on a clean network: %+v", r.id, o.res.Stats)
		}
	}
	if o := wait(t, "other", otherOut); o.err != nil {
		t.Errorf("other session's receiver: %v", o.err)
	}
	otherDisk.check(t, "other", other, other.present())
	for name, c := range map[string]<-chan error{"session": sdone, "other session": s2done} {
		select {
		case err := <-c:
			if err != nil {
				t.Errorf("%s Run = %v, want nil", name, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s did not end after its receivers were done", name)
		}
	}
	for _, r := range s.Receivers() {
		if r.State != mcastsend.Done {
			t.Errorf("receiver %+v: want done", r)
		}
	}
	// The refused frames went again in later rounds.
	if st := s.Stats(); st.Rounds < 2 {
		t.Errorf("sender stats %+v: want a repair round for the refused frames", st)
	}
	if st := s.Stats(); st.Segmented == 0 {
		t.Errorf("sender stats %+v: no segmented send on loopback", st)
	}
}

// TestNoMulticast: with no sender on the group the receiver gives up
// within NoData, or when its context ends, with everything it needs still
// missing, and tells the sender's address it leaves.
func TestNoMulticast(t *testing.T) {
	ns := loopbackLab(t)
	for _, tc := range []struct {
		name    string
		noData  time.Duration
		cancel  bool
		wantErr error
	}{
		{"nothing arrives", 300 * time.Millisecond, false, mcastrecv.ErrNoMulticast},
		{"cancelled", time.Minute, true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fb *net.UDPConn
			if err := netns.Do(ns, func() (err error) {
				fb, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer fb.Close()
			need := []int{1, 2, 5}
			cfg := mcastrecv.Config{Group: "239.255.18.9:40009", Sender: fb.LocalAddr().String(), Key: testKey, Session: 9,
				ID: "lonely", Chunks: 8, Need: need, NoData: tc.noData}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d := newDisk()
			out := startReceiver(ctx, ns, cfg, d)
			codec, err := mcast.NewCodec(testKey, 9)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, mcast.MaxDatagram)
			var reports, leaves int
			for leaves == 0 {
				if err := fb.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n, err := fb.Read(buf)
				if err != nil {
					t.Fatalf("after %d reports: %v", reports, err)
				}
				m, err := codec.Parse(buf[:n])
				if err != nil {
					t.Fatalf("the receiver's report: %v", err)
				}
				st := m.(*mcast.Status)
				if reports++; st.Leave {
					leaves++
				}
				if st.Receiver != "lonely" || st.Missing != uint32(len(need)) || st.Hears {
					t.Errorf("report %+v: want lonely missing %d, not hearing", st, len(need))
				}
				if tc.cancel && reports == 2 {
					cancel()
				}
			}
			o := wait(t, "lonely", out)
			if !errors.Is(o.err, tc.wantErr) || !slices.Equal(o.res.Missing, need) {
				t.Errorf("Receive = %v missing %v; want %v missing %v", o.err, o.res.Missing, tc.wantErr, need)
			}
			if d.calls != 0 {
				t.Errorf("deliver called %d times", d.calls)
			}
			if reports < 2 {
				t.Errorf("%d reports before the leave; want one at the start at least", reports-1)
			}
		})
	}
}

// TestSenderEnds: a receiver whose deliver refuses a frame every time
// never completes; when the sender's context ends the receiver learns the
// session is over and returns what it misses.
func TestSenderEnds(t *testing.T) {
	ns := loopbackLab(t)
	im := newImage(3, 5, 2000, 0)
	cfg := senderConfig("239.255.18.3:40003", 13)
	cfg.ReportWait = 100 * time.Millisecond
	var s *mcastsend.Session
	if err := netns.Do(ns, func() (err error) { s, err = mcastsend.New(cfg, im); return err }); err != nil {
		t.Fatal(err)
	}
	s.AddReceiver("stuck")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sdone := make(chan error, 1)
	go func() { sdone <- s.Run(ctx) }()
	d := newDisk()
	d.refuse[2] = 1 << 30
	rc := receiverConfig("stuck", cfg.Group, s, len(im), im.present())
	rc.Session = cfg.Session
	out := startReceiver(context.Background(), ns, rc, d)
	// Let it fail the frame a few rounds over, then end the session.
	for deadline := time.Now().Add(30 * time.Second); s.Stats().Rounds < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no third round: %+v", s.Stats())
		}
	}
	cancel()
	if err := <-sdone; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	o := wait(t, "stuck", out)
	if !errors.Is(o.err, mcastrecv.ErrSessionEnded) || !slices.Equal(o.res.Missing, []int{2}) {
		t.Errorf("Receive = %v missing %v; want ErrSessionEnded missing [2]", o.err, o.res.Missing)
	}
	d.check(t, "stuck", im, []int{0, 1, 3, 4})
}

func TestReceiveRefuses(t *testing.T) {
	good := mcastrecv.Config{Group: "239.255.18.4:40004", Sender: "127.0.0.1:9", Key: testKey, ID: "n", Chunks: 4, Need: []int{1}}
	for _, tc := range []struct {
		name string
		edit func(*mcastrecv.Config)
	}{
		{"no id", func(c *mcastrecv.Config) { c.ID = "" }},
		{"short key", func(c *mcastrecv.Config) { c.Key = testKey[:8] }},
		{"need past chunks", func(c *mcastrecv.Config) { c.Need = []int{4} }},
		{"unicast group", func(c *mcastrecv.Config) { c.Group = "127.0.0.1:40004" }},
		{"bad sender", func(c *mcastrecv.Config) { c.Sender = "x" }},
		{"no such interface", func(c *mcastrecv.Config) { c.Interface = "nosuchif0" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			res, err := mcastrecv.Receive(context.Background(), cfg, func(int, []byte) error { return nil })
			if err == nil || !slices.Equal(res.Missing, cfg.Need) {
				t.Errorf("Receive = %v missing %v; want an error missing %v", err, res.Missing, cfg.Need)
			}
			if errors.Is(err, mcastrecv.ErrNoMulticast) {
				t.Errorf("a bad config reads as no multicast: %v", err)
			}
		})
	}
}

// TestFrameLimits: a receiver that loses 10% of the datagrams and may
// hold only a frame or two in part at once still gets all of them (the
// rest wait for later rounds); one whose
// MaxFrame is below the image's frames gives up with an error, not as if
// multicast were missing, and leaves the session.
func TestFrameLimits(t *testing.T) {
	im := newImage(5, 30, 20000, 0)
	for i := range im {
		im[i] = append(im[i], make([]byte, 10000)...) // 10000..30000 bytes
	}
	for _, tc := range []struct {
		name                 string
		maxFrame, maxPartial int
		loss                 int
		wantErr              bool
	}{
		{name: "a frame or two held", maxFrame: 30000, maxPartial: 40000, loss: 10},
		{name: "frames too large", maxFrame: 5000, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := loopbackLab(t)
			if tc.loss > 0 {
				testenv.Programs(t, "Debian: nftables", "nft")
				dropMulticast(t, ns, tc.loss)
			}
			cfg := senderConfig("239.255.18.5:40005", 15)
			cfg.ReportWait = 200 * time.Millisecond
			s, sdone := startSender(t, ns, cfg, im, "r")
			rc := receiverConfig("r", cfg.Group, s, len(im), im.present())
			rc.Session, rc.MaxFrame, rc.MaxPartial = cfg.Session, tc.maxFrame, tc.maxPartial
			d := newDisk()
			o := wait(t, "r", startReceiver(context.Background(), ns, rc, d))
			if tc.wantErr {
				if o.err == nil || errors.Is(o.err, mcastrecv.ErrNoMulticast) || !slices.Equal(o.res.Missing, im.present()) {
					t.Errorf("Receive = %v missing %d; want a frame size error, all missing", o.err, len(o.res.Missing))
				}
			} else {
				if o.err != nil {
					t.Errorf("Receive = %v", o.err)
				}
				d.check(t, "r", im, im.present())
				if o.res.Stats.Deferred == 0 {
					t.Errorf("stats %+v: nothing deferred, the limit was not tested", o.res.Stats)
				}
			}
			if err := <-sdone; err != nil {
				t.Errorf("sender Run = %v", err)
			}
		})
	}
}

// TestAbsentChunk: a receiver that asks for a chunk the image has no
// frame for (an all-zero chunk: the receiver's caller should have written
// it itself) gets the rest; the session then ends instead of running on,
// and the receiver returns that chunk missing.
func TestAbsentChunk(t *testing.T) {
	ns := loopbackLab(t)
	im := newImage(6, 12, 3000, 4) // 3, 7, 11 absent
	cfg := senderConfig("239.255.18.6:40006", 16)
	cfg.ReportWait = 200 * time.Millisecond
	s, sdone := startSender(t, ns, cfg, im, "r")
	rc := receiverConfig("r", cfg.Group, s, len(im), []int{0, 1, 2, 3, 4})
	rc.Session = cfg.Session
	d := newDisk()
	o := wait(t, "r", startReceiver(context.Background(), ns, rc, d))
	if !errors.Is(o.err, mcastrecv.ErrSessionEnded) || !slices.Equal(o.res.Missing, []int{3}) {
		t.Errorf("Receive = %v missing %v; want ErrSessionEnded missing [3]", o.err, o.res.Missing)
	}
	d.check(t, "r", im, []int{0, 1, 2, 4})
	if err := <-sdone; err != nil {
		t.Errorf("sender Run = %v", err)
	}
}
