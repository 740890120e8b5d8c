package childproc_test

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

	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/internal/childproc/childproctest"
)

// The child gets Pdeathsig and outlives the goroutine that started it,
// and threads the runtime ends meanwhile (locked goroutines that exit).
func TestStartLocked(t *testing.T) {
	var cat *childproctest.Cat
	started := make(chan error)
	go func() {
		var err error
		cat, err = childproctest.StartCat()
		started <- err
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if sa := cat.Cmd.SysProcAttr; sa == nil || sa.Pdeathsig != syscall.SIGKILL {
		t.Fatalf("SysProcAttr %+v: want Pdeathsig SIGKILL", sa)
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
	if err := cat.Echo("alive"); err != nil {
		t.Fatalf("%v: the child died with a thread", err)
	}
	if _, err := childproc.StartLocked(exec.Command("/nonexistent/binary")); err == nil {
		t.Error("StartLocked of a missing binary: no error")
	}
}

// Stop signals a child, kills one that ignores the signal once grace is
// over, and leaves one that has exited alone. A child that ends on the
// signal gets a grace that only a hung child outlives; the others say
// "ready" once their trap is set, so the signal never comes before it.
func TestStop(t *testing.T) {
	for _, c := range []struct {
		name, script string
		exited       bool // wait for the child to exit before Stop
		grace        time.Duration
		killed       bool
		status       string // the exit error Stop passes on
	}{
		{name: "ends on SIGTERM", script: "echo ready; exec sleep 60", grace: time.Minute, status: "signal: terminated"},
		{name: "ignores SIGTERM", script: "trap '' TERM; echo ready; while :; do sleep 0.05; done", grace: 300 * time.Millisecond, killed: true, status: "signal: killed"},
		{name: "already exited", script: "exit 3", exited: true, grace: time.Minute, status: "exit status 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", c.script)
			var done <-chan error
			if c.exited {
				ch := make(chan error, 1)
				ch <- cmd.Run()
				done = ch
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				cmd.Stdout = w
				done, err = childproc.StartLocked(cmd)
				w.Close()
				if err != nil {
					t.Fatal(err)
				}
				if err := r.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
				line, err := bufio.NewReader(r).ReadString('\n')
				if line != "ready\n" {
					t.Fatalf("the child said %q, %v; want ready", line, err)
				}
			}
			err, killed := childproc.Stop(cmd.Process, syscall.SIGTERM, c.grace, done)
			if killed != c.killed || err == nil || err.Error() != c.status {
				t.Errorf("Stop: %v, killed %v; want %s, killed %v", err, killed, c.status, c.killed)
			}
		})
	}
}
