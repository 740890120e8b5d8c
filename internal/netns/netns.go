// Package netns runs code inside a named network namespace (ip netns add
// NAME), for tests and benchmarks that build networks of their own.
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered namespace name: a socket
// made in fn stays in that namespace. The thread then goes back to the
// namespace it came from; should that fail it stays locked and ends with
// its goroutine, so no other goroutine ever runs in the namespace. (A
// thread that ends kills children started from it with Pdeathsig: start
// long-lived processes elsewhere.)
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", name, err)
			return
		}
		defer unix.Close(home)
		target, err := unix.Open("/var/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", name, err)
			return
		}
		err = unix.Setns(target, unix.CLONE_NEWNET)
		unix.Close(target)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		err = fn()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Delete kills every process in namespace name (SIGKILL) and deletes it
// (ip netns del). This process is spared: a thread of it may have entered
// the namespace (Do), and Go keeps the main thread if it was that one.
func Delete(name string) error {
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err == nil && pid > 1 && pid != os.Getpid() {
				// An error means the process has exited meanwhile.
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, out)
	}
	return nil
}
