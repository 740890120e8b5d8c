package dhcpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// The integration tests build small networks out of network namespaces
// (ip netns, veth pairs, bridges), all created by the test under names
// nbt-<random>-*, with addresses only inside them, and deleted in
// t.Cleanup, also when a test fails. Host interfaces are never touched.
//
// The server under test runs in a helper process started inside its
// namespace with `ip netns exec`: this test binary again, told by
// helperEnv to run helperMain instead of the tests. That keeps every
// socket of the server (DHCP, the RA responder's retries) in its namespace
// whatever OS thread runs it. The peers are real programs: busybox
// udhcpc, ISC dhcrelay, dnsmasq.

const helperEnv = "NBT_DHCPD_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helperMain(path))
	}
	os.Exit(m.Run())
}

// helperConfig is what the helper process runs.
type helperConfig struct {
	Config   Config
	StateDir string
	Nodes    []inventory.Node
}

// helperMain runs a server with a real store until SIGTERM. It logs to
// stderr; "dhcp server listening" there means it is bound.
func helperMain(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var hc helperConfig
	if err := json.Unmarshal(data, &hc); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st, err := store.Open(ctx, hc.StateDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	defer st.Close()
	if n, _ := st.NodeCount(ctx); n == 0 && len(hc.Nodes) > 0 {
		if err := st.Import(ctx, importFile(hc.Nodes...)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(hc.Config, st, st, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	if err := s.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "helper stats: %+v\n", s.Stats())
	return 0
}

// lab is one test's set of namespaces.
type lab struct {
	t      *testing.T
	prefix string
}

// newLab skips the test unless it runs as root with ip netns working.
func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) for network namespaces")
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, prefix: "nbt-" + hex.EncodeToString(b)}
	probe := l.prefix + "-probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable: %v: %s", err, bytes.TrimSpace(out))
	}
	exec.Command("ip", "netns", "del", probe).Run()
	return l
}

// netns creates a namespace, brings its loopback up, and deletes it (after
// killing anything still running in it) when the test ends.
func (l *lab) netns(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.ip("netns", "add", ns)
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				fmt.Sscan(f, &pid)
				// Not this process: a thread of it may have entered ns
				// (inNetns), and Go keeps the main thread if it was that one.
				if pid > 1 && pid != os.Getpid() {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	l.ip("-n", ns, "link", "set", "lo", "up")
	return ns
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// veth links nsA/ifA to nsB/ifB and brings both ends up.
func (l *lab) veth(nsA, ifA, nsB, ifB string) {
	l.t.Helper()
	l.ip("-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	l.ip("-n", nsA, "link", "set", ifA, "up")
	l.ip("-n", nsB, "link", "set", ifB, "up")
}

// addr puts an address on an interface.
func (l *lab) addr(ns, ifname, cidr string) {
	l.t.Helper()
	l.ip("-n", ns, "addr", "add", cidr, "dev", ifname)
}

// proc is a program running in a namespace, its output collected.
type proc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs argv in ns; the process is killed when the test ends.
func (l *lab) start(ns string, env []string, argv ...string) *proc {
	l.t.Helper()
	p := &proc{out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("%s: %v", argv[0], err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	l.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if l.t.Failed() {
			l.t.Logf("output of %s:\n%s", strings.Join(argv, " "), p.out)
		}
	})
	return p
}

// waitFor waits until the output contains s.
func (p *proc) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), s) {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.cmd.Args, err, s, p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not print %q within %v:\n%s", p.cmd.Args, s, timeout, p.out)
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s: %v\n%s", p.cmd.Args, err, p.out)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not stop within 10s of SIGTERM", p.cmd.Args)
	}
}

// server starts the DHCP server in ns with cfg, a state directory of its
// own (or stateDir) and the inventory nodes, and waits until it is bound.
func (l *lab) server(ns string, cfg Config, stateDir string, nodes ...inventory.Node) *proc {
	l.t.Helper()
	if stateDir == "" {
		stateDir = l.t.TempDir()
	}
	data, err := json.Marshal(helperConfig{Config: cfg, StateDir: stateDir, Nodes: nodes})
	if err != nil {
		l.t.Fatal(err)
	}
	path := filepath.Join(l.t.TempDir(), "helper.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		l.t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	p := l.start(ns, []string{helperEnv + "=" + path}, self)
	p.waitFor(l.t, "dhcp server listening", 10*time.Second)
	return p
}

// needBinary skips the test unless the Debian package's program is there.
func needBinary(t *testing.T, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s (Debian package %s) not installed: run make test, which installs it", bin, pkg)
	}
	return path
}

// udhcpcScript prints what udhcpc got, one key=value a line, when bound.
const udhcpcScript = `#!/bin/sh
[ "$1" = bound ] || exit 0
for k in ip subnet router dns serverid siaddr boot_file bootfile tftp hostname domain lease; do
	eval "v=\${$k}"
	echo "LEASE $k=$v"
done
`

// udhcpc runs busybox udhcpc on ifname in ns once and returns what it got
// (nil when it got no lease).
func (l *lab) udhcpc(ns, ifname string, extra ...string) map[string]string {
	l.t.Helper()
	busybox := needBinary(l.t, "busybox", "busybox")
	script := filepath.Join(l.t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		l.t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns, busybox, "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", "3", "-T", "1", "-A", "1", "-s", script}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "LEASE "); ok {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
	}
	if err != nil || len(got) == 0 {
		l.t.Logf("udhcpc on %s: %v\n%s", ifname, err, out)
		return nil
	}
	return got
}

// inNetns runs fn on an OS thread that has entered ns. Sockets fn creates
// belong to ns and may be used from anywhere afterwards. The thread is
// never unlocked, so Go discards it when fn returns and no other goroutine
// ever runs in ns.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
