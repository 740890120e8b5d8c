// Package childproc starts the helper processes of tests and programs
// (netbootd, QEMU, dnsmasq) so that they die with their parent: a test
// binary killed by go test -timeout must not leave servers holding ports,
// namespaces and VMs behind.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
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
