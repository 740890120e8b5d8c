package dhcpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// The integration tests build small networks out of network namespaces
// (ip netns, veth pairs, bridges), all created by the test under names
// nbt-<random>-*, with addresses only inside them, and deleted in
// t.Cleanup, also when a test fails. Host interfaces are never touched.
//
// The server under test is a real netbootd, started inside its namespace
// with `ip netns exec` from a config file an operator could have written,
// so every socket of it (DHCP, the RA responder's retries) is in that
// namespace. The peers are real programs: busybox udhcpc, ISC dhcrelay,
// dnsmasq.

// lab is one test's set of namespaces.
type lab struct {
	t      *testing.T
	prefix string
}

// newLab skips the test unless it runs as root with ip netns working
// (under CI=true it fails instead: see testenv).
func newLab(t *testing.T) *lab {
	t.Helper()
	testenv.Root(t, "network namespaces")
	testenv.Programs(t, "Debian: iproute2; make test installs it", "ip")
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, prefix: "nbt-" + hex.EncodeToString(b)}
	probe := l.prefix + "-probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		testenv.Missing(t, "ip netns unavailable: %v: %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", probe, err, out)
	}
	return l
}

// netns creates a namespace, brings its loopback up, and deletes it (after
// killing anything still running in it) when the test ends.
func (l *lab) netns(name string) string {
	l.t.Helper()
	return netnstest.Temp(l.t, l.prefix+"-"+name+"-")
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	netnstest.IP(l.t, args...)
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
	cmd   *exec.Cmd
	out   *apptest.SyncBuffer
	done  chan error
	root  string // netbootd's tftp_root (lab.server)
	state string // netbootd's state_dir (lab.server): admin.token is there
}

// start runs argv in ns; the process is killed when the test ends.
func (l *lab) start(ns string, env []string, argv ...string) *proc {
	l.t.Helper()
	p := &proc{out: &apptest.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("%s: %v", argv[0], err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	l.t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // it may have been stopped already
		err := <-p.done
		if l.t.Failed() {
			l.t.Logf("output of %s (%v):\n%s", strings.Join(argv, " "), err, p.out)
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
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("%s: SIGTERM: %v", p.cmd.Args, err)
	}
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

// server starts a real netbootd in ns, serving DHCP as cfg says, with a
// state directory of its own (or stateDir) seeded with the inventory nodes,
// and waits until its DHCP server is bound.
func (l *lab) server(ns string, cfg Config, stateDir string, nodes ...inventory.Node) *proc {
	l.t.Helper()
	if stateDir == "" {
		stateDir = l.t.TempDir()
	}
	dir := l.t.TempDir()
	seed := ""
	if len(nodes) > 0 {
		f := inventory.File{}
		byDomain := map[string]int{}
		for _, n := range nodes {
			i, ok := byDomain[n.Domain]
			if !ok {
				i = len(f.Testbeds)
				byDomain[n.Domain] = i
				f.Testbeds = append(f.Testbeds, inventory.Testbed{Domain: n.Domain})
			}
			f.Testbeds[i].Nodes = append(f.Testbeds[i].Nodes, n)
		}
		data, err := f.Marshal()
		if err != nil {
			l.t.Fatal(err)
		}
		seed = filepath.Join(dir, "inventory.yaml")
		if err := os.WriteFile(seed, data, 0o644); err != nil {
			l.t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "netbootd.yaml")
	if err := os.WriteFile(path, netbootdConfig(cfg, stateDir, dir, seed), 0o644); err != nil {
		l.t.Fatal(err)
	}
	bin := filepath.Join(apptest.Binaries(l.t), "netbootd")
	p := l.start(ns, nil, bin, "--config", path, "--log-level", "debug")
	p.waitFor(l.t, "dhcp server listening", 10*time.Second)
	p.root, p.state = dir, stateDir
	return p
}

// netbootdConfig writes cfg as netbootd's configuration file, the way an
// operator would: DHCP on, TFTP off, the AM on the namespace's loopback.
func netbootdConfig(cfg Config, stateDir, tftpRoot, seed string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %s\ntftp_root: %s\nhttp: { listen: \"127.0.0.1:5054\" }\ntftp: { listen: \"\" }\ninventory: { seed: %q }\n", stateDir, tftpRoot, seed)
	fmt.Fprintf(&b, "dhcp:\n  enabled: true\n  interface: %s\n  server_ip: %s\n  subnet: %s\n  router: %s\n", cfg.Interface, cfg.ServerIP, cfg.Subnet.Prefix, cfg.Subnet.Router)
	var dns []string
	for _, d := range cfg.DNS {
		dns = append(dns, d.String())
	}
	fmt.Fprintf(&b, "  dns: [%s]\n  domain: %s\n  lease_time: %s\n  bootfile: %s\n  bootfile_efi: %s\n", strings.Join(dns, ", "), cfg.Domain, cfg.LeaseTime, cfg.Bootfile, cfg.BootfileEFI)
	if !cfg.Subnet.Pool.IsZero() {
		fmt.Fprintf(&b, "  pool: %s\n", cfg.Subnet.Pool)
	}
	fmt.Fprintf(&b, "  ipxe_fast: %t\n", cfg.IPXEFast)
	if cfg.Mode != "" {
		fmt.Fprintf(&b, "  mode: %s\n", cfg.Mode)
	}
	if cfg.Workers > 0 {
		fmt.Fprintf(&b, "  workers: %d\n", cfg.Workers)
	}
	if len(cfg.Subnets) > 0 {
		b.WriteString("  subnets:\n")
		for _, sn := range cfg.Subnets {
			fmt.Fprintf(&b, "    - { subnet: %s, router: %s", sn.Prefix, sn.Router)
			if !sn.Pool.IsZero() {
				fmt.Fprintf(&b, ", pool: %s", sn.Pool)
			}
			b.WriteString(" }\n")
		}
	}
	return []byte(b.String())
}

// needBinary skips the test (fails it under CI=true) unless the Debian
// package's program is there.
func needBinary(t *testing.T, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		testenv.Missing(t, "%s (Debian package %s) not installed: run make test, which installs it", bin, pkg)
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

// udhcpc runs busybox udhcpc on ifname in ns until it gets a lease, for
// a minute at most, and returns what it got (nil when it got none).
func (l *lab) udhcpc(ns, ifname string, extra ...string) map[string]string {
	l.t.Helper()
	return l.runUdhcpc(ns, ifname, append([]string{"-t", "20", "-T", "3"}, extra...)...)
}

// udhcpcNone is udhcpc for a client that must get no lease: it tries
// three times a second apart. A late answer would pass unseen, so callers
// also check that the server saw the request.
func (l *lab) udhcpcNone(ns, ifname string) map[string]string {
	l.t.Helper()
	return l.runUdhcpc(ns, ifname, "-t", "3", "-T", "1")
}

func (l *lab) runUdhcpc(ns, ifname string, tries ...string) map[string]string {
	l.t.Helper()
	busybox := needBinary(l.t, "busybox", "busybox")
	script := filepath.Join(l.t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		l.t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns, busybox, "udhcpc", "-i", ifname, "-f", "-q", "-n", "-A", "1", "-s", script}, tries...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
