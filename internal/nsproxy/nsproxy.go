// Package nsproxy makes one TCP service inside a network namespace
// reachable from this process's own namespace, on loopback only: a
// forwarder whose listener is on 127.0.0.1 here and whose every upstream
// connection is made inside the namespace (internal/netns), so that
// nothing else of the namespace, and nothing of the forwarder beyond this
// host's loopback, is exposed. make demo uses it to show the appliance's
// web view and API, which run in the demo's namespace, to a browser on the
// host.
package nsproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/internal/netns"
)

// Listen listens on 127.0.0.1:port or, when that port is taken (another
// program, such as a netbootd of the host, listens on it, on loopback or
// on every address), on the first free one of the tries-1 ports after it.
// The caller compares the listener's port with port to say it moved.
// Only loopback is ever bound: the forwarder is for this host's own
// browser.
func Listen(port, tries int) (*net.TCPListener, error) {
	if port <= 0 || tries < 1 || port+tries-1 > 65535 {
		return nil, fmt.Errorf("nsproxy: listen: ports %d and %d after it: not a port range", port, tries-1)
	}
	for p := port; p < port+tries; p++ {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("nsproxy: listen: %w", err)
		}
	}
	return nil, fmt.Errorf("nsproxy: listen: 127.0.0.1:%d and the %d ports after it are all taken", port, tries-1)
}

// Port is ln's port.
func Port(ln net.Listener) int {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Forwarder carries each connection its listener accepts to Target, dialed
// from inside network namespace Netns, bytes both ways and each side's
// end of stream (a half-close) to the other.
type Forwarder struct {
	Netns string // the namespace's name (ip netns add NAME)
	// Target is ip:port as seen inside Netns. An address, not a name:
	// resolving a name, or dialing two address families at once, runs
	// on other threads, in this process's namespace instead.
	Target string
	// DialTimeout bounds each dial of Target; 0 is 10 s.
	DialTimeout time.Duration
	// Logf, if set, is told of a connection that could not be carried.
	Logf func(format string, args ...any)
}

// Serve accepts connections on ln until ctx ends, then closes ln and every
// connection it carries, and returns once their goroutines are done: nil
// after ctx's end, else why it stopped accepting.
func (f Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	if _, err := netip.ParseAddrPort(f.Target); err != nil {
		ln.Close()
		return fmt.Errorf("nsproxy: target %q: want ip:port: %w", f.Target, err)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			ln.Close()
			return fmt.Errorf("nsproxy: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.carry(ctx, c)
		}()
	}
}

// carry dials Target inside the namespace for client c and copies both
// ways until both sides have ended their streams, or either fails, or ctx
// ends; then it closes both.
func (f Forwarder) carry(ctx context.Context, c net.Conn) {
	defer c.Close()
	up, err := f.dial(ctx)
	if err != nil {
		f.logf("nsproxy: %s for %s: %v", f.Target, c.RemoteAddr(), err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		up.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(up, c) }()
	go func() { defer wg.Done(); pipe(c, up) }()
	wg.Wait()
}

// pipe copies src to dst. At src's end of stream it ends dst's writing
// side, so the peer sees the same end and may still answer the other way;
// on an error it closes both, ending the other direction too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}

func (f Forwarder) dial(ctx context.Context) (net.Conn, error) {
	timeout := f.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	var up net.Conn
	// A socket stays in the namespace of the thread that made it; the
	// dial makes it on this locked thread (an address, one family).
	err := netns.Do(f.Netns, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		up, err = d.DialContext(ctx, "tcp", f.Target)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial in netns %s: %w", f.Netns, err)
	}
	return up, nil
}

func (f Forwarder) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}

// URL is http://127.0.0.1:PORT for ln, with path appended.
func URL(ln net.Listener, path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(ln))) + path
}
