package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// The child gets Pdeathsig and outlives the goroutine that started it,
// and threads the runtime ends meanwhile (locked goroutines that exit).
func TestStartLocked(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	var done <-chan error
	started := make(chan error)
	go func() {
		var err error
		done, err = StartLocked(cmd)
		started <- err
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); <-done }()
	if cmd.SysProcAttr == nil || cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Fatalf("SysProcAttr %+v: want Pdeathsig SIGKILL", cmd.SysProcAttr)
	}
	for range 50 { // each takes its thread along when it exits locked
		ended := make(chan struct{})
		go func() { runtime.LockOSThread(); close(ended) }()
		<-ended
	}
	select {
	case err := <-done:
		t.Fatalf("the child died early: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the child is gone: %v", err)
	}
	if _, err := StartLocked(exec.Command("/nonexistent/binary")); err == nil {
		t.Error("StartLocked of a missing binary: no error")
	}
}
