package ra

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/orbit-lab/netboot/internal/netns"
)

// TestRunWaitsForCarrier is netbootd's situation on a testbed: the
// responder starts on a bridge whose ports come up later, so the bridge
// has no carrier and no link-local address yet. Run must wait, and answer
// solicitations once a port comes up; a Run that gives up returns before
// that and fails here.
func TestRunWaitsForCarrier(t *testing.T) {
	ns := carrierNetns(t)
	ipIn(t, ns, "link", "add", "br0", "type", "bridge")
	ipIn(t, ns, "link", "set", "br0", "up") // up, but no port: NO-CARRIER, no link-local
	ipIn(t, ns, "link", "add", "port0", "type", "veth", "peer", "name", "client0")

	logs := &logRecorder{msgs: make(chan string, 1024)}
	r := &Responder{Interface: "br0", Log: slog.New(logs), Retry: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- netns.Do(ns, func() error { return r.Run(ctx) }) }()

	// A deadline that means "hung", never "slow".
	hung := time.NewTimer(60 * time.Second)
	defer hung.Stop()
	waitLog(t, logs, done, hung, "waiting for an IPv6 link-local address")

	// The port comes up: the bridge gets carrier, then its link-local
	// address (tentative while duplicate address detection runs).
	ipIn(t, ns, "link", "set", "port0", "master", "br0", "up")
	ipIn(t, ns, "link", "set", "client0", "up")
	waitLog(t, logs, done, hung, "answering IPv6 router solicitations")

	// A client on the other end of the port solicits and gets the empty
	// advertisement. Solicitations are resent until one is answered: the
	// first may go out before the bridge forwards (its port is learning).
	var ra *ndp.RouterAdvertisement
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName("client0")
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.Unspecified)
		if err != nil {
			return err
		}
		defer c.Close()
		var last error // of the last solicitation
		for ra == nil {
			select {
			case err := <-done:
				return errors.Join(errors.New("Run returned while a client solicited"), err)
			case <-hung.C:
				return fmt.Errorf("no router advertisement within 60 s (last solicitation: %v)", last)
			default:
			}
			// Sending fails while client0 is not ready (EADDRNOTAVAIL
			// until its IPv6 comes up): wait a read's time and try again.
			last = c.WriteTo(&ndp.RouterSolicitation{}, nil, allRouters)
			c.SetReadDeadline(time.Now().Add(time.Second))
			for {
				m, _, _, err := c.ReadFrom()
				if err != nil {
					break // the deadline: solicit again
				}
				if adv, ok := m.(*ndp.RouterAdvertisement); ok {
					ra = adv
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ra.RouterLifetime != 0 || ra.ManagedConfiguration || ra.OtherConfiguration || len(ra.Options) != 0 {
		t.Errorf("advertisement %+v: want lifetime 0, M=0, O=0, no options", ra)
	}
	// The count goes up once the send has returned, maybe after the
	// client has the advertisement.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.Answered() == 0 {
		select {
		case <-tick.C:
		case <-hung.C:
			t.Fatal("Answered() = 0 60 s after an advertisement was received")
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60 s of its context's end")
	}
}

// waitLog waits for a log message starting with msg. Run returning first
// means it gave up.
func waitLog(t *testing.T, logs *logRecorder, done <-chan error, hung *time.Timer, msg string) {
	t.Helper()
	for {
		select {
		case m := <-logs.msgs:
			if strings.HasPrefix(m, msg) {
				return
			}
		case err := <-done:
			t.Fatalf("Run returned (%v) while waiting for the log line %q: it gave up instead of waiting", err, msg)
		case <-hung.C:
			t.Fatalf("no log line %q within 60 s", msg)
		}
	}
}

// logRecorder passes on the responder's messages at info level and above.
type logRecorder struct{ msgs chan string }

func (l *logRecorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	select {
	case l.msgs <- r.Message:
	default: // never block the responder; the test wants only two lines
	}
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// carrierNetns makes a network namespace for the test, deleted when it ends.
// Without root or ip netns the test skips, and fails under CI=true.
func carrierNetns(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and this machine lacks what the test needs: %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		missing("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing("needs the ip command (iproute2) for network namespaces")
	}
	b := make([]byte, 3)
	rand.Read(b)
	ns := "nbt-" + hex.EncodeToString(b) + "-ra"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		missing("ip netns add: " + err.Error() + ": " + string(bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	ipIn(t, ns, "link", "set", "lo", "up")
	return ns
}

func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}
