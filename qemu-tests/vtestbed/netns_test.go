package vtestbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc/childproctest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// testNetns makes a namespace that t's cleanup deletes.
func testNetns(t *testing.T, prefix string) *Netns {
	t.Helper()
	ns, err := NewNetns(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// TestNetnsDial: a connection made with Dial is inside the namespace (the
// host's loopback listener is not reachable from there, the namespace's
// is), threads come back to the host's namespace, and a child started
// with Pdeathsig by childproc.StartLocked outlives many dials (they once ended the
// thread that had started QEMU, which killed it).
func TestNetnsDial(t *testing.T) {
	testenv.Root(t, "network namespace")
	testenv.Programs(t, "Debian: iproute2, coreutils", "ip", "cat")
	home, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns := testNetns(t, "vtbt")

	// The child must outlive the dials' threads.
	cat, err := childproctest.StartCat()
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	alive := func(when string) {
		t.Helper()
		if err := cat.Echo(when); err != nil {
			t.Fatalf("the Pdeathsig child did not echo a line %s: %v", when, err)
		}
	}
	alive("before dialing")

	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	// A thread Dial failed to bring home ends after its goroutine, later
	// than wg.Wait returns; its end is what would kill the child. Wait
	// until every thread of this process is back home (an ending thread
	// is not, and leaves the list only after its Pdeathsig was sent).
	settled := time.Now().Add(30 * time.Second)
	for {
		away, err := threadsAway(home)
		if err != nil {
			t.Fatal(err)
		}
		if len(away) == 0 {
			break
		}
		if time.Now().After(settled) {
			t.Fatalf("threads %v still outside %s after the dials", away, home)
		}
		time.Sleep(10 * time.Millisecond)
	}
	alive("after dialing")
	if exited, err := cat.Exited(); exited {
		t.Fatalf("the Pdeathsig child died while dialing: %v", err)
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

// threadsAway lists this process's threads that are not in network
// namespace home, or whose namespace cannot be read (a thread that is
// ending has none).
func threadsAway(home string) ([]string, error) {
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil || len(tasks) == 0 {
		return nil, fmt.Errorf("listing /proc/self/task: %w", err)
	}
	var away []string
	for _, task := range tasks {
		got, err := os.Readlink(task + "/ns/net")
		if err != nil && os.IsNotExist(err) {
			if _, serr := os.Stat(task); os.IsNotExist(serr) {
				continue // gone since the listing
			}
		}
		if err != nil || got != home {
			away = append(away, filepath.Base(task)+"="+got)
		}
	}
	return away, nil
}
