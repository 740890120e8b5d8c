package power

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// QEMU drives a VM through its QMP unix socket, one connection per call.
// It cannot start a QEMU process: a VM that is not running is an error.
// Start QEMU with -no-shutdown so that a guest's power-off (offSoft)
// leaves the process alive in the "shutdown" state that "on" can undo.
//
// Actions map to QMP commands as follows:
//
//	on       cont (after system_reset if the guest shut down or crashed);
//	         nothing if already running
//	offHard  stop + system_reset: vCPUs halted at once (reversible, unlike
//	         quit), and the machine reset, so that the next "on" boots from
//	         the firmware as a real power-on would
//	offSoft  system_powerdown (ACPI power button; the guest decides)
//	reset    system_reset, then cont if the VM was not running
//	reboot   the same as reset (QEMU has no separate warm reboot)
//	status   query-status
//
// The state returned is query-status after the action: "running" is on,
// every other run state (prelaunch, paused, shutdown, ...) is off. After
// offSoft it is usually still on: the guest shuts down in its own time.
type QEMU struct {
	Socket string
}

// DefaultTimeout bounds a driver call whose context has no deadline.
const DefaultTimeout = 30 * time.Second

func (q *QEMU) String() string { return "qemu:" + q.Socket }

// Do implements Driver.
func (q *QEMU) Do(ctx context.Context, a Action) (State, error) {
	if _, err := ParseAction(string(a)); err != nil {
		return StateUnknown, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	c, err := dialQMP(ctx, q.Socket)
	if err != nil {
		return StateUnknown, fmt.Errorf("power %s %s: %w", q, a, err)
	}
	defer c.close()
	switch a {
	case On:
		err = c.powerOn(ctx)
	case OffHard:
		if err = c.run(ctx, "stop"); err == nil {
			err = c.run(ctx, "system_reset")
		}
	case OffSoft:
		err = c.run(ctx, "system_powerdown")
	case Reset, Reboot:
		if err = c.run(ctx, "system_reset"); err == nil {
			err = c.powerOn(ctx)
		}
	}
	if err != nil {
		return StateUnknown, fmt.Errorf("power %s %s: %w", q, a, err)
	}
	st, err := c.status(ctx)
	if err != nil {
		return StateUnknown, fmt.Errorf("power %s %s: %w", q, a, err)
	}
	return qemuState(st), nil
}

// qemuState maps a QMP run state to a power state.
func qemuState(runState string) State {
	switch runState {
	case "running":
		return StateOn
	case "":
		return StateUnknown
	}
	return StateOff
}

// needsReset are the run states from which cont refuses to resume.
var needsReset = map[string]bool{"shutdown": true, "guest-panicked": true, "internal-error": true}

// powerOn resumes the VM, resetting it first if it must be.
func (c *qmpConn) powerOn(ctx context.Context) error {
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	if st == "running" {
		return nil
	}
	if needsReset[st] {
		if err := c.run(ctx, "system_reset"); err != nil {
			return err
		}
	}
	// QEMU carries out system_reset in its main loop, after the reply: wait
	// for the run state to leave the ones cont refuses.
	for needsReset[st] {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the reset (state %s): %w", st, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if st, err = c.status(ctx); err != nil {
			return err
		}
	}
	if st == "running" {
		return nil
	}
	return c.run(ctx, "cont")
}

// QMPError is an "error" reply from QEMU.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrNotRunning: nothing listens on the QMP socket (QEMU is not running).
var ErrNotRunning = errors.New("QEMU is not running")

// maxLine bounds one QMP message (query-status replies are tiny; a
// greeting lists a few capabilities).
const maxLine = 1 << 20

// qmpConn is a minimal synchronous QMP client: one command at a time,
// events skipped.
type qmpConn struct {
	conn   net.Conn
	r      *bufio.Reader
	nextID int
	stop   func() bool
}

func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() == nil {
			return nil, fmt.Errorf("qmp: %w: %w", ErrNotRunning, err)
		}
		return nil, fmt.Errorf("qmp: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c := &qmpConn{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	// Cancellation without a deadline change: unblock reads and writes.
	c.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	line, err := c.readLine()
	if err != nil {
		c.close()
		return nil, fmt.Errorf("qmp: reading the greeting: %w", c.ctxErr(ctx, err))
	}
	var greet struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := json.Unmarshal(line, &greet); err != nil || greet.QMP == nil {
		c.close()
		return nil, fmt.Errorf("qmp: not a QMP greeting: %.200q", line)
	}
	if err := c.run(ctx, "qmp_capabilities"); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *qmpConn) close() {
	c.stop()
	c.conn.Close()
}

// ctxErr reports a failure caused by the context as the context's error.
// The connection's deadline is only ever ctx's (or set when ctx is done),
// so a timeout means ctx is done or about to be: the timers may fire in
// either order.
func (c *qmpConn) ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (c *qmpConn) readLine() ([]byte, error) {
	var line []byte
	for {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, part...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("message longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// execute sends a command and returns its "return" value, skipping the
// events that may come before the reply.
func (c *qmpConn) execute(ctx context.Context, command string) (json.RawMessage, error) {
	c.nextID++
	id := fmt.Sprintf("power-%d", c.nextID)
	data, _ := json.Marshal(map[string]string{"execute": command, "id": id})
	if _, err := c.conn.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, c.ctxErr(ctx, err))
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, c.ctxErr(ctx, err))
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Event  string          `json:"event"`
			Return json.RawMessage `json:"return"`
			Error  *QMPError       `json:"error"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("qmp %s: malformed message %.200q", command, line)
		}
		if m.Event != "" {
			continue
		}
		var got string
		if json.Unmarshal(m.ID, &got) != nil || got != id {
			continue // a reply to someone else's command (we send none without id)
		}
		if m.Error != nil {
			m.Error.Command = command
			return nil, m.Error
		}
		if m.Return == nil {
			return nil, fmt.Errorf("qmp %s: reply without return or error: %.200q", command, line)
		}
		return m.Return, nil
	}
}

func (c *qmpConn) run(ctx context.Context, command string) error {
	_, err := c.execute(ctx, command)
	return err
}

func (c *qmpConn) status(ctx context.Context) (string, error) {
	raw, err := c.execute(ctx, "query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Status == "" {
		return "", fmt.Errorf("qmp query-status: unexpected reply %.200q", raw)
	}
	return st.Status, nil
}
