package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/qmp/qmptest"
)

func TestQMP(t *testing.T) {
	path := (&qmptest.Server{Handle: func(c *qmptest.Conn, cmd string, _ json.RawMessage) {
		switch cmd {
		case "qmp_capabilities":
			c.Return(nil)
		case "query-status":
			c.Event("RESUME", map[string]any{}) // an event before the reply
			c.Return(map[string]any{"status": "prelaunch", "running": false})
		case "cont":
			c.Return(nil)
			c.Event("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"})
		case "quit":
			c.Return(nil)
			c.Close()
		default:
			c.Error("CommandNotFound", "The command "+cmd+" has not been found")
		}
	}}).Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := DialWait(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st, err := q.Status(ctx); err != nil || st != "prelaunch" {
		t.Fatalf("Status = %q, %v", st, err)
	}
	_, err = q.Execute(ctx, "no-such-thing", map[string]any{"x": 1})
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "no-such-thing" {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := q.Execute(ctx, "cont", nil); err != nil {
		t.Fatal(err)
	}
	ev, err := q.WaitEvent(ctx, "SHUTDOWN")
	if err != nil || !strings.Contains(string(ev.Data), "guest-shutdown") {
		t.Fatalf("SHUTDOWN: %+v %v", ev, err)
	}
	if names := eventNames(q.Events()); !slices.Equal(names, []string{"RESUME", "SHUTDOWN"}) {
		t.Errorf("events %v", names)
	}
	if _, err := q.Execute(ctx, "quit", nil); err != nil {
		t.Fatal(err)
	}
	// The server has gone: commands fail at once, waits end.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := q.Execute(ctx, "query-status", nil)
		if errors.Is(err, ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after quit: %v, want ErrClosed", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := q.WaitEvent(ctx, "RESET"); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitEvent on a closed connection: %v", err)
	}
}

func eventNames(evs []Event) []string {
	var names []string
	for _, e := range evs {
		names = append(names, e.Name)
	}
	return names
}

func TestDialNoSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	none := filepath.Join(t.TempDir(), "none.sock")
	if _, err := DialWait(ctx, none); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DialWait without a socket: %v", err)
	}
	// Dial tries once: QEMU is not running.
	if _, err := Dial(context.Background(), none); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Dial without a socket: %v, want ENOENT", err)
	}
}

// A peer that is not QEMU: no greeting, a greeting of another protocol, a
// line without end. The handshake fails and says why: the silent peer
// stays silent until the test ends, so only Dial's deadline ends it; the
// others answer, and their deadline only means "hung".
func TestDialBadPeer(t *testing.T) {
	tests := []struct {
		name  string
		serve func(c net.Conn, end <-chan struct{}) error
		wait  time.Duration
		want  string
	}{
		{"silent", func(c net.Conn, end <-chan struct{}) error { <-end; return nil }, 300 * time.Millisecond, "context deadline exceeded"},
		{"not QMP", func(c net.Conn, _ <-chan struct{}) error {
			_, err := io.WriteString(c, "{\"hello\": 1}\n")
			return err
		}, time.Minute, "not a QMP greeting"},
		{"endless line", func(c net.Conn, _ <-chan struct{}) error {
			// Dial hangs up once the line is too long: the rest may not go.
			_, _ = c.Write(bytes.Repeat([]byte("x"), maxLine+10))
			return nil
		}, time.Minute, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "qmp.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			end := make(chan struct{})
			defer close(end)
			go func() {
				if c, err := ln.Accept(); err == nil {
					if err := tc.serve(c, end); err != nil {
						t.Errorf("the peer: %v", err)
					}
					c.Close()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), tc.wait)
			defer cancel()
			dialed := make(chan error, 1)
			go func() {
				q, err := Dial(ctx, path)
				if err == nil {
					q.Close()
				}
				dialed <- err
			}()
			select {
			case err := <-dialed:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Dial: %v, want an error saying %q", err, tc.want)
				}
			case <-time.After(tc.wait + time.Minute):
				t.Errorf("Dial hangs %v after its deadline", time.Minute)
			}
		})
	}
}
