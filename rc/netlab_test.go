package rc_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// netLab is netbootd in a network namespace of its own and nodes in
// others, all on one bridge in the appliance's namespace, each node at
// its inventory control IP in 10.77.0.0/24: what crosses a real network
// (source addresses, multicast) is tested as it is on a grid.
type netLab struct {
	t     *testing.T
	srv   string // the appliance's namespace
	nodes []labNode
}

// labNode is one node of a netLab.
type labNode struct {
	ns, port, mac, ip, hrn, hostname string
}

// applianceIP is the lab appliance's address on the bridge.
const applianceIP = "10.77.0.1"

// newNetLab makes the namespaces, the bridge and n nodes' veths; they are
// deleted when the test ends.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	testenv.Root(t, "network namespaces, a bridge, veths")
	testenv.Programs(t, "Debian: iproute2", "ip")
	l := &netLab{t: t, srv: netnstest.Temp(t, "nbl-s-")}
	for i := range n {
		l.nodes = append(l.nodes, labNode{
			ns: netnstest.Temp(t, fmt.Sprintf("nbl-%d-", i+1)), port: fmt.Sprintf("p%d", i+1),
			mac: fmt.Sprintf("52:54:00:77:00:%02x", i+11), ip: fmt.Sprintf("10.77.0.%d", i+11),
			hrn: fmt.Sprintf("node%d.lab.orbit-lab.org", i+1), hostname: fmt.Sprintf("node%d", i+1),
		})
	}
	l.ip("-n", l.srv, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.srv, "addr", "add", applianceIP+"/24", "dev", "br0")
	for _, n := range l.nodes {
		l.ip("-n", l.srv, "link", "add", n.port, "type", "veth", "peer", "name", "eth0", "address", n.mac, "netns", n.ns)
		l.ip("-n", l.srv, "link", "set", n.port, "master", "br0")
		l.ip("-n", l.srv, "link", "set", n.port, "up")
		// Packets cut to the MTU, as a real wire carries them: multicast's
		// segmented sends would otherwise reach the nodes (and the tests'
		// drop rules) 40 datagrams at once.
		l.ip("-n", l.srv, "link", "set", "dev", n.port, "gso_max_segs", "1")
		l.ip("-n", n.ns, "addr", "add", n.ip+"/24", "dev", "eth0")
		l.ip("-n", n.ns, "link", "set", "eth0", "up")
		l.ip("-n", n.ns, "link", "set", "lo", "up")
	}
	l.ip("-n", l.srv, "link", "set", "br0", "up")
	l.ip("-n", l.srv, "link", "set", "lo", "up")
	return l
}

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	netnstest.IP(l.t, args...)
}

// inventory is the lab's nodes as a seed inventory.
func (l *netLab) inventory() string {
	var b strings.Builder
	b.WriteString("testbeds:\n  - domain: lab\n    nodes:\n")
	for _, n := range l.nodes {
		fmt.Fprintf(&b, "      - { hrn: %s, hostname: %s, control_ip: %s, control_mac: %q, disk: /dev/sda }\n", n.hrn, n.hostname, n.ip, n.mac)
	}
	return b.String()
}

// appliance starts netbootd in the lab's appliance namespace, listening
// on the bridge, with the lab's nodes and extra config YAML.
func (l *netLab) appliance(extra string) *apptest.Appliance {
	l.t.Helper()
	a := apptest.New(l.t, apptest.Options{Netns: l.srv, HTTPHost: applianceIP, Images: []string{ramImage}, Inventory: l.inventory(), Extra: extra})
	a.Start()
	return a
}

// rc runs a real orbit-rc in node n's namespace, enrolling with mac, its
// disks allowed as dir/disk*; it is killed when the test ends.
func (l *netLab) rc(a *apptest.Appliance, n labNode, mac, hostname string) (out *apptest.SyncBuffer, dir string) {
	l.t.Helper()
	dir = l.t.TempDir()
	out = &apptest.SyncBuffer{}
	cmd := exec.Command("ip", "netns", "exec", n.ns, orbitRC(l.t), "--am", a.URL, "--mac", mac, "--hostname", hostname,
		"--cmdline", "/dev/null", "--image-file", filepath.Join(dir, "none"), "--state-dir", filepath.Join(dir, "state"),
		"--disk-allow", filepath.Join(dir, "disk*"), "--poll-wait", "5s", "--max-backoff", "1s",
		"--reboot-cmd", "true", "--poweroff-cmd", "true", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill() // an error: it has exited
		_ = cmd.Wait()
	})
	return out, dir
}
