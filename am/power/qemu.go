package power

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/internal/qmp"
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
	defer c.Close()
	switch a {
	case On:
		err = powerOn(ctx, c)
	case OffHard:
		if err = run(ctx, c, "stop"); err == nil {
			err = run(ctx, c, "system_reset")
		}
	case OffSoft:
		err = run(ctx, c, "system_powerdown")
	case Reset, Reboot:
		if err = run(ctx, c, "system_reset"); err == nil {
			err = powerOn(ctx, c)
		}
	}
	if err != nil {
		return StateUnknown, fmt.Errorf("power %s %s: %w", q, a, err)
	}
	st, err := c.Status(ctx)
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
func powerOn(ctx context.Context, c *qmp.Client) error {
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if st == "running" {
		return nil
	}
	if needsReset[st] {
		if err := run(ctx, c, "system_reset"); err != nil {
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
		if st, err = c.Status(ctx); err != nil {
			return err
		}
	}
	if st == "running" {
		return nil
	}
	return run(ctx, c, "cont")
}

// ErrNotRunning marks a QMP socket nothing listens on: QEMU is not running.
var ErrNotRunning = errors.New("QEMU is not running")

func dialQMP(ctx context.Context, path string) (*qmp.Client, error) {
	c, err := qmp.Dial(ctx, path)
	var op *net.OpError
	if err != nil && ctx.Err() == nil && errors.As(err, &op) && op.Op == "dial" {
		return nil, notRunning(path, err)
	}
	return c, err
}

// notRunning says why the QMP socket at path could not be reached. A
// missing socket under /tmp is most often one that netbootd cannot see:
// its systemd unit gives it a /tmp of its own (PrivateTmp=yes), so the
// error says so and where to put the socket instead.
func notRunning(path string, err error) error {
	var why string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		why = "no QMP socket at " + path
		if p := filepath.Clean(path); strings.HasPrefix(p, "/tmp/") || strings.HasPrefix(p, "/var/tmp/") {
			why += "; under netbootd's systemd unit (PrivateTmp=yes) /tmp and /var/tmp are private to netbootd " +
				"and hide the host's: put the socket under /run, e.g. qemu:/run/qemu/" + filepath.Base(p)
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "nothing listens on the QMP socket " + path
	default:
		why = "cannot connect to the QMP socket " + path
	}
	return fmt.Errorf("%w (%s): %w", ErrNotRunning, why, err)
}

// run sends a command whose reply carries nothing we need.
func run(ctx context.Context, c *qmp.Client, command string) error {
	_, err := c.Execute(ctx, command, nil)
	return err
}
