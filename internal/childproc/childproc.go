// Package childproc starts the helper processes of tests and programs
// (netbootd, QEMU, dnsmasq) so that they die with their parent: a test
// binary killed by go test -timeout must not leave servers holding ports,
// namespaces and VMs behind.
package childproc

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// StartLocked starts cmd with Pdeathsig SIGKILL (unless cmd already sets a
// SysProcAttr of its own), from a goroutine locked to its OS thread until
// cmd has exited: Pdeathsig fires when the thread that started the child
// ends, and the Go runtime ends threads (a goroutine that exits locked
// takes its thread along), which must not kill the child early
// (go.dev/issue/27505). done gets cmd.Wait's error.
func StartLocked(cmd *exec.Cmd) (done <-chan error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// Stop ends a child politely: it sends sig, gives the child grace to exit,
// then kills it. done must yield once the child has exited and been waited
// for (StartLocked's channel, or one the caller closes after cmd.Wait);
// Stop returns what it yielded, and killed says the child outlived grace.
// A child that has already exited is not signalled.
func Stop[T any](p *os.Process, sig os.Signal, grace time.Duration, done <-chan T) (v T, killed bool) {
	select {
	case v = <-done:
		return v, false
	default:
	}
	// An error means the child has just exited: done is about to say so.
	_ = p.Signal(sig)
	select {
	case v = <-done:
		return v, false
	case <-time.After(grace):
	}
	_ = p.Kill() // as above
	return <-done, true
}
