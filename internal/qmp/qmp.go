// Package qmp is a client of the QEMU Machine Protocol on a unix socket:
// JSON objects, one per line, each way. After the greeting and
// qmp_capabilities, every command gets one reply ("return" or "error"),
// matched by its "id"; asynchronous events ("event") may arrive between
// them and are kept. netbootd's qemu power driver (am/power) and the
// virtual testbed (qemu-tests/vtestbed) both use it.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Client is one QMP connection. It is safe for concurrent use.
type Client struct {
	conn net.Conn

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan reply
	events  []Event
	evWake  chan struct{} // closed and replaced when an event arrives
	readErr error
	done    chan struct{} // closed when the reader stops
}

// Event is an asynchronous event: SHUTDOWN, POWERDOWN, RESET, STOP, ...
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	At   time.Time       `json:"-"` // when it was read
}

// Error is an "error" reply.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrClosed is returned for commands on a connection that has ended
// (QEMU exited, or Close was called).
var ErrClosed = errors.New("qmp: connection closed")

type reply struct {
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
}

type message struct {
	reply
	ID    json.RawMessage `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	QMP   json.RawMessage `json:"QMP"`
}

// maxLine bounds one message: replies to the commands we send are small,
// and a peer that sends megabytes without a newline is not QEMU.
const maxLine = 1 << 20

// Dial connects to the QMP socket at path once, reads the greeting and
// enters command mode. A socket that does not exist or refuses is an error
// wrapping the dial's error (QEMU is not running); ctx bounds the dial and
// the handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return handshake(ctx, path, conn)
}

// DialWait is Dial, retrying until ctx ends while the socket does not exist
// yet or refuses (QEMU is still starting).
func DialWait(ctx context.Context, path string) (*Client, error) {
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return handshake(ctx, path, conn)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w (last: %w)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func handshake(ctx context.Context, path string, conn net.Conn) (*Client, error) {
	q := &Client{conn: conn, pending: map[string]chan reply{}, evWake: make(chan struct{}), done: make(chan struct{})}
	r := bufio.NewReader(conn)
	// The greeting is read before the reader runs: ctx's deadline, or its
	// cancellation, ends that read.
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetReadDeadline(dl); err != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp %s: %w", path, err)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		// This fails only on a closed conn, whose read has ended anyway.
		_ = conn.SetReadDeadline(time.Unix(1, 0))
	})
	line, err := readLine(r)
	cancelled := !stop()
	if err != nil || cancelled {
		conn.Close()
		// The read deadline is only ever ctx's: its timer and ctx's may
		// fire in either order.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("qmp %s: reading the greeting: %w", path, err)
	}
	var greet message
	if err := json.Unmarshal(line, &greet); err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: not a QMP greeting: %.200q", path, line)
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	go q.read(r)
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// readLine reads one newline-terminated message of at most maxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		switch {
		case len(line) > maxLine:
			return nil, fmt.Errorf("message longer than %d bytes", maxLine)
		case err == nil:
			return line, nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, err
		}
	}
}

func (q *Client) read(r *bufio.Reader) {
	defer close(q.done)
	for {
		line, err := readLine(r)
		if err != nil {
			q.mu.Lock()
			q.readErr = err
			for id, ch := range q.pending {
				close(ch)
				delete(q.pending, id)
			}
			q.mu.Unlock()
			return
		}
		var m message
		if err := json.Unmarshal(line, &m); err != nil {
			continue // not ours to judge: skip what we cannot read
		}
		q.mu.Lock()
		switch {
		case m.Event != "":
			q.events = append(q.events, Event{Name: m.Event, Data: m.Data, At: time.Now()})
			close(q.evWake)
			q.evWake = make(chan struct{})
		case m.ID != nil:
			var id string
			if json.Unmarshal(m.ID, &id) == nil {
				if ch, ok := q.pending[id]; ok {
					ch <- m.reply
					delete(q.pending, id)
				}
			}
		}
		q.mu.Unlock()
	}
}

// Execute runs a command with arguments (nil for none) and returns its
// "return" value; an "error" reply is an *Error.
func (q *Client) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	if q.readErr != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", command, ErrClosed)
	}
	q.nextID++
	id := fmt.Sprintf("c%d", q.nextID)
	ch := make(chan reply, 1)
	q.pending[id] = ch
	q.mu.Unlock()

	msg := map[string]any{"execute": command, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	if _, err := q.conn.Write(append(data, '\n')); err != nil {
		q.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case rep, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("qmp %s: %w", command, ErrClosed)
		}
		if rep.Error != nil {
			rep.Error.Command = command
			return nil, rep.Error
		}
		return rep.Return, nil
	case <-ctx.Done():
		q.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (q *Client) forget(id string) {
	q.mu.Lock()
	delete(q.pending, id)
	q.mu.Unlock()
}

// Status returns the run state (query-status): "prelaunch", "running",
// "paused", "shutdown", ...
func (q *Client) Status(ctx context.Context) (string, error) {
	raw, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("qmp query-status: %w", err)
	}
	return st.Status, nil
}

// Events returns the events received so far.
func (q *Client) Events() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Event(nil), q.events...)
}

// WaitEvent waits for the first event named name (one received before the
// call counts) and returns it.
func (q *Client) WaitEvent(ctx context.Context, name string) (Event, error) {
	for {
		q.mu.Lock()
		for _, e := range q.events {
			if e.Name == name {
				q.mu.Unlock()
				return e, nil
			}
		}
		wake, closed := q.evWake, q.readErr != nil
		q.mu.Unlock()
		if closed {
			return Event{}, fmt.Errorf("qmp: waiting for %s: %w", name, ErrClosed)
		}
		select {
		case <-wake:
		case <-q.done:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("qmp: waiting for %s: %w", name, ctx.Err())
		}
	}
}

// Close ends the connection.
func (q *Client) Close() error {
	err := q.conn.Close()
	<-q.done
	return err
}
