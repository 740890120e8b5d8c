package dhcpd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/iprange"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// freeUDPPort returns a loopback UDP port that was free a moment ago, with
// the next one free too (the test server's client port).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port + 1}); err == nil {
			c2.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

func loopbackConfig(port int) Config {
	cfg := testConfig()
	cfg.Interface = "lo"
	cfg.ServerIP = netip.MustParseAddr("127.0.0.1")
	cfg.Subnet = Subnet{Prefix: netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Subnets = nil
	cfg.IPXEFast = false
	cfg.Port = port
	return cfg
}

// TestServeOnLoopback runs the server on real sockets: bound to lo on a
// test port, it answers a renewing client by unicast, records the
// exchange as a boot event, and stops cleanly (nil) when its context ends.
func TestServeOnLoopback(t *testing.T) {
	port := freeUDPPort(t)
	node := inventory.Node{HRN: "lo.test", Domain: "test", Hostname: "lo", ControlIP: "127.0.0.2", ControlMAC: knownMAC}
	ev := &fakeEvents{}
	s, err := New(loopbackConfig(port), backend(newFakeStore(node), ev), nil)
	if err != nil {
		t.Fatal(err)
	}
	client, stop := serveLoopback(t, s, port)
	req := pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withCiaddr("127.0.0.2"))
	var reply *dhcpv4.DHCPv4
	buf := make([]byte, 1500)
	// The server may not be bound yet: resend, as a client does, until a
	// deadline that means it never answers.
	for deadline := time.Now().Add(30 * time.Second); reply == nil && time.Now().Before(deadline); {
		if _, err := client.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
			t.Fatal(err)
		}
		if err := client.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if n, _, err := client.ReadFromUDP(buf); err == nil {
			if reply, err = dhcpv4.FromBytes(buf[:n]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if reply == nil {
		t.Fatal("no reply")
	}
	if reply.MessageType() != dhcpv4.MessageTypeAck || reply.YourIPAddr.String() != "127.0.0.2" || reply.BootFileName != "pxelinux.0" {
		t.Errorf("reply: %s", reply.Summary())
	}
	stop()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.events) == 0 || ev.events[0].What != "DHCPACK" || ev.events[0].HRN != "lo.test" {
		t.Errorf("events after shutdown = %+v", ev.events)
	}
	if st := s.Stats(); st.Received == 0 || st.Replies == 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestServeBindErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := loopbackConfig(freeUDPPort(t))
	cfg.Interface = "nbt-nosuch0"
	s, err := New(cfg, backend(newFakeStore(), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ctx); err == nil || !strings.Contains(err.Error(), `interface "nbt-nosuch0"`) {
		t.Errorf("Serve on a missing interface = %v", err)
	}

	// Another socket holds the port for every interface: Serve must fail
	// at once (no SO_REUSEPORT sharing), naming the port.
	port := freeUDPPort(t)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s, err = New(loopbackConfig(port), backend(newFakeStore(), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Serve(ctx)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "port") {
		t.Errorf("Serve on a port in use = %v, want EADDRINUSE", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"no interface": func(c *Config) { c.Interface = "" },
		"no server ip": func(c *Config) { c.ServerIP = netip.Addr{} },
		"zero lease":   func(c *Config) { c.LeaseTime = 0 },
		"bad mode":     func(c *Config) { c.Mode = "relay" },
		"pool outside": func(c *Config) {
			c.Subnet.Pool = iprange.Range{First: netip.MustParseAddr("10.99.0.1"), Last: netip.MustParseAddr("10.99.0.2")}
		},
		"overlapping relay": func(c *Config) { c.Subnets[0].Prefix = netip.MustParsePrefix("10.18.5.0/24") },
	} {
		cfg := testConfig()
		mut(&cfg)
		if _, err := New(cfg, backend(newFakeStore(), nil), nil); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	st := newFakeStore()
	for name, b := range map[string]Backend{
		"no nodes":      {Leases: st, Discovered: st},
		"no leases":     {Nodes: st, Discovered: st},
		"no discovered": {Nodes: st, Leases: st},
	} {
		if _, err := New(testConfig(), b, nil); err == nil || !strings.Contains(err.Error(), "no store") {
			t.Errorf("%s: New = %v, want a no-store error", name, err)
		}
	}
}

// blockingStore holds every inventory lookup until release is closed,
// whatever the request's context says, so that a test can keep every
// worker busy for as long as it needs; entered gets the MAC of each lookup.
type blockingStore struct {
	*fakeStore
	entered chan string
	release chan struct{}
}

func (b *blockingStore) NodeByMAC(ctx context.Context, mac string) (inventory.Node, error) {
	b.entered <- mac
	<-b.release
	return b.fakeStore.NodeByMAC(ctx, mac)
}

// serveLoopback runs s.Serve (on loopbackConfig(port)) in the background
// and returns a client socket on the test server's client port, and stop,
// which ends Serve and fails the test if Serve hangs or returns an error.
func serveLoopback(t *testing.T, s *Server, port int) (client *net.UDPConn, stop func()) {
	t.Helper()
	served := testenv.Serve(t, "Serve", 30*time.Second, s.Serve)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port + 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, served.Stop
}

// waitFor polls cond until it holds; the deadline means "hung".
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("hung waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOverloadDrops: with every worker busy and the queue full, a request
// is dropped at once, counted as overload and logged once (rate-limited),
// and never answered; what was queued is answered once the workers free.
func TestOverloadDrops(t *testing.T) {
	port := freeUDPPort(t)
	node := inventory.Node{HRN: "lo.test", Domain: "test", Hostname: "lo", ControlIP: "127.0.0.2", ControlMAC: knownMAC}
	st := &blockingStore{fakeStore: newFakeStore(node), entered: make(chan string, 16), release: make(chan struct{})}
	cfg := loopbackConfig(port)
	cfg.Workers = 2
	var log apptest.SyncBuffer
	s, err := New(cfg, backend(st, nil), newTextLogger(&log))
	if err != nil {
		t.Fatal(err)
	}
	s.queue = 1
	client, stop := serveLoopback(t, s, port)
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	sendRaw := func(b []byte) {
		t.Helper()
		if _, err := client.WriteToUDP(b, server); err != nil {
			t.Fatal(err)
		}
	}
	// Until the server is bound, datagrams are lost: probe with malformed
	// ones, which no worker waits on. A probe still unread when this ends
	// is read before request 1 and handled before request 2 reaches the
	// store, so Received-Malformed counts the requests read from then on.
	waitFor(t, "the server to read a datagram", func() bool {
		sendRaw([]byte{1, 2, 3})
		return s.Stats().Malformed > 0
	})

	xid := func(i int) dhcpv4.TransactionID { return dhcpv4.TransactionID{0xab, 0, 0, byte(i)} }
	send := func(i int) {
		t.Helper()
		req := pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withCiaddr("127.0.0.2"))
		req.TransactionID = xid(i)
		sendRaw(req.ToBytes())
	}
	// Requests 1 and 2 occupy both workers, 3 waits in the queue, 4 and 5
	// find no room. One reader takes the datagrams in order, so once it
	// has counted 5, each went where it could.
	for i := 1; i <= 2; i++ {
		send(i)
		select {
		case <-st.entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("request %d never reached a worker", i)
		}
	}
	for i := 3; i <= 5; i++ {
		send(i)
	}
	waitFor(t, "5 requests read", func() bool { st := s.Stats(); return st.Received-st.Malformed == 5 })
	if got := s.Stats().Overload; got != 2 {
		t.Errorf("overload = %d, want 2", got)
	}
	if n := strings.Count(log.String(), "dhcp requests dropped: all workers busy"); n != 1 {
		t.Errorf("%d overload lines logged, want 1 (rate-limited):\n%s", n, log.String())
	}

	close(st.release)
	got := map[dhcpv4.TransactionID]bool{}
	buf := make([]byte, 1500)
	for range 3 {
		if err := client.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := client.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("replies so far %v: %v", got, err)
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		got[r.TransactionID] = true
	}
	stop()
	// Serve returned: every reply it will ever send is sent.
	if want := map[dhcpv4.TransactionID]bool{xid(1): true, xid(2): true, xid(3): true}; !cmp.Equal(got, want) {
		t.Errorf("answered %v, want the three that found a worker or a queue slot", got)
	}
	if st := s.Stats(); st.Replies != 3 || st.Overload != 2 || st.Received-st.Malformed != 5 {
		t.Errorf("after shutdown: %+v; want 5 requests read, 3 replies, 2 overload", st)
	}
}
