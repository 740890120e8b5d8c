package ra

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// dhcpd's TestInteropDirect is the end-to-end test: a client in a network
// namespace solicits and gets the empty RA, from a server started on a
// bridge without carrier.

// hung bounds every wait: reaching it means the responder hung.
const hung = 30 * time.Second

func TestServeNoInterface(t *testing.T) {
	r := &Responder{Interface: "nbt-nosuch0"}
	ctx, cancel := context.WithTimeout(context.Background(), hung)
	defer cancel()
	if err := r.Serve(ctx); !errors.Is(err, ErrNoInterface) {
		t.Errorf("Serve = %v, want ErrNoInterface", err)
	}
}

// messages is a slog handler that passes the message of each Info or
// higher record on, so a test can wait for what the responder says.
type messages chan string

func (m messages) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (m messages) Handle(_ context.Context, r slog.Record) error {
	m <- r.Message
	return nil
}
func (m messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m messages) WithGroup(string) slog.Handler      { return m }

// waitFor reads messages until one starts with prefix; Serve returning
// first, or the hung deadline, fails t.
func waitFor(t *testing.T, msgs messages, served *testenv.Served, prefix string) {
	t.Helper()
	deadline := time.After(hung)
	for {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-served.Done():
			t.Fatalf("Serve returned %v before logging %q", served.Err(), prefix)
		case <-deadline:
			t.Fatalf("no %q logged within %v", prefix, hung)
		}
	}
}

const (
	logWaiting   = "waiting for an IPv6 link-local address"
	logAnswering = "answering IPv6 router solicitations"
)

// TestServeStopsWhileWaiting: loopback never has a link-local address, so
// Serve waits; cancelling it then ends Serve with nil.
func TestServeStopsWhileWaiting(t *testing.T) {
	msgs := make(messages, 16)
	r := &Responder{Interface: "lo", Retry: 10 * time.Millisecond, Log: slog.New(msgs)}
	served := testenv.Serve(t, "Serve", hung, r.Serve)
	waitFor(t, msgs, served, logWaiting)
	served.Stop()
}

// TestServeWaitsAndStops: on an interface with no link-local address yet
// (a bridge without carrier, in the appliance) Serve waits; once the
// address appears it answers a solicitation with an RA; cancelled, it
// returns nil. A Serve that gives up instead of waiting returns before the
// address is there and fails the test.
func TestServeWaitsAndStops(t *testing.T) {
	testenv.Root(t, "network namespace")
	testenv.Programs(t, "Debian: iproute2", "ip")
	ns := netnstest.Temp(t, "nbt-ra-")
	// A veth pair inside ns: ra0 for the responder, cl0 for the client.
	// addrgenmode none keeps the kernel from giving either a link-local
	// address; the test adds them itself, without DAD.
	netnstest.IP(t, "-n", ns, "link", "add", "ra0", "type", "veth", "peer", "name", "cl0")
	for _, ifname := range []string{"ra0", "cl0"} {
		netnstest.IP(t, "-n", ns, "link", "set", ifname, "addrgenmode", "none")
		netnstest.IP(t, "-n", ns, "link", "set", ifname, "up")
	}
	netnstest.IP(t, "-n", ns, "addr", "add", "fe80::2/64", "dev", "cl0", "nodad")

	msgs := make(messages, 16)
	r := &Responder{Interface: "ra0", Retry: 10 * time.Millisecond, Log: slog.New(msgs)}
	// Serve stays on the namespace's thread: each attempt looks the
	// interface up and opens its socket there.
	served := testenv.Serve(t, "Serve", hung, func(ctx context.Context) error {
		return netns.Do(ns, func() error { return r.Serve(ctx) })
	})

	waitFor(t, msgs, served, logWaiting)
	netnstest.IP(t, "-n", ns, "addr", "add", "fe80::1/64", "dev", "ra0", "nodad")
	waitFor(t, msgs, served, logAnswering)

	adv, err := solicit(ns, "cl0")
	if err != nil {
		t.Fatal(err)
	}
	if adv.ManagedConfiguration || adv.OtherConfiguration || adv.RouterLifetime != 0 || len(adv.Options) != 0 {
		t.Errorf("RA = %+v, want M=0 O=0 lifetime 0 and no options", adv)
	}

	served.Stop()
	// Counted after the send, so read only once Serve has returned.
	if n := r.Answered(); n != 1 {
		t.Errorf("Answered = %d after one solicitation, want 1", n)
	}
}

// solicit sends one router solicitation from ifname in ns and returns the
// RA that answers it.
func solicit(ns, ifname string) (*ndp.RouterAdvertisement, error) {
	var adv *ndp.RouterAdvertisement
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.WriteTo(&ndp.RouterSolicitation{}, nil, netip.MustParseAddr("ff02::2")); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(hung)); err != nil {
			return err
		}
		for {
			m, _, _, err := c.ReadFrom()
			if err != nil {
				return errors.New("no router advertisement: " + err.Error())
			}
			if a, ok := m.(*ndp.RouterAdvertisement); ok {
				adv = a
				return nil
			}
		}
	})
	return adv, err
}
