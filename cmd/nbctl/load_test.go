package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/qmp/qmptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc"
)

// nbctl runs nbctl in process against the appliance at url, as main does:
// what it printed on stdout and on stderr, and its error. In process, so
// that a test sees the nbctl of this tree, not a shared binary. Every
// command here ends well within 90 s: reaching that means it hung.
func nbctl(ctx context.Context, a *apptest.Appliance, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out, errs bytes.Buffer
	err = run(ctx, append([]string{"--server", a.URL, "--token-file", a.TokenFile}, args...), &out, &errs)
	return out.String(), errs.String(), err
}

// vnode is a node for nbctl load and save without a VM: its power driver
// is a QMP socket whose system_reset boots it, that is, starts a fresh
// in-process RC that enrolls anew, as a netbooted node's would. Its disks
// are files, dir/disk*.
type vnode struct {
	t    *testing.T
	hrn  string
	mac  string
	ip   string
	sock string
	dir  string
	// noBoot: a reset brings no RC up (a node stuck in its boot ROM).
	noBoot bool
	// hangReboot: its RC takes REBOOT and never answers it.
	hangReboot bool
	// tftp, if set, is the appliance's TFTP server: a boot first reads
	// the node's PXE configuration there, as pxelinux does, from the
	// node's control IP (a loopback address), and only a link to a RAM
	// image starts an RC; without one the node boots its disk.
	tftp string
	// hold, if set, holds the boot after a REBOOT until it is closed.
	hold chan struct{}

	amURL string
	kick  chan struct{} // a reset or a reboot: the running RC ends, a new one starts
	mu    sync.Mutex
	log   []string // system_reset, rc-reboot, in order
}

func newVnode(t *testing.T, i int) *vnode {
	t.Helper()
	n := &vnode{t: t, hrn: fmt.Sprintf("node1-%d.vtb", i), mac: fmt.Sprintf("00:03:1d:0c:01:%02x", i),
		ip: fmt.Sprintf("127.0.1.%d", i), dir: t.TempDir(), kick: make(chan struct{}, 1)}
	for _, d := range []string{"disk0", "disk1"} {
		n.writeDisk(d, nil)
	}
	n.sock = (&qmptest.Server{Handle: n.handleQMP}).Start(t)
	return n
}

// inventoryDisk is every vnode's disk in the inventory, which takes only
// /dev paths: its RC may not touch it (nor could it: it does not exist), so
// each load and save names a disk file with --disk.
const inventoryDisk = "/dev/vtb-no-such-disk"

// inventory is the node's inventory entry.
// newVnodes makes nodes 1..count and the inventory that lists them, in
// domain vtb.
func newVnodes(t *testing.T, count int) ([]*vnode, string) {
	var nodes []*vnode
	inv := "testbeds:\n  - domain: vtb\n    nodes:\n"
	for i := 1; i <= count; i++ {
		n := newVnode(t, i)
		nodes = append(nodes, n)
		inv += n.inventory()
	}
	return nodes, inv
}

func (n *vnode) inventory() string {
	return fmt.Sprintf("      - { hrn: %s, hostname: %s, control_ip: %s, control_mac: %q, disk: %s, pxe_image: orbit-2.0.0, power: \"qemu:%s\" }\n",
		n.hrn, strings.Split(n.hrn, ".")[0], n.ip, n.mac, inventoryDisk, n.sock)
}

// run powers the node until the test ends: each kick ends the RC running
// and starts another.
func (n *vnode) run(amURL string) {
	n.amURL = amURL
	quit, done := make(chan struct{}), make(chan struct{})
	n.t.Cleanup(func() { close(quit); <-done })
	go func() {
		defer close(done)
		stop := func() {}
		defer func() { stop() }()
		for {
			select {
			case <-quit:
				return
			case <-n.kick:
				stop()
				stop = n.boot()
			}
		}
	}()
}

// boot starts an RC and returns what ends it.
func (n *vnode) boot() (stop func()) {
	if steps := n.steps(); n.hold != nil && len(steps) > 0 && steps[len(steps)-1] == "rc-reboot" {
		<-n.hold
	}
	if n.noBoot || (n.tftp != "" && !n.pxe()) {
		return func() {}
	}
	cfg := rc.Config{AM: n.amURL, MACs: []string{n.mac}, Hostname: strings.Split(n.hrn, ".")[0], ImageName: "orbit-2.0.0",
		ImageFile: filepath.Join(n.dir, "none"), DiskAllow: []string{filepath.Join(n.dir, "disk*")}, PollWait: 2 * time.Second,
		HTTP: apptest.ClientFrom(n.ip), // an RC enrolls only from its node's address
		// An appliance restarted under a test is back within a second or two.
		MaxBackoff: 2 * time.Second,
		Reboot: func(context.Context) error {
			n.note("rc-reboot")
			n.power()
			return nil
		},
	}
	return testenv.Serve(n.t, "rc.Run", 30*time.Second, func(ctx context.Context) error {
		if n.hangReboot {
			cfg.PowerCheck = func() error { <-ctx.Done(); return ctx.Err() }
		}
		return rc.Run(ctx, cfg)
	}).Stop
}

// power asks for a new boot; one pending is enough.
func (n *vnode) power() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *vnode) note(what string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, what)
}

// steps is what was done to the node's power, in order.
func (n *vnode) steps() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.log...)
}

// handleQMP answers QMP as a running QEMU does, for what netbootd's qemu
// power driver asks: a reset powers the node (a new RC enrolls).
func (n *vnode) handleQMP(c *qmptest.Conn, cmd string, _ json.RawMessage) {
	switch cmd {
	case "qmp_capabilities", "cont":
		c.Return(nil)
	case "query-status":
		c.Return(map[string]any{"status": "running", "running": true})
	case "system_reset":
		n.note("system_reset")
		n.power()
		c.Return(nil)
	default:
		c.Error("CommandNotFound", cmd)
	}
}

func (n *vnode) writeDisk(name string, data []byte) {
	n.t.Helper()
	testenv.WriteFile(n.t, filepath.Join(n.dir, name), data)
}

func (n *vnode) readDisk(name string) []byte {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, name))
	if err != nil {
		n.t.Fatal(err)
	}
	return b
}

// wantCommands checks the commands the appliance holds for the node, as
// "TYPE" or "TYPE disk", oldest first.
func (n *vnode) wantCommands(ctx context.Context, t *testing.T, c *amclient.Client, want ...string) {
	t.Helper()
	cmds, err := c.NodeCommands(ctx, n.hrn, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(cmds) - 1; i >= 0; i-- {
		s := cmds[i].Type
		if cmds[i].Disk != "" {
			s += " " + strings.TrimPrefix(cmds[i].Disk, n.dir+"/")
		}
		got = append(got, s)
	}
	if !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
}

// nbctlOK runs nbctl and fails the test if it fails; it returns the
// standard output.
func nbctlOK(ctx context.Context, t *testing.T, a *apptest.Appliance, args ...string) string {
	t.Helper()
	out, errs, err := nbctl(ctx, a, args...)
	if err != nil {
		t.Fatalf("nbctl %s: %v\n%s%s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

// diskData is distinct content for each name, a few blocks long.
func diskData(name string) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%-16s", name)), 64<<10/16)
}

// storedImage is the disk a stored image holds (one zstd stream or a
// chunked image, checked whole).
func storedImage(ctx context.Context, t *testing.T, a *apptest.Appliance, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := amclient.New(a.URL).WithToken(a.Token).GetDiskImage(ctx, name, &buf); err != nil {
		t.Fatalf("disk get %s: %v", name, err)
	}
	return zstdtest.Disk(t, buf.Bytes())
}

// TestLoadSaveFlags: nbctl load and save against netbootd, with nodes
// whose reset starts an RC, for what each flag of theirs promises.
func TestLoadSaveFlags(t *testing.T) {
	nodes, inv := newVnodes(t, 6)
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Inventory: inv})
	a.Start()
	nodes[3].noBoot = true
	nodes[4].hangReboot = true
	for _, n := range nodes {
		n.run(a.URL)
	}
	c := amclient.New(a.URL).WithToken(a.Token)
	ctx := t.Context()
	for _, img := range []string{"base", "old"} {
		f := filepath.Join(t.TempDir(), img+".zst")
		testenv.WriteFile(t, f, zstdtest.Compress(t, diskData(img)))
		nbctlOK(ctx, t, a, "disk", "put", "--as-is", img, f)
	}
	fast := []string{"--poll", "50ms"}

	t.Run("load --disk writes the disk named, not the inventory's", func(t *testing.T) {
		n := nodes[0]
		out := nbctlOK(ctx, t, a, append([]string{"load", "--nodes", n.hrn, "--image", "base", "--disk", filepath.Join(n.dir, "disk1")}, fast...)...)
		if !bytes.Equal(n.readDisk("disk1"), diskData("base")) {
			t.Errorf("disk1 does not hold the image")
		}
		if got := n.readDisk("disk0"); len(got) != 0 {
			t.Errorf("disk0 was written: %d bytes", len(got))
		}
		if !strings.Contains(out, filepath.Join(n.dir, "disk1")) || !strings.Contains(out, "loaded") {
			t.Errorf("summary does not say disk1 was loaded:\n%s", out)
		}
		n.wantCommands(ctx, t, c, "ENROLL", "LOAD_IMAGE disk1", "REBOOT")
	})

	t.Run("load --nodes takes a host name, in the testbed --domain names", func(t *testing.T) {
		n := nodes[5]
		out := nbctlOK(ctx, t, a, append([]string{"load", "--domain", "vtb", "--nodes", "node1-6", "--image", "base", "--disk", filepath.Join(n.dir, "disk0")}, fast...)...)
		if !bytes.Equal(n.readDisk("disk0"), diskData("base")) {
			t.Errorf("disk0 does not hold the image")
		}
		if !apptest.HasLine(out, n.hrn, "loaded") {
			t.Errorf("summary does not say %s was loaded:\n%s", n.hrn, out)
		}
		n.wantCommands(ctx, t, c, "ENROLL", "LOAD_IMAGE disk0", "REBOOT")
	})

	t.Run("save --disk stores the disk named, not the inventory's", func(t *testing.T) {
		n := nodes[1]
		n.writeDisk("disk0", diskData("disk0"))
		n.writeDisk("disk1", diskData("disk1"))
		nbctlOK(ctx, t, a, append([]string{"save", "--node", n.hrn, "--image", "from-disk1", "--disk", filepath.Join(n.dir, "disk1")}, fast...)...)
		if !bytes.Equal(storedImage(ctx, t, a, "from-disk1"), diskData("disk1")) {
			t.Errorf("image from-disk1 is not disk1")
		}
		n.wantCommands(ctx, t, c, "ENROLL", "SAVE_IMAGE disk1", "REBOOT")
	})

	t.Run("save onto a stored image without --replace is refused, nothing done", func(t *testing.T) {
		n := nodes[2]
		n.writeDisk("disk0", diskData("disk0"))
		out, errs, err := nbctl(ctx, a, append([]string{"save", "--node", n.hrn, "--image", "old"}, fast...)...)
		if err == nil || !strings.Contains(err.Error(), `disk image "old" exists already (--replace overwrites it)`) {
			t.Errorf("save: %v; want a refusal naming --replace\n%s%s", err, out, errs)
		}
		if got := n.steps(); len(got) != 0 {
			t.Errorf("the node was touched: %q", got)
		}
		if !bytes.Equal(storedImage(ctx, t, a, "old"), diskData("old")) {
			t.Errorf("image old changed")
		}
	})

	t.Run("save --replace overwrites a stored image", func(t *testing.T) {
		n := nodes[2]
		nbctlOK(ctx, t, a, append([]string{"save", "--node", n.hrn, "--image", "old", "--replace", "--disk", filepath.Join(n.dir, "disk0")}, fast...)...)
		if !bytes.Equal(storedImage(ctx, t, a, "old"), diskData("disk0")) {
			t.Errorf("image old is not the node's disk0")
		}
	})

	t.Run("--timeout ends a load whose node never comes up, naming it", func(t *testing.T) {
		n := nodes[3] // noBoot
		// Only --timeout can end this before nbctl's 90 s.
		out, errs, err := nbctl(ctx, a, append([]string{"load", "--nodes", n.hrn, "--image", "base", "--timeout", "5s", "--boot-timeout", "1h"}, fast...)...)
		if err == nil || err.Error() != "load: 1 of 1 nodes failed" {
			t.Errorf("load: %v, want the node failed\n%s%s", err, out, errs)
		}
		if want := n.hrn + ": the job's 5s ran out while netbooting"; !strings.Contains(out, want) {
			t.Errorf("summary does not say %q:\n%s%s", want, out, errs)
		}
		if links, err := c.Boot(ctx); err != nil || len(links) != 0 {
			t.Errorf("links left: %+v %v", links, err)
		}
		if got := n.steps(); !slices.Equal(got, []string{"system_reset"}) {
			t.Errorf("power steps %q: want one reset", got)
		}
	})

	t.Run("--no-reboot sends no REBOOT and resets nothing, with an RC that would not answer it", func(t *testing.T) {
		n := nodes[4] // hangReboot
		nbctlOK(ctx, t, a, append([]string{"load", "--nodes", n.hrn, "--image", "base", "--no-reboot", "--disk", filepath.Join(n.dir, "disk0")}, fast...)...)
		if !bytes.Equal(n.readDisk("disk0"), diskData("base")) {
			t.Errorf("disk0 does not hold the image")
		}
		n.wantCommands(ctx, t, c, "ENROLL", "LOAD_IMAGE disk0")
		if got := n.steps(); !slices.Equal(got, []string{"system_reset"}) {
			t.Errorf("power steps %q: want the netboot's reset only", got)
		}
	})

}
