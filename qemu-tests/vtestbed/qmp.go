package vtestbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of the QEMU Machine Protocol on a unix socket: JSON
// objects, one per line, each way. After the greeting and
// qmp_capabilities, every command gets one reply ("return" or "error"),
// matched by its "id"; asynchronous events ("event") may arrive between
// them. It is safe for concurrent use.
type QMP struct {
	conn net.Conn

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan qmpReply
	events  []QMPEvent
	evWake  chan struct{} // closed and replaced when an event arrives
	readErr error
	done    chan struct{} // closed when the reader stops
}

// QMPEvent is an asynchronous event: SHUTDOWN, POWERDOWN, RESET, STOP, ...
type QMPEvent struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	At   time.Time       `json:"-"` // when it was read
}

// QMPError is an "error" reply.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrQMPClosed is returned for commands on a connection that has ended
// (QEMU exited, or Close was called).
var ErrQMPClosed = errors.New("qmp: connection closed")

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
}

type qmpMessage struct {
	qmpReply
	ID    json.RawMessage `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	QMP   json.RawMessage `json:"QMP"`
}

// DialQMP connects to the QMP socket at path, retrying until ctx ends while
// the socket does not exist yet or refuses (QEMU is still starting), reads
// the greeting and enters command mode.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w (last: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, pending: map[string]chan qmpReply{}, evWake: make(chan struct{}), done: make(chan struct{})}
	r := bufio.NewReader(conn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	}
	line, err := r.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: reading the greeting: %w", path, err)
	}
	var greet qmpMessage
	if err := json.Unmarshal(line, &greet); err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: not a QMP greeting: %q", path, line)
	}
	conn.SetReadDeadline(time.Time{})
	go q.read(r)
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func (q *QMP) read(r *bufio.Reader) {
	defer close(q.done)
	for {
		line, err := r.ReadBytes('\n')
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
		var m qmpMessage
		if err := json.Unmarshal(line, &m); err != nil {
			continue // not ours to judge: skip what we cannot read
		}
		q.mu.Lock()
		switch {
		case m.Event != "":
			q.events = append(q.events, QMPEvent{Name: m.Event, Data: m.Data, At: time.Now()})
			close(q.evWake)
			q.evWake = make(chan struct{})
		case m.ID != nil:
			var id string
			if json.Unmarshal(m.ID, &id) == nil {
				if ch, ok := q.pending[id]; ok {
					ch <- m.qmpReply
					delete(q.pending, id)
				}
			}
		}
		q.mu.Unlock()
	}
}

// Execute runs a command with arguments (nil for none) and returns its
// "return" value.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	if q.readErr != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", command, ErrQMPClosed)
	}
	q.nextID++
	id := fmt.Sprintf("vtb-%d", q.nextID)
	ch := make(chan qmpReply, 1)
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
			return nil, fmt.Errorf("qmp %s: %w", command, ErrQMPClosed)
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

func (q *QMP) forget(id string) {
	q.mu.Lock()
	delete(q.pending, id)
	q.mu.Unlock()
}

// Status returns the run state (query-status): "prelaunch", "running",
// "paused", "shutdown", ...
func (q *QMP) Status(ctx context.Context) (string, error) {
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
func (q *QMP) Events() []QMPEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]QMPEvent(nil), q.events...)
}

// WaitEvent waits for the first event named name (one received before the
// call counts) and returns it.
func (q *QMP) WaitEvent(ctx context.Context, name string) (QMPEvent, error) {
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
			return QMPEvent{}, fmt.Errorf("qmp: waiting for %s: %w", name, ErrQMPClosed)
		}
		select {
		case <-wake:
		case <-q.done:
		case <-ctx.Done():
			return QMPEvent{}, fmt.Errorf("qmp: waiting for %s: %w", name, ctx.Err())
		}
	}
}

// Close ends the connection.
func (q *QMP) Close() error {
	err := q.conn.Close()
	<-q.done
	return err
}
