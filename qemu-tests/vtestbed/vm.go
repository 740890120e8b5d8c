package vtestbed

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/internal/qmp"
)

// BootOptions say how a machine starts.
type BootOptions struct {
	// Order is QEMU's -boot order: "n" (network only: with nothing to boot
	// QEMU exits after reboot-timeout, thanks to -no-reboot) or "nc"
	// (network, then the disk). Default "n".
	Order string
	// Memory in MiB, default 256.
	Memory int
	// DiskSize in bytes, default 1 MiB.
	DiskSize int64
	// Extra are more QEMU arguments, e.g. -cpu max.
	Extra []string
	// UEFI, when set, starts OVMF instead of SeaBIOS, with a variable
	// store of the machine's own.
	UEFI *UEFI
	// AMPower hands the machine to netbootd's power service (cmc, the
	// qemu driver named in the node's inventory entry): Boot starts it
	// paused and leaves it so, with its QMP socket free for netbootd
	// (QEMU serves one QMP client at a time), and a reboot or a power-off
	// by the guest no longer ends QEMU (-no-shutdown instead of
	// -no-reboot), as on a real node whose power a cmc switches.
	AMPower bool
}

// VM is a node's QEMU machine.
type VM struct {
	Node      Node
	Serial    string // the serial log (-serial file:)
	QEMULog   string // QEMU's own stdout and stderr
	Disk      string
	Console   *Console
	QMPSocket string
	QMP       *qmp.Client // nil once handed to netbootd (AMPower)
	PoweredOn time.Time   // when "cont" returned; with AMPower, when QEMU was ready for the AM
	Args      []string    // QEMU's command line

	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	exitAt   time.Time
	stopOnce sync.Once
}

// QEMUArgs returns the QEMU command line for a node: TCG, no display, the
// serial port to a file, QMP on a unix socket, paused (-S) until "cont",
// no reboot (a reboot or power-off ends QEMU; with AMPower, a power-off
// leaves QEMU stopped instead and a reboot reboots), the NIC on the
// node's tap, the raw disk on IDE.
func QEMUArgs(n Node, o BootOptions, serial, qmp, disk string) []string {
	lifecycle := "-no-reboot"
	if o.AMPower {
		lifecycle = "-no-shutdown"
	}
	return append([]string{
		"-name", n.Hostname,
		"-m", fmt.Sprint(o.Memory),
		"-display", "none", "-monitor", "none",
		lifecycle, "-S",
		"-serial", "file:" + serial,
		"-qmp", "unix:" + qmp + ",server=on,wait=off",
		"-netdev", "tap,id=n0,ifname=" + n.Tap + ",script=no,downscript=no",
		"-device", string(n.NIC) + ",netdev=n0,mac=" + n.MAC,
		"-drive", "file=" + disk + ",format=raw,if=ide,index=0,media=disk",
		"-boot", "order=" + o.Order + ",reboot-timeout=1000",
	}, o.Extra...)
}

// Boot makes the node's disk, starts its machine paused inside the
// namespace and powers it on; n is found among the testbed's nodes by HRN,
// and a machine it had before must have been stopped. t's cleanup stops
// the machine and, when t failed, keeps its serial log and QEMU's output
// as artifacts.
func (tb *Testbed) Boot(t testing.TB, n Node, o BootOptions) *VM {
	t.Helper()
	tn, ok := tb.node(n.HRN) // with its tap
	if !ok {
		t.Fatalf("vtestbed: %s is not a node of the testbed", n.HRN)
	}
	n = tn
	if o.Order == "" {
		o.Order = "n"
	}
	if o.Memory == 0 {
		o.Memory = 256
	}
	if o.DiskSize == 0 {
		o.DiskSize = 1 << 20
	}
	vm := &VM{
		Node:    n,
		Serial:  filepath.Join(tb.Dir, n.Hostname+".serial.log"),
		QEMULog: filepath.Join(tb.Dir, n.Hostname+".qemu.log"),
		Disk:    filepath.Join(tb.Dir, n.Hostname+".disk.raw"),
		exited:  make(chan struct{}),
	}
	qmpPath := tb.QMPSocket(n)
	vm.QMPSocket = qmpPath
	var sector []byte
	if n.DiskMarker != "" {
		var err error
		if sector, err = BootSector(n.DiskMarker); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteDisk(vm.Disk, o.DiskSize, sector); err != nil {
		t.Fatal(err)
	}
	os.Remove(vm.Serial)
	os.Remove(qmpPath)
	logf, err := os.Create(vm.QEMULog)
	if err != nil {
		t.Fatal(err)
	}
	if o.UEFI != nil {
		vars := filepath.Join(tb.Dir, n.Hostname+".vars.fd")
		if err := copyFile(o.UEFI.varsTemplate(), vars); err != nil {
			t.Fatal(err)
		}
		o.Extra = append(o.UEFI.args(vars), o.Extra...)
	}
	vm.Args = QEMUArgs(n, o, vm.Serial, qmpPath, vm.Disk)
	vm.cmd = tb.Netns.Command(context.Background(), "qemu-system-x86_64", vm.Args...)
	vm.cmd.Stdout, vm.cmd.Stderr = logf, logf
	// QEMU dies with us should the test binary be killed (go test -timeout).
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	waited, err := childproc.StartLocked(vm.cmd)
	if err != nil {
		logf.Close()
		t.Fatalf("qemu %s: %v", n.Hostname, err)
	}
	vm.Console = NewConsole(vm.Serial)
	vm.Console.Start()
	go func() {
		vm.exitErr = <-waited
		vm.exitAt = time.Now()
		logf.Close()
		vm.Console.Stop()
		close(vm.exited)
	}()
	tb.mu.Lock()
	tb.vms = append(tb.vms, vm)
	tb.mu.Unlock()
	t.Cleanup(func() {
		vm.Stop()
		if keepArtifacts(t) {
			vm.saveArtifacts(t, tb.Root)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { // a QEMU that exits at start ends the wait for its socket
		select {
		case <-vm.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	vm.QMP, err = qmp.DialWait(ctx, qmpPath)
	if err != nil {
		t.Fatalf("qemu %s: %v\n%s", n.Hostname, err, vm.qemuOutput())
	}
	if st, err := vm.QMP.Status(ctx); err != nil || st != "prelaunch" {
		t.Fatalf("qemu %s: status %q before power-on (want prelaunch): %v", n.Hostname, st, err)
	}
	if o.AMPower {
		vm.QMP.Close()
		vm.QMP = nil
		vm.PoweredOn = time.Now()
		return vm
	}
	if _, err := vm.QMP.Execute(ctx, "cont", nil); err != nil {
		t.Fatalf("qemu %s: power on: %v\n%s", n.Hostname, err, vm.qemuOutput())
	}
	vm.PoweredOn = time.Now()
	return vm
}

// QMPStatus is QEMU's run state (prelaunch, running, shutdown, ...) over
// a QMP connection of its own, for a machine whose QMP was handed to
// netbootd (AMPower).
func (vm *VM) QMPStatus(ctx context.Context) (string, error) {
	if vm.QMP != nil {
		return vm.QMP.Status(ctx)
	}
	q, err := qmp.Dial(ctx, vm.QMPSocket)
	if err != nil {
		return "", err
	}
	defer q.Close()
	return q.Status(ctx)
}

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Exit says when QEMU exited and its exit error; valid after Exited.
func (vm *VM) Exit() (time.Time, error) {
	select {
	case <-vm.exited:
		return vm.exitAt, vm.exitErr
	default:
		return time.Time{}, nil
	}
}

// WaitExit waits until QEMU exits by itself and returns its exit error.
func (vm *VM) WaitExit(ctx context.Context) error {
	select {
	case <-vm.exited:
		return vm.exitErr
	case <-ctx.Done():
		return fmt.Errorf("qemu %s still running: %w", vm.Node.Hostname, ctx.Err())
	}
}

// Wait waits for a serial line matching re; it fails when ctx ends or the
// machine exits without one.
func (vm *VM) Wait(ctx context.Context, re *regexp.Regexp) (Line, error) {
	return vm.Console.Wait(ctx, re)
}

// Since is how long after power-on t is.
func (vm *VM) Since(t time.Time) time.Duration { return t.Sub(vm.PoweredOn) }

// Stop ends QEMU: "quit" over QMP, SIGKILL if it is still there after 3 s.
func (vm *VM) Stop() {
	vm.stopOnce.Do(func() {
		select {
		case <-vm.exited:
		default:
			wait := time.Duration(0)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if vm.QMP == nil { // handed to netbootd, which holds it only for a call
				vm.QMP, _ = qmp.Dial(ctx, vm.QMPSocket)
			}
			if vm.QMP != nil {
				_, _ = vm.QMP.Execute(ctx, "quit", nil) // the reply may not come: QEMU is gone
				wait = 3 * time.Second
			}
			cancel()
			select {
			case <-vm.exited:
			case <-time.After(wait):
				_ = vm.cmd.Process.Kill() // fails only if QEMU has just exited
				<-vm.exited
			}
		}
		if vm.QMP != nil {
			vm.QMP.Close()
		}
	})
}

func (vm *VM) qemuOutput() string {
	b, _ := os.ReadFile(vm.QEMULog)
	return strings.TrimSpace(string(b))
}

// saveArtifacts copies the serial log and QEMU's output to the artifacts
// directory.
func (vm *VM) saveArtifacts(t testing.TB, root string) {
	dir, err := artifactsDir(t, root)
	if err != nil {
		t.Logf("artifacts: %v", err)
		return
	}
	var kept []string
	for _, f := range []string{vm.Serial, vm.QEMULog} {
		dst := filepath.Join(dir, filepath.Base(f))
		if err := copyFile(f, dst); err != nil {
			t.Logf("artifacts: %v", err)
			continue
		}
		kept = append(kept, dst)
	}
	var info bytes.Buffer
	fmt.Fprintf(&info, "qemu-system-x86_64 %s\npowered on %s\n", strings.Join(vm.Args, " "), vm.PoweredOn.Format(time.RFC3339Nano))
	if at, err := vm.Exit(); !at.IsZero() {
		fmt.Fprintf(&info, "exited %s after %v: %v\n", at.Format(time.RFC3339Nano), at.Sub(vm.PoweredOn), err)
	}
	for _, l := range vm.Console.Lines() {
		fmt.Fprintf(&info, "+%7.3fs %s\n", l.At.Sub(vm.PoweredOn).Seconds(), l.Text)
	}
	writeArtifact(t, filepath.Join(dir, vm.Node.Hostname+".timed.log"), info.Bytes())
	t.Logf("artifacts of %s: %s", vm.Node.Hostname, strings.Join(kept, " "))
}
