package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/initramfs"
	"github.com/orbit-lab/netboot/initramfs/layout"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// waitFor waits until out holds want count times.
func waitFor(t *testing.T, out *apptest.SyncBuffer, want string, count int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Count(out.String(), want) >= count {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %q (x%d) after %v; output:\n%s", want, count, timeout, out.String())
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// children returns the PIDs of pid's children (of all its threads: a Go
// program forks from any of them).
func children(t *testing.T, pid int) []int {
	t.Helper()
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			p, _ := strconv.Atoi(s)
			pids = append(pids, p)
		}
	}
	return pids
}

// nsInit returns the host PID of the first descendant of pid that is PID 1
// of its own PID namespace, or 0.
func nsInit(pid int) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				return p
			}
		}
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, s := range strings.Fields(string(b)) {
				c, _ := strconv.Atoi(s)
				queue = append(queue, c)
			}
		}
	}
	return 0
}

// TestPID1 runs orbit-init as PID 1 of new PID, mount and UTS namespaces,
// chrooted into a directory laid out like the image, in a network namespace
// with two veth NICs (eth0, eth1); a real netbootd answers DHCP on eth1's
// peer from a second network namespace. It checks the control-interface
// choice (BOOTIF), the lease and the RC's environment, that the real orbit-rc
// enrolls with netbootd, that a killed RC is restarted, and that SIGUSR2
// powers off (in a PID namespace, reboot(2) ends its init).
func TestPID1(t *testing.T) {
	testenv.Root(t, "namespaces, veth, mounts")
	testenv.Programs(t, "Debian: util-linux, iproute2", "unshare", "ip")
	if testing.Short() {
		t.Skip("compiles the image's binaries")
	}
	// A hung bound, not a speed limit: compiling both binaries took over
	// two minutes beside another test run on a 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	bins, err := initramfs.CompileBinaries(ctx, "", filepath.Join("..", ".."), "")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "run", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string][]byte{layout.Init: bins.Init, layout.RC: bins.RC, layout.ImageName: []byte("orbit-test-1\n")} {
		if err := os.WriteFile(filepath.Join(root, p), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Network: cli holds eth0 and eth1 (the node), srv their peers.
	srv, cli := netnstest.Temp(t, "orbit-pid1-srv-"), netnstest.Temp(t, "orbit-pid1-cli-")
	run(t, "ip", "-n", srv, "link", "add", "p0", "type", "veth", "peer", "name", "eth0", "address", "52:54:00:aa:01:32", "netns", cli)
	run(t, "ip", "-n", srv, "link", "add", "p1", "type", "veth", "peer", "name", "eth1", "address", "52:54:00:aa:00:32", "netns", cli)
	run(t, "ip", "-n", srv, "addr", "add", "10.199.0.1/24", "dev", "p1")
	for _, l := range []string{"lo", "p0", "p1"} {
		run(t, "ip", "-n", srv, "link", "set", l, "up")
	}
	// The appliance: netbootd with DHCP on p1 and its AM on p1's address.
	a := apptest.New(t, apptest.Options{Netns: srv, HTTPHost: "10.199.0.1", Inventory: `testbeds:
  - domain: test
    nodes:
      - { hrn: node9-9.test.orbit-lab.org, hostname: node9-9, control_ip: 10.199.0.32, control_mac: "52:54:00:aa:00:32" }
`, Extra: apptest.DHCP{Interface: "p1", Server: netip.MustParseAddr("10.199.0.1"), Subnet: netip.MustParsePrefix("10.199.0.0/24")}.YAML()})
	a.Start()

	var out apptest.SyncBuffer
	init := exec.CommandContext(ctx, "ip", "netns", "exec", cli,
		"unshare", "--pid", "--mount", "--uts", "--fork", "--root="+root, layout.Init)
	init.Env = []string{"ORBIT_INIT_CMDLINE=console=ttyS0 BOOTIF=01-52-54-00-aa-00-32 orbit.am=" + a.URL + " orbit.linkwait=2s"}
	init.Stdout, init.Stderr = &out, &out
	init.WaitDelay = 5 * time.Second // do not hang on a pipe a leaked child holds
	if err := init.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- init.Wait() }()
	var initPID int // host PID of the init, once known
	t.Cleanup(func() {
		// Killing unshare would leave its child running: SIGKILL the
		// namespace's init, which takes every process of the namespace.
		if initPID == 0 {
			initPID = nsInit(init.Process.Pid)
		}
		// Either may be gone already: the wait below is what counts.
		if initPID > 0 {
			_ = syscall.Kill(initPID, syscall.SIGKILL)
		}
		_ = init.Process.Kill()
		err := <-exited
		if t.Failed() {
			t.Logf("init (%v) output:\n%s\nnetbootd:\n%s", err, out.String(), a.Log)
		}
	})

	waitFor(t, &out, "rc: started", 1, 3*time.Minute)
	t.Logf("dhcp: %s", grepLine(out.String(), `step=dhcp`))
	console := out.String()
	for _, want := range []string{
		"\norbit-test-1\n", // /.orbit_image on the console
		`msg="control interface" if=eth1 mac=52:54:00:aa:00:32 reason="BOOTIF=01-52-54-00-aa-00-32"`,
		`msg="dhcp lease" if=eth1 ip=10.199.0.32/24 gw=10.199.0.1 server=10.199.0.1`,
		"ORBIT_AM=" + a.URL + " ",
		"ORBIT_CONTROL_IF=eth1 ",
		"ORBIT_HOSTNAME=node9-9 ",
		"ORBIT_IP=10.199.0.32/24 ",
		"ORBIT_DOMAIN=test.orbit-lab.org ",
		"ORBIT_IMAGE=orbit-test-1 ",
		`failed=""`,
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}

	// The init's files, seen through its root.
	if initPID = nsInit(init.Process.Pid); initPID == 0 {
		t.Fatal("no process is PID 1 of a namespace under unshare")
	}
	for p, want := range map[string]string{
		layout.ImageID:  "orbit-test-1\n",
		"/etc/hostname": "node9-9\n",
	} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", initPID, p))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", initPID, layout.RCEnv)); err != nil || !strings.Contains(string(b), "ORBIT_CONTROL_IF=eth1\n") {
		t.Errorf("%s = %q, %v", layout.RCEnv, b, err)
	}

	// The real orbit-rc enrolls with the appliance, which found the node by
	// its MAC; the node's timeline shows the lease, then the enrollment.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		status, err := a.Nbctl("rc", "status", "node9-9.test.orbit-lab.org")
		if err == nil && strings.Contains(status, "orbit-test-1") && !strings.Contains(status, "not enrolled") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the RC did not enroll: %v\n%s", err, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	events, _ := a.Nbctl("nodes", "events", "node9-9.test.orbit-lab.org")
	if i, j := strings.Index(events, "DHCPACK"), strings.Index(events, "enrolled"); i < 0 || j < i {
		t.Errorf("timeline: want DHCPACK then enrolled:\n%s", events)
	}

	// A dead RC is restarted (after the 1 s back-off).
	rcs := children(t, initPID)
	if len(rcs) != 1 {
		t.Fatalf("init has children %v, want the RC", rcs)
	}
	if err := syscall.Kill(rcs[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, `msg="rc: exited" status="signal killed"`, 1, time.Minute)
	waitFor(t, &out, "rc: started", 2, time.Minute)

	// SIGUSR2: orderly power-off, which in a PID namespace ends its init.
	if err := syscall.Kill(initPID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Logf("init ended: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("init still running a minute after SIGUSR2")
	}
	exited <- nil // for the cleanup
	initPID = -1  // gone; nothing to kill
	for _, want := range []string{"shutdown: stopping processes", `msg="shutdown: poweroff"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

func grepLine(s, substr string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
