package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// The rig's network, inside its namespaces only: one bridge in a switch
// namespace; the appliance and every node each in a namespace of its own,
// linked to the bridge by a veth whose two ends are shaped (tc tbf) to
// the link rate, as a node's or an appliance's 1 Gb/s port is.
const (
	subnet      = "10.216.0.0/16"
	applianceIP = "10.216.0.1"
	domain      = "img"
	ramImage    = "orbit-2.0.0" // the RAM image the RCs say they run
	imageName   = "bench"       // the disk image's name on the appliance
	// iface is every namespace's link to the bridge; its tx_bytes in the
	// appliance's namespace is what the appliance sent.
	iface = "eth0"
)

// node is a simulated node: a namespace, a real orbit-rc in it, and a disk
// file.
type node struct {
	i    int
	hrn  string
	ip   string
	mac  string
	ns   *vtestbed.Netns
	dir  string
	disk string
	rc   *proc
}

func newNode(i int, dir string) *node {
	return &node{i: i, hrn: fmt.Sprintf("node%d.%s.orbit-lab.org", i, domain), ip: fmt.Sprintf("10.216.1.%d", i),
		mac: fmt.Sprintf("52:54:00:d8:01:%02x", i), dir: filepath.Join(dir, fmt.Sprintf("node%d", i)),
		disk: filepath.Join(dir, fmt.Sprintf("node%d", i), "disk0")}
}

// storedImage is a disk image as the appliance stores it.
type storedImage struct {
	name string // on the appliance
	path string // its file in the appliance's image directory
	size int64
}

// rig is the appliance, the nodes and their network. It is built with a
// testing.TB (vtestbed.Program) so that apptest can run netbootd: Fatal
// ends the run, cleanups take everything down.
type rig struct {
	t     testing.TB
	o     options
	sw    *vtestbed.Netns
	app   *vtestbed.Netns
	a     *apptest.Appliance
	am    *amclient.Client // the admin's, connecting inside the appliance's namespace
	nodes []*node
	// images by format: "zstd" (the one stream nbctl disk put stores
	// today); the chunked format joins here.
	images map[string]storedImage
	rawSum []byte // the disk's SHA-256 once loaded
	dir    string
}

// proc is a process the rig started, stopped by its own handle.
type proc struct {
	cmd  *exec.Cmd
	done <-chan error
	out  *apptest.SyncBuffer
}

// start runs cmd so that it dies with this program (childproc).
func start(cmd *exec.Cmd) (*proc, error) {
	p := &proc{cmd: cmd, out: &apptest.SyncBuffer{Max: 64 << 10}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	done, err := childproc.StartLocked(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	p.done = done
	return p, nil
}

// stop ends the process (SIGTERM, then SIGKILL after 5s).
func (p *proc) stop() {
	_, _ = childproc.Stop(p.cmd.Process, os.Interrupt, 5*time.Second, p.done)
}

// netns makes a namespace that a cleanup deletes, after the processes
// started in it (cleanups run last first).
func (r *rig) netns(prefix string) *vtestbed.Netns {
	r.t.Helper()
	ns, err := vtestbed.NewNetns(prefix)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			r.t.Error(err)
		}
	})
	return ns
}

func (r *rig) ip(ns *vtestbed.Netns, args ...string) {
	r.t.Helper()
	if err := ns.IP(args...); err != nil {
		r.t.Fatal(err)
	}
}

// shape caps dev's egress at the link rate: tbf, whose bucket holds a few
// milliseconds at that rate. UDP leaves dev cut to the MTU, as a real wire
// carries it: a segmented send (UDP GSO) of 40 datagrams crossing the
// bridge whole would cost the rig's shared CPUs (the bridge's flood,
// every node's IP layer) a 40th of what the nodes of a real network see,
// each on its own CPU. TCP's segments pass whole, as real NICs' TSO and
// GRO make them.
func (r *rig) shape(ctx context.Context, ns *vtestbed.Netns, dev string) {
	r.t.Helper()
	for _, args := range [][]string{
		{"tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", r.o.rate, "burst", "512kb", "latency", "20ms"},
		{"ethtool", "-K", dev, "tx-udp-segmentation", "off"},
	} {
		if out, err := ns.Command(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			r.t.Fatalf("%s in %s on %s: %v: %s", args[0], ns.Name, dev, err, out)
		}
	}
}

// attach links namespace ns to the bridge by a veth: port in the switch,
// iface (with mac, addr) in ns, both ends shaped, multicast routed out of
// iface.
func (r *rig) attach(ctx context.Context, ns *vtestbed.Netns, port, mac, addr string) {
	r.t.Helper()
	r.ip(r.sw, "link", "add", port, "type", "veth", "peer", "name", iface, "address", mac, "netns", ns.Name)
	r.ip(r.sw, "link", "set", port, "master", "br0")
	r.ip(r.sw, "link", "set", port, "up")
	r.ip(ns, "addr", "add", addr+"/16", "dev", iface)
	r.ip(ns, "link", "set", iface, "up")
	r.ip(ns, "route", "add", "224.0.0.0/4", "dev", iface)
	r.shape(ctx, r.sw, port)
	r.shape(ctx, ns, iface)
}

// newRig builds the network, the appliance holding the image (made from
// raw by build, which writes the stored image into the appliance's image
// directory) and maxNodes nodes whose RCs have enrolled.
func newRig(ctx context.Context, t testing.TB, o options, dir string, maxNodes int) *rig {
	r := &rig{t: t, o: o, dir: dir, images: map[string]storedImage{}}
	r.sw = r.netns("nbimg-sw")
	r.ip(r.sw, "link", "add", "br0", "type", "bridge")
	// Multicast floods the bridge: the rig depends on no IGMP snooping
	// (and no querier), as the issue asks of the sender.
	r.ip(r.sw, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	r.ip(r.sw, "link", "set", "br0", "up")
	r.app = r.netns("nbimg-app")
	r.attach(ctx, r.app, "pa", "52:54:00:d8:00:01", applianceIP)

	inv := "testbeds:\n  - domain: " + domain + "\n    nodes:\n"
	for i := 1; i <= maxNodes; i++ {
		n := newNode(i, dir)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n.ns = r.netns(fmt.Sprintf("nbimg-n%d", i))
		r.attach(ctx, n.ns, fmt.Sprintf("p%d", i), n.mac, n.ip)
		inv += fmt.Sprintf("      - { hrn: %s, hostname: node%d, control_ip: %s, control_mac: %q }\n", n.hrn, i, n.ip, n.mac)
		r.nodes = append(r.nodes, n)
	}
	// Multicast sessions send from the appliance's link, at the rate
	// udp-sender gets.
	r.a = apptest.New(t, apptest.Options{Netns: r.app.Name, HTTPHost: applianceIP, Images: []string{ramImage}, Inventory: inv,
		Args:  []string{"--log-level", "warn"},
		Extra: fmt.Sprintf("imaging: { source: %s, rate: %sbit }\n", applianceIP, o.udpRate)})
	return r
}

// imageDir is where netbootd keeps disk images (state_dir/images).
func (r *rig) imageDir() string { return filepath.Join(r.a.Dir, "state", "images") }

// startAppliance runs netbootd, lets it checksum the stored images (a
// sidecar it writes once, outside any measured load) and starts every
// node's RC.
func (r *rig) startAppliance(ctx context.Context) {
	r.t.Helper()
	r.a.Start()
	r.am = amclient.New(r.a.URL).WithToken(r.a.Token).WithTransport(r.app.HTTPClient().Transport)
	imgs, err := r.am.DiskImages(ctx)
	if err != nil || len(imgs) != len(r.images) {
		r.t.Fatalf("the appliance's disk images: %+v, %v; want %d", imgs, err, len(r.images))
	}
	bin := filepath.Join(r.a.Bin, "orbit-rc")
	for _, n := range r.nodes {
		cmd := n.ns.Command(ctx, bin, "--am", r.a.URL, "--mac", n.mac, "--hostname", fmt.Sprintf("node%d", n.i),
			"--cmdline", "/dev/null", "--image-file", filepath.Join(n.dir, "none"), "--state-dir", filepath.Join(n.dir, "state"),
			"--disk-allow", filepath.Join(n.dir, "disk*"), "--max-backoff", "1s",
			"--reboot-cmd", "true", "--poweroff-cmd", "true", "--log-level", "warn")
		p, err := start(cmd)
		if err != nil {
			r.t.Fatal(err)
		}
		n.rc = p
		r.t.Cleanup(p.stop)
	}
	for _, n := range r.nodes {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if s, err := r.am.RCStatus(ctx, n.hrn); err == nil && s.Enrolled {
				break
			}
			if time.Now().After(deadline) {
				r.t.Fatalf("%s's RC did not enroll within 60s:\n%s\n--- netbootd:\n%s", n.hrn, n.rc.out, r.a.Log)
			}
		}
	}
}

// sent is how many bytes the appliance's link has sent so far.
func (r *rig) sent(ctx context.Context) (int64, error) {
	// ip netns exec mounts the namespace's own /sys.
	out, err := r.app.Command(ctx, "cat", "/sys/class/net/"+iface+"/statistics/tx_bytes").Output()
	if err != nil {
		return 0, fmt.Errorf("appliance tx_bytes: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

// freshDisks makes nodes' disks new: sparse files of the disk's size,
// reading zeros, as a disk no image has been loaded onto.
func (r *rig) freshDisks(nodes []*node) error {
	for _, n := range nodes {
		// Truncating to 0 first drops the blocks the last load wrote.
		if err := os.Truncate(n.disk, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		f, err := os.OpenFile(n.disk, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		err = f.Truncate(r.o.size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("disk %s: %w", n.disk, err)
		}
	}
	return nil
}
