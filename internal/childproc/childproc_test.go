package childproc

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The child gets Pdeathsig and outlives the goroutine that started it,
// and threads the runtime ends meanwhile (locked goroutines that exit).
func TestStartLocked(t *testing.T) {
	cmd := exec.Command("cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
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
	// Each goroutine takes its thread along when it exits locked; one of
	// them may be the thread that forked the child, were it not kept.
	var tids []int
	for range 50 {
		tid := make(chan int)
		go func() { runtime.LockOSThread(); tid <- syscall.Gettid() }()
		// The main thread is wedged, not ended (runtime.mexit): it stays.
		if id := <-tid; id != os.Getpid() {
			tids = append(tids, id)
		}
	}
	// A thread's Pdeathsig is sent before its task leaves /proc: once all
	// are gone, a doomed child has its SIGKILL and can answer nothing.
	deadline := time.Now().Add(time.Minute) // hung, not slow
	for _, tid := range tids {
		for {
			_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("thread %d still there after its goroutine exited locked", tid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := stdin.Write([]byte("alive\n")); err != nil {
		t.Fatalf("writing to the child: %v", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "alive\n" {
		t.Fatalf("the child answered %q, %v: it died with a thread", line, err)
	}
	if _, err := StartLocked(exec.Command("/nonexistent/binary")); err == nil {
		t.Error("StartLocked of a missing binary: no error")
	}
}
