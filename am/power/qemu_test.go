package power

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/qmp"
	"github.com/orbit-lab/netboot/internal/qmp/qmptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// fakeQEMU serves QMP on a unix socket and models QEMU's run states
// closely enough for the driver: cont refuses a shut-down VM, a reset of a
// stopped VM leaves it in prelaunch, system_powerdown sends an event first.
type fakeQEMU struct {
	sock string

	mu       sync.Mutex
	state    string
	commands []string
	fail     map[string]bool // commands answered with an error
	hang     bool            // never answer qmp_capabilities
	greeting string
}

func newFakeQEMU(t *testing.T, state string) *fakeQEMU {
	t.Helper()
	f := &fakeQEMU{state: state, fail: map[string]bool{}, greeting: qmptest.DefaultGreeting}
	f.sock = (&qmptest.Server{
		Greeting: func() string {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.greeting
		},
		Handle: f.handle,
	}).Start(t)
	return f
}

func (f *fakeQEMU) handle(c *qmptest.Conn, cmd string, _ json.RawMessage) {
	f.mu.Lock()
	f.commands = append(f.commands, cmd)
	hang := f.hang
	ret, errClass, errDesc := f.apply(cmd)
	f.mu.Unlock()
	if hang {
		<-c.Done()
		return
	}
	if cmd == "system_powerdown" {
		c.Event("POWERDOWN", nil)
	}
	if errClass != "" {
		c.Error(errClass, errDesc)
		return
	}
	c.Return(ret)
}

// apply runs a command against the model; f.mu is held.
func (f *fakeQEMU) apply(cmd string) (ret any, class, desc string) {
	if f.fail[cmd] {
		return nil, "GenericError", cmd + " failed on purpose"
	}
	switch cmd {
	case "qmp_capabilities", "system_powerdown":
	case "query-status":
		return map[string]any{"status": f.state, "running": f.state == "running", "singlestep": false}, "", ""
	case "cont":
		if needsReset[f.state] {
			return nil, "GenericError", "Resetting the Virtual Machine is required"
		}
		f.state = "running"
	case "stop":
		f.state = "paused"
	case "system_reset":
		if f.state != "running" {
			f.state = "prelaunch"
		}
	default:
		return nil, "CommandNotFound", "The command " + cmd + " has not been found"
	}
	return map[string]any{}, "", ""
}

func (f *fakeQEMU) set(fn func(f *fakeQEMU)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeQEMU) runState() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeQEMU) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.commands
	f.commands = nil
	return c
}

func TestQEMUFake(t *testing.T) {
	const caps, qs = "qmp_capabilities", "query-status"
	for _, tc := range []struct {
		from string
		a    Action
		cmds []string
		want State
		end  string
	}{
		{"prelaunch", On, []string{caps, qs, "cont", qs}, StateOn, "running"},
		{"paused", On, []string{caps, qs, "cont", qs}, StateOn, "running"},
		{"running", On, []string{caps, qs, qs}, StateOn, "running"},
		{"shutdown", On, []string{caps, qs, "system_reset", qs, "cont", qs}, StateOn, "running"},
		{"running", OffHard, []string{caps, "stop", "system_reset", qs}, StateOff, "prelaunch"},
		{"running", OffSoft, []string{caps, "system_powerdown", qs}, StateOn, "running"},
		{"running", Reset, []string{caps, "system_reset", qs, qs}, StateOn, "running"},
		{"paused", Reset, []string{caps, "system_reset", qs, "cont", qs}, StateOn, "running"},
		{"shutdown", Reboot, []string{caps, "system_reset", qs, "cont", qs}, StateOn, "running"},
		{"running", Status, []string{caps, qs}, StateOn, "running"},
		{"paused", Status, []string{caps, qs}, StateOff, "paused"},
		{"shutdown", Status, []string{caps, qs}, StateOff, "shutdown"},
		{"prelaunch", Status, []string{caps, qs}, StateOff, "prelaunch"},
	} {
		f := newFakeQEMU(t, tc.from)
		d, err := Parse("qemu:" + f.sock)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := d.Do(ctx, tc.a)
		cancel()
		if err != nil || got != tc.want {
			t.Errorf("%s from %s: got %q, %v; want %q", tc.a, tc.from, got, err, tc.want)
		}
		if cmds := f.take(); !reflect.DeepEqual(cmds, tc.cmds) {
			t.Errorf("%s from %s: QMP commands %q, want %q", tc.a, tc.from, cmds, tc.cmds)
		}
		if st := f.runState(); st != tc.end {
			t.Errorf("%s from %s: VM left %s, want %s", tc.a, tc.from, st, tc.end)
		}
	}
}

// doOrHang runs d.Do and fails the test if it has not returned within a
// minute, long after any deadline it was given.
func doOrHang(t *testing.T, d Driver, ctx context.Context, a Action) (State, error) {
	t.Helper()
	type result struct {
		st  State
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := d.Do(ctx, a)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-time.After(time.Minute):
		t.Fatalf("%v %s: Do hangs after its context ended", d, a)
		return StateUnknown, nil
	}
}

// TestQEMUNotRunning checks what an unreachable QMP socket is called: the
// path, and for a missing one under /tmp the hint that netbootd's private
// /tmp (PrivateTmp=yes in its unit) may hide it.
func TestQEMUNotRunning(t *testing.T) {
	// A socket file that nothing listens on: the listener goes, its file stays.
	stale := filepath.Join(t.TempDir(), "stale.qmp")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	live := newFakeQEMU(t, "running").sock
	absentTmp := fmt.Sprintf("/tmp/netboot-power-test-%d-absent/node1.qmp", os.Getpid())
	absentVarTmp := fmt.Sprintf("/var/tmp/netboot-power-test-%d-absent/node1.qmp", os.Getpid())
	absentRun := fmt.Sprintf("/run/netboot-power-test-%d-absent/node1.qmp", os.Getpid())
	const hint = "PrivateTmp=yes"
	tests := []struct {
		name   string
		socket string
		want   []string // in the error; none: no error
		not    []string
	}{
		{"missing under /tmp", absentTmp, []string{"QEMU is not running", "no QMP socket at " + absentTmp, hint, "qemu:/run/qemu/node1.qmp", "no such file or directory"}, nil},
		{"missing under /var/tmp", absentVarTmp, []string{"no QMP socket at " + absentVarTmp, hint}, nil},
		{"missing under /run", absentRun, []string{"QEMU is not running", "no QMP socket at " + absentRun}, []string{hint}},
		{"nothing listening", stale, []string{"QEMU is not running", "nothing listens on the QMP socket " + stale, "connection refused"}, []string{hint}},
		{"running", live, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := (&QEMU{Socket: tt.socket}).Do(context.Background(), Status)
			if len(tt.want) == 0 {
				if err != nil || st != StateOn {
					t.Fatalf("status = %s, %v; want on", st, err)
				}
				return
			}
			if !errors.Is(err, ErrNotRunning) {
				t.Fatalf("err = %v, want ErrNotRunning", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error has %q: %v", n, err)
				}
			}
		})
	}
}

func TestQEMUErrors(t *testing.T) {
	ctx := context.Background()

	f := newFakeQEMU(t, "paused")
	f.set(func(f *fakeQEMU) { f.fail["cont"] = true })
	st, err := (&QEMU{Socket: f.sock}).Do(ctx, On)
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Command != "cont" || st != StateUnknown {
		t.Errorf("failing cont: got %q, %v; want a QMPError for cont", st, err)
	}

	f = newFakeQEMU(t, "running")
	f.set(func(f *fakeQEMU) { f.greeting = `{"hello": "world"}` })
	if _, err := (&QEMU{Socket: f.sock}).Do(ctx, Status); err == nil {
		t.Error("bad greeting accepted")
	}

	if _, err := (&QEMU{Socket: f.sock}).Do(ctx, Action("explode")); !errors.Is(err, ErrBadAction) {
		t.Errorf("bad action: err = %v", err)
	}

	f = newFakeQEMU(t, "running")
	f.set(func(f *fakeQEMU) { f.hang = true })
	ctx2, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	// The fake stays silent until the test ends: only the deadline ends Do.
	if _, err := doOrHang(t, &QEMU{Socket: f.sock}, ctx2, Status); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent QEMU: err = %v, want DeadlineExceeded", err)
	}

	// Cancellation without a deadline unblocks too.
	f = newFakeQEMU(t, "running")
	f.set(func(f *fakeQEMU) { f.hang = true })
	ctx3, cancel3 := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel3)
	if _, err := doOrHang(t, &QEMU{Socket: f.sock}, ctx3, Status); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: err = %v, want Canceled", err)
	}
}

// TestQEMUReal drives a real QEMU with no machine, no devices and no
// network, unprivileged, over QMP.
func TestQEMUReal(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testenv.Missing(t, "qemu-system-x86_64 not installed (make test installs it)")
	}
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "qmp.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-machine", "none", "-S", "-display", "none", "-nodefaults",
		"-no-shutdown", "-qmp", "unix:"+sock+",server=on,wait=off")
	out := &capped{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		testenv.Missing(t, "cannot start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// How QEMU ends (the test's quit, or the kill) only goes to the
		// log: the test is over.
		select {
		case err := <-exited:
			t.Logf("qemu exited: %v", err)
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill() // it may have exited meanwhile
			t.Logf("qemu killed: %v", <-exited)
		}
	}()
	// QEMU makes the socket file before it listens on it: wait for a
	// handshake, not for the file (the driver's first call would be refused).
	ready := make(chan error, 1)
	go func() {
		q, err := qmp.DialWait(ctx, sock)
		if err == nil {
			q.Close()
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("no QMP on %s: %v: %s", sock, err, out)
		}
	case err := <-exited:
		exited <- err
		t.Fatalf("qemu exited: %v: %s", err, out)
	}
	d, err := Parse("qemu:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		a    Action
		want State
	}{
		{Status, StateOff}, // -S: prelaunch
		{On, StateOn},
		{Status, StateOn},
		{OffHard, StateOff},
		{Status, StateOff},
		{On, StateOn},
		{Reset, StateOn},
		{Reboot, StateOn},
		{OffSoft, StateOn}, // no ACPI on -machine none: the request is accepted and ignored
		{OffHard, StateOff},
		{Reset, StateOn},
	} {
		got, err := d.Do(ctx, step.a)
		if err != nil || got != step.want {
			t.Fatalf("%s: got %q, %v; want %q", step.a, got, err, step.want)
		}
	}
	c, err := dialQMP(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	_ = run(ctx, c, "quit") // QEMU may close before it answers
	_ = c.Close()           // and then the connection is gone already
}
