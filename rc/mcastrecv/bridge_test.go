package mcastrecv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/mcastsend"
	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc/mcastrecv"
	"github.com/orbit-lab/netboot/rc/proto/mcast"
)

// bridgeLab is a sender's namespace holding a bridge, and nodes, each in a
// namespace of its own on a veth to the bridge.
type bridgeLab struct {
	t      *testing.T
	srv    string
	prefix string
	nodes  int
}

const labNet = "10.98.0."

func newBridgeLab(t *testing.T) *bridgeLab {
	testenv.Root(t, "network namespaces, a bridge, veths, nftables")
	testenv.Programs(t, "Debian: iproute2, nftables", "ip", "nft")
	l := &bridgeLab{t: t, srv: netnstest.Temp(t, "mcb-s-")}
	l.prefix = l.srv[len("mcb-s-"):]
	netnstest.IP(t, "-n", l.srv, "link", "add", "br0", "type", "bridge")
	netnstest.IP(t, "-n", l.srv, "addr", "add", labNet+"1/24", "dev", "br0")
	netnstest.IP(t, "-n", l.srv, "link", "set", "br0", "up")
	return l
}

// node adds a namespace on the bridge at the next address.
func (l *bridgeLab) node() string {
	l.nodes++
	ns := netnstest.Temp(l.t, fmt.Sprintf("mcb-%d-", l.nodes))
	port := fmt.Sprintf("p%d", l.nodes)
	netnstest.IP(l.t, "-n", l.srv, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	netnstest.IP(l.t, "-n", l.srv, "link", "set", port, "master", "br0")
	netnstest.IP(l.t, "-n", l.srv, "link", "set", port, "up")
	wireSized(l.t, l.srv, port)
	netnstest.IP(l.t, "-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", labNet, 10+l.nodes), "dev", "eth0")
	netnstest.IP(l.t, "-n", ns, "link", "set", "eth0", "up")
	return ns
}

// wireSized makes dev send packets cut to its MTU, as a real wire carries
// them: the sender's segmented sends (UDP GSO) would otherwise reach the
// nodes whole, and a drop rule would drop 40 datagrams at once.
func wireSized(t *testing.T, ns, dev string) {
	netnstest.IP(t, "-n", ns, "link", "set", "dev", dev, "gso_max_segs", "1")
}

// dropMulticast makes ns drop percent of the multicast it receives (100:
// all), counting the drops.
func dropMulticast(t *testing.T, ns string, percent int) {
	t.Helper()
	rule := "ip daddr 224.0.0.0/4 udp dport 40000-40999 counter drop"
	if percent < 100 {
		rule = fmt.Sprintf("ip daddr 224.0.0.0/4 udp dport 40000-40999 numgen random mod 100 < %d counter drop", percent)
	}
	for _, args := range [][]string{
		{"add", "table", "inet", "loss"},
		{"add", "chain", "inet", "loss", "in", "{ type filter hook input priority 0; }"},
		{"add", "rule", "inet", "loss", "in", rule},
	} {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %v in %s: %v\n%s", args, ns, err, out)
		}
	}
}

var nftPackets = regexp.MustCompile(`counter packets (\d+)`)

// dropped is how many datagrams ns's drop rule dropped.
func dropped(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "loss", "in").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list in %s: %v\n%s", ns, err, out)
	}
	m := nftPackets.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in %s's rule:\n%s", ns, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestBridge: a sender and five receivers on a bridge, two of them
// dropping 5% of the multicast, one needing only half the image (a
// delta); a sixth joins once the session is under way; a seventh has
// multicast blocked and gives up at once, for HTTP; an eighth node
// injects forged and foreign datagrams into the group all along. Every
// receiver ends with exactly the frames it needs, the blocked one with
// ErrNoMulticast and all it needs missing, and the session ends when all
// are done or gone.
func TestBridge(t *testing.T) {
	l := newBridgeLab(t)
	im := newImage(4, 80, 120<<10, 9)
	all := im.present()
	var half []int
	for _, i := range all {
		if i%2 == 0 {
			half = append(half, i)
		}
	}
	type rcv struct {
		id   string
		ns   string
		need []int
		loss int // percent of multicast dropped; 100: blocked
	}
	var rcvs []*rcv
	for i := range 5 {
		r := &rcv{id: fmt.Sprintf("node%d", i+1), ns: l.node(), need: all}
		switch i {
		case 1, 3:
			r.loss = 5
		case 2:
			r.need = half
		}
		rcvs = append(rcvs, r)
	}
	late := &rcv{id: "late", ns: l.node(), need: all}
	blocked := &rcv{id: "blocked", ns: l.node(), need: all, loss: 100}
	evil := l.node()
	for _, r := range append(slices.Clone(rcvs), blocked) {
		if r.loss > 0 {
			dropMulticast(t, r.ns, r.loss)
		}
	}

	cfg := mcastsend.Config{Group: "239.255.19.1:40100", Source: labNet + "1", Rate: 100e6, Key: testKey, Session: 0xfeed,
		FirstWait: time.Second, ReportWait: 500 * time.Millisecond, IdleTimeout: 20 * time.Second}
	ids := []string{late.id, blocked.id}
	for _, r := range rcvs {
		ids = append(ids, r.id)
	}
	s, sdone := startSender(t, l.srv, cfg, im, ids...)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	go inject(ctx, t, evil, cfg)

	disks := map[string]*disk{}
	outs := map[string]<-chan outcome{}
	start := func(r *rcv) {
		rc := mcastrecv.Config{Group: cfg.Group, Sender: s.Addr().String(), Key: testKey, Session: cfg.Session,
			ID: r.id, Chunks: len(im), Need: r.need, NoData: 2 * time.Second, FrameSizes: im.sizes()}
		disks[r.id] = newDisk()
		outs[r.id] = startReceiver(ctx, r.ns, rc, disks[r.id])
	}
	for _, r := range append(slices.Clone(rcvs), blocked) {
		start(r)
	}
	// The late node starts once the session has sent part of its first round.
	for s.Stats().Datagrams < 1000 {
		if ctx.Err() != nil {
			t.Fatalf("the session sent only %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start(late)

	var forged, malformed uint64
	for _, r := range append(rcvs, late) {
		o := wait(t, r.id, outs[r.id])
		if o.err != nil || len(o.res.Missing) != 0 {
			t.Errorf("%s: Receive = %v missing %d chunks, want nil", r.id, o.err, len(o.res.Missing))
		}
		disks[r.id].check(t, r.id, im, r.need)
		forged += o.res.Stats.Forged
		malformed += o.res.Stats.Malformed
		t.Logf("%s: %+v", r.id, o.res.Stats)
	}
	o := wait(t, blocked.id, outs[blocked.id])
	if !errors.Is(o.err, mcastrecv.ErrNoMulticast) || !slices.Equal(o.res.Missing, blocked.need) {
		t.Errorf("blocked: Receive = %v missing %d chunks; want ErrNoMulticast, all %d missing", o.err, len(o.res.Missing), len(blocked.need))
	}
	disks[blocked.id].check(t, blocked.id, im, nil)
	select {
	case err := <-sdone:
		if err != nil {
			t.Errorf("session Run = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatalf("the session did not end: %+v", s.Receivers())
	}
	for _, r := range s.Receivers() {
		want := mcastsend.Done
		if r.ID == blocked.id {
			want = mcastsend.Left
		}
		if r.State != want {
			t.Errorf("sender's view of %s: %+v, want %v", r.ID, r, want)
		}
	}
	st := s.Stats()
	t.Logf("sender: %+v (image %d bytes)", st, imageBytes(im))
	if st.Rounds < 2 {
		t.Errorf("%d rounds: losses and a late node need repair rounds", st.Rounds)
	}
	if forged == 0 {
		t.Error("no receiver saw a forged datagram: the injector did not reach them, the test proves nothing")
	}
	if malformed == 0 {
		t.Error("no receiver refused the insider's frame size: it was believed")
	}
	for _, r := range rcvs {
		if r.loss > 0 {
			if n := dropped(t, r.ns); n == 0 {
				t.Errorf("%s: nftables dropped nothing: the test proves nothing about loss", r.id)
			}
		}
	}
}

func imageBytes(im image) int {
	n := 0
	for _, f := range im {
		n += len(f)
	}
	return n
}

// inject sends, from namespace ns until ctx ends, datagrams a node
// without the key could: DATA and a session finish MACed with another
// key, DATA of another session, and noise; and one a node of the session
// could (it has the key): DATA of chunk 0 with a frame size not the
// manifest's, which would make receivers drop what they hold of chunk 0.
func inject(ctx context.Context, t *testing.T, ns string, cfg mcastsend.Config) {
	var conn *net.UDPConn
	err := netns.Do(ns, func() error {
		if out, err := exec.Command("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0").CombinedOutput(); err != nil {
			return fmt.Errorf("route: %w: %s", err, out)
		}
		var err error
		conn, err = net.ListenUDP("udp4", nil)
		return err
	})
	if err != nil {
		t.Errorf("injector: %v", err)
		return
	}
	defer conn.Close()
	group, err := net.ResolveUDPAddr("udp4", cfg.Group)
	if err != nil {
		t.Errorf("injector: %v", err)
		return
	}
	wrongKey, _ := mcast.NewCodec(bytes.Repeat([]byte{0x99}, mcast.KeySize), cfg.Session)
	otherSession, _ := mcast.NewCodec(testKey, cfg.Session+1)
	insider, _ := mcast.NewCodec(testKey, cfg.Session)
	junk := bytes.Repeat([]byte{0xee}, 1000)
	datagrams := [][]byte{
		wrongKey.AppendData(nil, &mcast.Data{Round: 1, Chunk: 0, FrameSize: 1000, FragSize: 1000, Payload: junk}),
		wrongKey.AppendControl(nil, &mcast.Control{Round: 1, Chunks: 80, Phase: mcast.PhaseFinish}),
		otherSession.AppendData(nil, &mcast.Data{Round: 1, Chunk: 1, FrameSize: 1000, FragSize: 1000, Payload: junk}),
		insider.AppendData(nil, &mcast.Data{Round: 1, Chunk: 0, FrameSize: 999_999, FragSize: 1000, Payload: junk}),
		junk,
	}
	for i := 0; ctx.Err() == nil; i++ {
		// Errors: the group may be unreachable a moment; the next try counts.
		_, _ = conn.WriteToUDP(datagrams[i%len(datagrams)], group)
		time.Sleep(2 * time.Millisecond)
	}
}

// TestWithoutSegmentation: where the kernel refuses segmented sends (here
// a path MTU below the datagrams' size, as on a tunnel or a VLAN with a
// small MTU) the sender sends a datagram at a time, which IP fragments,
// and the receiver gets every frame.
func TestWithoutSegmentation(t *testing.T) {
	l := newBridgeLab(t)
	ns := l.node()
	netnstest.IP(t, "-n", l.srv, "link", "set", "br0", "mtu", "1300")
	im := newImage(3, 20, 9000, 0)
	cfg := mcastsend.Config{Group: "239.255.19.2:40101", Source: labNet + "1", Rate: 100e6, Key: testKey, Session: 0xfee1,
		FirstWait: time.Second, ReportWait: 500 * time.Millisecond, IdleTimeout: 20 * time.Second}
	s, sdone := startSender(t, l.srv, cfg, im, "r")
	rc := receiverConfig("r", cfg.Group, s, len(im), im.present())
	rc.Session = cfg.Session
	d := newDisk()
	if o := wait(t, "r", startReceiver(context.Background(), ns, rc, d)); o.err != nil {
		t.Errorf("Receive = %v", o.err)
	}
	d.check(t, "r", im, im.present())
	if err := <-sdone; err != nil {
		t.Errorf("sender Run = %v", err)
	}
	if st := s.Stats(); st.Segmented != 0 || st.WriteErrs != 0 || st.Datagrams == 0 {
		t.Errorf("sender stats %+v: want every datagram sent alone, none refused", st)
	}
}
