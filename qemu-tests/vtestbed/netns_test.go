package vtestbed

import (
	"context"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
)

// TestNetnsDial: a connection made with Dial is inside the namespace (the
// host's loopback listener is not reachable from there, the namespace's
// is), threads come back to the host's namespace, and a child started
// with Pdeathsig by startLocked outlives many dials (they once ended the
// thread that had started QEMU, which killed it).
func TestNetnsDial(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip")
	}
	home, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := NewNetns("vtbt")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()

	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done, err := childproc.StartLocked(child)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); <-done }()

	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := ns.Dial(ctx, "tcp", hostLn.Addr().String()); err == nil {
		c.Close()
		t.Fatal("Dial reached the host's loopback from inside the namespace")
	}

	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ns.Dial(ctx, "tcp", "127.0.0.1:1")
			if err == nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-done:
		t.Fatalf("the Pdeathsig child died while dialing: %v", err)
	default:
	}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if got, _ := os.Readlink("/proc/thread-self/ns/net"); got != home {
				t.Errorf("a thread is in %s after dialing, want %s", got, home)
			}
		}()
	}
	wg.Wait()
}
