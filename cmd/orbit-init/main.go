// Command orbit-init is PID 1 of the orbit-pxe RAM image (/init in the
// initramfs built by package initramfs).
//
// It runs the step table of package initramfs/orbitinit (mounts, kernel
// modules, links, control interface, DHCP, host name, the RC's
// environment), then starts /bin/orbit-rc with that environment and restarts
// it with back-off (1 s doubling to 30 s; back to 1 s after a run of 60 s)
// whenever it exits. The debug shell's sshd, when the image has it and a key
// is given (see orbitinit.ParseSSHKeyArg), is started by its step, before
// DHCP, and restarted in the same way. It reaps every orphan and never
// exits: a failed step is logged and the boot goes on.
//
// Reboot and power-off, for the RC or an operator (busybox init's signals):
//
//	kill -TERM 1   reboot          (also SIGINT: Ctrl-Alt-Del)
//	kill -USR2 1   power off
//	kill -USR1 1   halt
//
// The init then stops the RC and every other process (SIGTERM, 5 s, SIGKILL),
// syncs, unmounts what it can, syncs and calls reboot(2).
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/initramfs/layout"
	"github.com/orbit-lab/netboot/initramfs/orbitinit"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "orbit-init: must run as PID 1 (the kernel's init, or in a PID namespace)")
		os.Exit(2)
	}
	out := os.Stderr // the kernel opened /dev/console as 0, 1 and 2
	logger := newLogger(out)
	log.SetFlags(0) // u-root's packages log through the global logger
	log.SetOutput(&prefixWriter{prefix: "orbit-init: dhclient: ", w: out})

	p := &pid1{
		log:      logger,
		children: map[int]chan unix.WaitStatus{},
		shutdown: make(chan int, 1),
	}
	// With Ctrl-Alt-Del off, the kernel sends SIGINT to PID 1 instead of
	// rebooting at once.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGHUP)

	node := &orbitinit.Node{
		Log:     logger,
		Console: func(line string) { fmt.Fprintln(out, line) },
		Start: func(s orbitinit.Service) {
			go p.guard(s.Name, func() { p.supervise(s) })
		},
	}
	go p.guard("boot", func() { p.boot(node) })

	for sig := range sigs {
		switch sig {
		case unix.SIGCHLD:
			p.reap()
		case unix.SIGTERM, unix.SIGINT:
			p.requestShutdown(unix.LINUX_REBOOT_CMD_RESTART)
		case unix.SIGUSR1:
			p.requestShutdown(unix.LINUX_REBOOT_CMD_HALT)
		case unix.SIGUSR2:
			p.requestShutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
		default:
			logger.Info("signal ignored", "signal", sig)
		}
	}
}

// pid1 is the init's process state: its children and the shutdown request.
type pid1 struct {
	log *slog.Logger

	mu       sync.Mutex
	children map[int]chan unix.WaitStatus // supervised children, by PID
	stopping bool                         // no more (re)starts

	shutdown     chan int // the reboot(2) command, once
	shutdownOnce sync.Once
}

// guard runs f and, should it panic, logs the panic instead of letting it
// end PID 1 (which would panic the kernel).
func (p *pid1) guard(name string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic; going on reaping", "in", name, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// boot runs the step table, then supervises the RC.
func (p *pid1) boot(node *orbitinit.Node) {
	start := time.Now()
	failed := orbitinit.Run(context.Background(), p.log, node.Steps())
	p.log.Info("boot steps done", "took", time.Since(start).Round(time.Millisecond), "failed", strings.Join(failed, ", "))
	env := node.RCEnv()
	p.log.Info("rc environment", "env", strings.Join(env, " "))
	p.supervise(orbitinit.Service{Name: "rc", Path: layout.RC, Env: env})
}

// supervise starts a service and restarts it when it exits, with back-off,
// until a shutdown starts.
func (p *pid1) supervise(s orbitinit.Service) {
	const (
		minBackoff = time.Second
		maxBackoff = 30 * time.Second
		stableRun  = 60 * time.Second
	)
	backoff := minBackoff
	for {
		started := time.Now()
		done, err := p.start(s)
		if err != nil {
			p.log.Error(s.Name+": start failed", "path", s.Path, "err", err, "retry_in", backoff)
		} else {
			ws := <-done
			ran := time.Since(started)
			if ran >= stableRun {
				backoff = minBackoff
			}
			p.log.Warn(s.Name+": exited", "status", describe(ws), "ran", ran.Round(time.Millisecond), "restart_in", backoff)
		}
		if p.isStopping() {
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, maxBackoff)
		if p.isStopping() {
			return
		}
	}
}

func (p *pid1) isStopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// start starts a supervised child in its own session, with the console as
// its output; the returned channel gets its wait status when it is reaped.
// The lock is held across Start so that reap cannot reap the child before it
// is registered.
func (p *pid1) start(s orbitinit.Service) (<-chan unix.WaitStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil, fmt.Errorf("%s: shutting down", s.Path)
	}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = s.Env
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	done := make(chan unix.WaitStatus, 1)
	p.children[pid] = done
	p.log.Info(s.Name+": started", "path", s.Path, "pid", pid)
	_ = cmd.Process.Release() // reap waits for it, not os/exec
	return done, nil
}

// reap waits for every child that has exited: supervised ones are reported
// to their supervisor, orphans are logged.
func (p *pid1) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if done, ok := p.children[pid]; ok {
			delete(p.children, pid)
			done <- ws
			continue
		}
		p.log.Debug("reaped orphan", "pid", pid, "status", describe(ws))
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit %d", ws.ExitStatus())
	case ws.Signaled():
		return "signal " + ws.Signal().String()
	}
	return fmt.Sprintf("%#x", uint32(ws))
}

var cmdNames = map[int]string{
	unix.LINUX_REBOOT_CMD_RESTART:   "reboot",
	unix.LINUX_REBOOT_CMD_HALT:      "halt",
	unix.LINUX_REBOOT_CMD_POWER_OFF: "poweroff",
}

// requestShutdown starts an orderly shutdown once; later requests are
// ignored. It returns at once: the signal loop must go on reaping.
func (p *pid1) requestShutdown(cmd int) {
	p.shutdownOnce.Do(func() {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		go p.guard("shutdown", func() { p.doShutdown(cmd) })
	})
}

func (p *pid1) doShutdown(cmd int) {
	name := cmdNames[cmd]
	p.log.Info("shutdown: stopping processes", "then", name)
	// Every process but us (kill(-1) skips the caller): the RC first gets
	// the chance to clean up, with everyone else.
	_ = unix.Kill(-1, unix.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && othersAlive() {
		time.Sleep(100 * time.Millisecond)
	}
	if othersAlive() {
		p.log.Warn("shutdown: killing what is left")
		_ = unix.Kill(-1, unix.SIGKILL)
		time.Sleep(200 * time.Millisecond)
	}
	unix.Sync()
	unmountAll(p.log)
	unix.Sync()
	orbitinit.LinksDown(p.log)
	p.log.Info("shutdown: " + name)
	if err := unix.Reboot(cmd); err != nil {
		p.log.Error("shutdown: reboot(2) failed; going on reaping", "cmd", name, "err", err)
	}
}

// othersAlive reports whether any process other than PID 1 is left (kernel
// threads excluded: they have no command line).
func othersAlive() bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if name == "1" || name[0] < '0' || name[0] > '9' {
			continue
		}
		if b, err := os.ReadFile("/proc/" + name + "/cmdline"); err == nil && len(b) > 0 {
			return true
		}
	}
	return false
}

// unmountAll unmounts, last mounted first, what /proc/mounts lists except
// the root and the kernel's own file systems, so that disks the RC mounted
// are clean before the reboot.
func unmountAll(log *slog.Logger) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 3 {
			continue
		}
		target, fstype := f[1], f[2]
		switch fstype {
		case "rootfs", "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup", "cgroup2":
			continue
		}
		if target == "/" {
			continue
		}
		if err := unix.Unmount(target, 0); err != nil {
			log.Warn("shutdown: unmount failed, detaching", "target", target, "err", err)
			_ = unix.Unmount(target, unix.MNT_DETACH)
		}
	}
}

// newLogger logs to the console as "orbit-init: up=12.345 level=INFO msg=...":
// the time since the kernel started (CLOCK_BOOTTIME), not the wall clock,
// which is 1970 or wrong before anything sets it.
func newLogger(w io.Writer) *slog.Logger {
	h := slog.NewTextHandler(&prefixWriter{prefix: "orbit-init: ", w: w}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				var ts unix.Timespec
				if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err == nil {
					return slog.String("up", fmt.Sprintf("%d.%03d", ts.Sec, ts.Nsec/1e6))
				}
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(h)
}

// prefixWriter writes each line with a prefix (slog and log write whole
// lines).
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if _, err := io.WriteString(pw.w, pw.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
