// Package qmptest is a stand-in QEMU for tests of QMP clients (the qemu
// power driver, nbctl's imaging, the QMP client itself): it listens on a
// unix socket, greets each connection as QEMU does, and hands each command
// to the test's handler, which answers it, sends events first, or hangs.
package qmptest

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// DefaultGreeting is what QEMU 8.2 says when a client connects.
const DefaultGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}}, "capabilities": ["oob"]}}`

// Server says what the stand-in does; Start runs it.
type Server struct {
	// Greeting, if set, gives the greeting of each new connection (a test
	// may change it between connections); DefaultGreeting otherwise.
	Greeting func() string
	// Handle answers one command, qmp_capabilities included, through c.
	// A handler that answers nothing plays a hung QEMU: it should wait on
	// c.Done so that the test's end releases it.
	Handle func(c *Conn, cmd string, args json.RawMessage)
}

// Start listens on a new socket until t ends and returns its path. The
// socket lives under os.TempDir: a test's TempDir may exceed sun_path.
func (s *Server) Start(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		close(done)
		conns.Wait()
		os.RemoveAll(dir)
	})
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				s.serve(nc, done)
			}()
		}
	}()
	return path
}

func (s *Server) serve(nc net.Conn, done <-chan struct{}) {
	defer nc.Close()
	// The test's end closes the connection, so a read that waits ends too.
	go func() {
		<-done
		nc.Close()
	}()
	greeting := DefaultGreeting
	if s.Greeting != nil {
		greeting = s.Greeting()
	}
	c := &Conn{nc: nc, done: done}
	c.write([]byte(greeting))
	sc := bufio.NewScanner(nc)
	for !c.closed && sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &req) != nil {
			return // QEMU would answer an error; no client here sends garbage
		}
		c.id = req.ID
		s.Handle(c, req.Execute, req.Arguments)
	}
}

// Conn is one client's connection, as the handler of its current command
// sees it.
type Conn struct {
	nc     net.Conn
	id     json.RawMessage
	done   <-chan struct{}
	closed bool
}

// Return answers the command with v ({} if nil).
func (c *Conn) Return(v any) {
	if v == nil {
		v = map[string]any{}
	}
	c.Reply(map[string]any{"return": v})
}

// Error answers the command with a QMP error.
func (c *Conn) Error(class, desc string) {
	c.Reply(map[string]any{"error": map[string]string{"class": class, "desc": desc}})
}

// Reply sends msg as the command's answer, with the command's id added.
func (c *Conn) Reply(msg map[string]any) {
	if c.id != nil {
		msg["id"] = c.id
	}
	c.Send(msg)
}

// Event sends an asynchronous event, as QEMU stamps it.
func (c *Conn) Event(name string, data any) {
	msg := map[string]any{"event": name, "timestamp": map[string]int{"seconds": 1, "microseconds": 2}}
	if data != nil {
		msg["data"] = data
	}
	c.Send(msg)
}

// Send writes msg as it is.
func (c *Conn) Send(msg any) {
	data, _ := json.Marshal(msg)
	c.write(data)
}

// Done is closed when the test ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close ends the connection after the current command (QEMU's quit).
func (c *Conn) Close() {
	c.closed = true
	c.nc.Close()
}

// write sends one line; once a write fails the client has gone, and the
// connection ends after the current command.
func (c *Conn) write(line []byte) {
	if _, err := c.nc.Write(append(line, '\r', '\n')); err != nil {
		c.closed = true
	}
}
