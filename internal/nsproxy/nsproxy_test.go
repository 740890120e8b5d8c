package nsproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// inNetns runs fn inside namespace name, failing t on its error.
func inNetns(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := netns.Do(name, fn); err != nil {
		t.Fatal(err)
	}
}

// TestListen: the port asked for when it is free; else the next free one
// within tries, whether the taker holds loopback or every address (as a
// netbootd with listen ":5054" does); an error when none is free. Each
// row runs in a namespace of its own, so that the ports it takes are its
// own and a wildcard listener binds no host interface.
func TestListen(t *testing.T) {
	testenv.Root(t, "network namespaces")
	for _, tc := range []struct {
		name  string
		taken []string // host parts of listeners on the asked port, then the next ones
		tries int
		want  int // offset of the port Listen takes from the asked one; -1: an error
	}{
		{name: "free", tries: 1, want: 0},
		{name: "taken on loopback", taken: []string{"127.0.0.1"}, tries: 5, want: 1},
		{name: "taken on every address", taken: []string{"0.0.0.0"}, tries: 5, want: 1},
		{name: "two taken", taken: []string{"0.0.0.0", "127.0.0.1"}, tries: 5, want: 2},
		{name: "all taken", taken: []string{"127.0.0.1", "127.0.0.1"}, tries: 2, want: -1},
		{name: "no ports", tries: 0, want: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.Temp(t, "nsp")
			const port = 5054
			inNetns(t, ns, func() error {
				for i, host := range tc.taken {
					l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port+i)))
					if err != nil {
						return err
					}
					defer l.Close()
				}
				ln, err := Listen(port, tc.tries)
				if tc.want < 0 {
					if err == nil {
						ln.Close()
						return fmt.Errorf("Listen(%d, %d) took port %d, want an error", port, tc.tries, Port(ln))
					}
					return nil
				}
				if err != nil {
					return fmt.Errorf("Listen(%d, %d): %w", port, tc.tries, err)
				}
				defer ln.Close()
				if got := ln.Addr().String(); got != "127.0.0.1:"+strconv.Itoa(port+tc.want) {
					return fmt.Errorf("Listen(%d, %d) is on %s, want 127.0.0.1:%d", port, tc.tries, got, port+tc.want)
				}
				return nil
			})
		})
	}
}

// TestForwarder runs servers on the loopback of a namespace of their own,
// which this namespace cannot reach, and a forwarder to them from here.
func TestForwarder(t *testing.T) {
	testenv.Root(t, "network namespaces")
	ns := netnstest.Temp(t, "nsp")
	var httpLn, rawLn, closedLn net.Listener
	inNetns(t, ns, func() (err error) {
		if httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		if rawLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		closedLn, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	// A port of the namespace nothing listens on.
	closed := closedLn.Addr().String()
	closedLn.Close()

	// The HTTP server answers the method, path and a sum of the body.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s %d %x", r.Method, r.URL.Path, len(body), sha256.Sum256(body))
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(httpLn) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("the namespace's HTTP server: %v", err)
		}
	})
	// The raw server reads its client to the end of stream, then answers
	// how much it got: only a carried half-close lets it answer.
	go func() {
		for {
			c, err := rawLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "got %d bytes", n)
			}()
		}
	}()
	t.Cleanup(func() { rawLn.Close() })

	// start runs a forwarder to target for the rest of the test.
	start := func(t *testing.T, target string) string {
		ln, err := Listen(40000, 100)
		if err != nil {
			t.Fatal(err)
		}
		f := Forwarder{Netns: ns, Target: target, DialTimeout: 5 * time.Second, Logf: t.Logf}
		testenv.Serve(t, "Forwarder.Serve", 10*time.Second, func(ctx context.Context) error { return f.Serve(ctx, ln) })
		return ln.Addr().String()
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB

	for _, tc := range []struct {
		name   string
		target string
		check  func(t *testing.T, fwd string)
	}{
		{name: "HTTP request and response", target: httpLn.Addr().String(), check: func(t *testing.T, fwd string) {
			resp, err := http.Post("http://"+fwd+"/api/v1/nodes", "application/octet-stream", bytes.NewReader(big))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("POST /api/v1/nodes %d %x", len(big), sha256.Sum256(big))
			if resp.StatusCode != http.StatusOK || string(got) != want {
				t.Errorf("through the forwarder: %d %q, want 200 %q", resp.StatusCode, got, want)
			}
		}},
		{name: "end of stream carried, answer after it", target: rawLn.Addr().String(), check: func(t *testing.T, fwd string) {
			c, err := net.Dial("tcp", fwd)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(big); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if want := fmt.Sprintf("got %d bytes", len(big)); err != nil || string(got) != want {
				t.Errorf("answer after a half-close: %q, %v; want %q", got, err, want)
			}
		}},
		{name: "target down: the client's connection ends", target: closed, check: func(t *testing.T, fwd string) {
			for range 2 { // and the forwarder goes on accepting
				c, err := net.Dial("tcp", fwd)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(c)
				c.Close()
				if len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
					t.Errorf("from a forwarder to a closed port: %q, %v; want the end of stream", got, err)
				}
			}
		}},
		{name: "bound to 127.0.0.1 only", target: httpLn.Addr().String(), check: func(t *testing.T, fwd string) {
			_, port, _ := net.SplitHostPort(fwd)
			if !strings.HasPrefix(fwd, "127.0.0.1:") {
				t.Errorf("forwarder on %s, want 127.0.0.1", fwd)
			}
			// Every 127/8 address is this host's; a listener on all
			// addresses would answer on 127.0.0.2 too.
			if c, err := net.Dial("tcp", "127.0.0.2:"+port); err == nil {
				c.Close()
				t.Errorf("the forwarder's port answers on 127.0.0.2")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, start(t, tc.target))
		})
	}
}

// TestServeBadTarget: a name or a bare host is refused before anything is
// carried, and the listener is closed.
func TestServeBadTarget(t *testing.T) {
	for _, target := range []string{"localhost:5054", "10.18.0.1", "", "10.18.0.1:http"} {
		t.Run(target, func(t *testing.T) {
			ln, err := Listen(41000, 100)
			if err != nil {
				t.Fatal(err)
			}
			err = Forwarder{Netns: "none", Target: target}.Serve(context.Background(), ln)
			if err == nil || !strings.Contains(err.Error(), "want ip:port") {
				t.Errorf("Serve with target %q = %v, want a want-ip:port error", target, err)
			}
			if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				c.Close()
				t.Errorf("the listener still accepts after a refused target")
			}
		})
	}
}
