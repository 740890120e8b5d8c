package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestKillUnderLoad: netbootd is killed (SIGKILL) 20 times at random
// moments while nbctl sets and clears boot links and busybox udhcpc leases
// addresses from it in another namespace. After each kill its database
// passes SQLite's integrity check, and once it is started again the boot
// links in cfg_dir are exactly the ones its database holds; the load goes
// on being served after every restart.
func TestKillUnderLoad(t *testing.T) {
	testenv.Root(t, "network namespaces")
	testenv.Programs(t, "make test installs them", "ip", "busybox")
	srv, cli := vethLab(t, "nbk", "00:03:1d:0c:01:01")

	const nodes = 6
	inv := "testbeds:\n  - domain: sb8\n    nodes:\n"
	for i := 1; i <= nodes; i++ {
		inv += fmt.Sprintf("      - { hrn: node1-%d.sb8.orbit-lab.org, hostname: node1-%d, control_ip: 10.18.1.%d, control_mac: \"00:03:1d:0c:01:%02x\" }\n", i, i, i, i)
	}
	a := apptest.New(t, apptest.Options{Netns: srv, Images: []string{"orbit-2.0.0", "orbit-exp"}, Inventory: inv,
		Extra: apptest.DHCP{Interface: "nbs0", Server: netip.MustParseAddr("10.18.0.1"), Subnet: netip.MustParsePrefix("10.18.0.0/16")}.YAML()})
	a.Start()

	ctx, stop := context.WithCancel(t.Context())
	var (
		wg sync.WaitGroup
		// The load holds it shared for each call; a check holds it alone,
		// so that no link changes while cfg_dir is compared.
		pause         sync.RWMutex
		calls, leases atomic.Int64
	)
	defer func() { stop(); wg.Wait() }()
	for w := range 3 { // API: set and clear links, list the nodes
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 15))
			for ctx.Err() == nil {
				node := fmt.Sprintf("node1-%d.sb8.orbit-lab.org", 1+r.IntN(nodes))
				args := [][]string{
					{"boot", "set", "--image", "orbit-exp", "--lifetime", "1h", node},
					{"boot", "set", "--image", "orbit-2.0.0", "--lifetime", "1h", node, "node1-1.sb8.orbit-lab.org"},
					{"boot", "clear", node},
					{"nodes"},
				}[r.IntN(4)]
				pause.RLock()
				if _, err := a.NbctlContext(ctx, args...); err == nil {
					calls.Add(1)
				}
				pause.RUnlock()
			}
		}()
	}
	for range 2 { // DHCP: one DORA after the other, from the client namespace
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				out, err := exec.CommandContext(ctx, "ip", "netns", "exec", cli, "busybox", "udhcpc", "-i", "nbc0", "-f", "-q", "-n", "-t", "2", "-T", "1", "-s", "/bin/true").CombinedOutput()
				if err == nil && strings.Contains(string(out), "10.18.1.1") {
					leases.Add(1)
				}
			}
		}()
	}

	stateDir := filepath.Join(a.Dir, "state")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 20))
	for kill := 1; kill <= 20; kill++ {
		// Between 0.2 and 1.5 s of load: calls in flight, leases being
		// written, a link half made.
		c0, l0 := calls.Load(), leases.Load()
		time.Sleep(200*time.Millisecond + time.Duration(r.Int64N(int64(1300*time.Millisecond))))
		a.Kill()

		pause.Lock()
		st, err := store.Open(ctx, stateDir)
		if err != nil {
			pause.Unlock()
			t.Fatalf("kill %d: opening the database: %v", kill, err)
		}
		ierr := st.IntegrityCheck(ctx)
		if err := st.Close(); err != nil {
			t.Errorf("kill %d: closing the database: %v", kill, err)
		}
		if ierr != nil {
			pause.Unlock()
			t.Fatalf("kill %d: %v", kill, ierr)
		}
		a.Start()
		links := bootLinks(t, a)
		onDisk := linksOnDisk(t, a.CfgDir)
		pause.Unlock()
		if diff := cmp.Diff(links, onDisk); diff != "" {
			t.Fatalf("kill %d: cfg_dir and the database disagree after the restart (-database +cfg_dir):\n%s", kill, diff)
		}
		t.Logf("kill %d: integrity ok, %d links agree; %d API calls and %d leases served since the last", kill, len(links), calls.Load()-c0, leases.Load()-l0)
	}
	// Served after the last restart too.
	c0, l0 := calls.Load(), leases.Load()
	for deadline := time.Now().Add(60 * time.Second); calls.Load() == c0 || leases.Load() == l0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the last restart: %d API calls, %d leases in 60 s\n%s", calls.Load()-c0, leases.Load()-l0, a.Log)
		}
	}
}

// bootLinks is nbctl boot list: hex name -> image.
func bootLinks(t *testing.T, a *apptest.Appliance) map[string]string {
	t.Helper()
	out, err := a.Nbctl("boot", "list", "--json")
	if err != nil {
		t.Fatalf("nbctl boot list: %v\n%s", err, out)
	}
	var links []apiv1.BootLink
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("nbctl boot list --json: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, l := range links {
		m[l.Hex] = l.Image
	}
	return m
}

// linksOnDisk is cfg_dir's links: hex name -> image.
func linksOnDisk(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			m[e.Name()] = strings.TrimPrefix(target, "./")
		}
	}
	return m
}
