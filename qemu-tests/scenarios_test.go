package qemutests

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// image is the orbit-pxe image the netboot scenario builds and boots.
const image = "orbit-2.0.0"

// TestLocalBoot: a node with no boot link gets the appliance's
// pxelinux.cfg/default, whose LOCALBOOT 0 hands back to the BIOS, which
// boots the node's disk. The disk's boot sector prints a marker on the
// serial port and powers the machine off.
func TestLocalBoot(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	start := time.Now()
	node := vtestbed.NewNode(1, vtestbed.E1000)
	node.DiskMarker = "VTESTBED-DISK-BOOTED " + node.Hostname
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	vm := tb.Boot(t, node, vtestbed.BootOptions{Order: "nc"})
	marker, err := vm.Console.WaitLine(ctx, node.DiskMarker)
	if err != nil {
		t.Fatalf("the disk's boot sector did not run: %v\nserial:\n%s", err, vm.Console.Text())
	}
	t.Logf("disk boot sector ran %.1fs after power-on", vm.Since(marker.At).Seconds())
	if err := vm.WaitExit(ctx); err != nil {
		t.Errorf("QEMU did not exit cleanly after the boot sector's power-off: %v", err)
	}
	// A reset would end QEMU too (-no-reboot): the guest must have powered off.
	if ev, err := vm.QMP.WaitEvent(ctx, "SHUTDOWN"); err != nil || !strings.Contains(string(ev.Data), `"guest-shutdown"`) {
		t.Errorf("no SHUTDOWN event with reason guest-shutdown: %+v %v (events %+v)", ev, err, vm.QMP.Events())
	}

	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	found, err := vtestbed.InOrder(evs, vtestbed.LocalbootSteps()...)
	if err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	if last := found[len(found)-1]; !last.At.Before(marker.At) {
		t.Errorf("the disk booted (%s) before pxelinux read its default config (%s)", marker.At.Format("15:04:05.000"), last.At.Format("15:04:05.000"))
	}
	for _, e := range evs {
		if e.Source == "tftp" && strings.HasPrefix(e.What, "linux-") {
			t.Errorf("a node without a boot link fetched a kernel: %s", e)
		}
	}
	t.Logf("timeline:\n%s", timeline(evs))
	t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond))
}

// TestNetboot: an Experiment Controller's setBootImageNS for two nodes, one
// with an e1000 NIC and one with virtio-net, then both are powered on at
// once: each gets DHCP from netbootd, pxelinux.0, its hex-named config, the
// kernel and the initramfs, and its init prints the image name and starts
// the RC. The node's timeline (and `nbctl nodes events`) shows those steps
// in order, and the RC enrolls with the image's name.
func TestNetboot(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	start := time.Now()
	nodes := []vtestbed.Node{vtestbed.NewNode(1, vtestbed.E1000), vtestbed.NewNode(2, vtestbed.VirtioNet)}
	tb := vtestbed.New(t, vtestbed.Options{Nodes: nodes, Image: image})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	reply, err := tb.SetBootImageNS(ctx, image, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !strings.Contains(reply, "hex='"+n.Hex()+"'") && !strings.Contains(reply, `hex="`+n.Hex()+`"`) {
			t.Fatalf("setBootImageNS reply names no link %s for %s: %s", n.Hex(), n.HRN, reply)
		}
		link := filepath.Join(tb.TFTPRoot, "pxelinux.cfg", n.Hex())
		if target, err := os.Readlink(link); err != nil || target != "./"+image {
			t.Fatalf("%s: %q, %v; want a link to ./%s", link, target, err, image)
		}
	}
	for _, n := range nodes {
		t.Run(string(n.NIC), func(t *testing.T) {
			t.Parallel()
			// The parent's ctx ends when its function returns, before
			// parallel subtests run.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			netboot(ctx, t, tb, n)
		})
	}
	t.Cleanup(func() { t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond)) })
}

var (
	runInit   = regexp.MustCompile(`Run /init as init process`)
	rcStarted = regexp.MustCompile(`orbit-init: .*msg="rc: started"`)
)

func netboot(ctx context.Context, t *testing.T, tb *vtestbed.Testbed, n vtestbed.Node) {
	start := time.Now()
	// Boot's cleanup stops the machine once ctx has ended: it cannot take ctx.
	vm := tb.Boot(t, n, vtestbed.BootOptions{Order: "n"}) //nolint:contextcheck // see above

	at := func(l vtestbed.Line) string { return vm.Since(l.At).Round(10 * time.Millisecond).String() }

	initLine, err := vm.Wait(ctx, runInit)
	if err != nil {
		t.Fatalf("%v\nserial:\n%s", err, vm.Console.Text())
	}
	imgLine, err := vm.Console.WaitLine(ctx, image)
	if err != nil {
		t.Fatalf("the init did not print the image name: %v\nserial:\n%s", err, vm.Console.Text())
	}
	rcLine, err := vm.Wait(ctx, rcStarted)
	if err != nil {
		t.Fatalf("the init did not start the RC: %v\nserial:\n%s", err, vm.Console.Text())
	}
	t.Logf("after power-on: init runs %s, image name printed %s, RC started %s", at(initLine), at(imgLine), at(rcLine))

	enrolled(ctx, t, tb, vm)

	evs, err := tb.Events(ctx, n.HRN)
	if err != nil {
		t.Fatal(err)
	}
	steps := append(vtestbed.NetbootSteps(n, *tb.Image), vtestbed.EnrolledStep)
	found, err := vtestbed.InOrder(evs, steps...)
	if err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	var phases []string
	for i, e := range found {
		phases = append(phases, steps[i].Name+" "+vm.Since(e.At).Round(10*time.Millisecond).String())
	}
	t.Logf("timeline after power-on: %s", strings.Join(phases, ", "))

	// The operator's view of the same timeline.
	out, err := tb.App.NbctlContext(ctx, "nodes", "events", n.HRN)
	if err != nil {
		t.Fatalf("nbctl nodes events: %v\n%s", err, out)
	}
	pos := 0
	for _, want := range []string{"DHCPACK", "pxelinux.0", "pxelinux.cfg/" + n.Hex(), tb.Image.Kernel, tb.Image.Initrd} {
		i := strings.Index(out[pos:], want)
		if i < 0 {
			t.Fatalf("nbctl nodes events %s: no %q after offset %d:\n%s", n.HRN, want, pos, out)
		}
		pos += i + len(want)
	}
	t.Logf("node %s (%s) took %v", n.Hostname, n.NIC, time.Since(start).Round(time.Millisecond))
}

// TestProxyNetboot: a site's own DHCP server (dnsmasq on another host of
// the segment) gives the node its address, router and next-server, and
// netbootd beside it in dhcp.mode: proxy only the boot information. The
// image is built without orbit.am=, as the README's steps build it. The
// node boots pxelinux, the kernel and the initramfs from netbootd, its init
// leases its address from the site's server, and its RC finds the
// appliance by the boot server of pxelinux's ip= (IPAPPEND 3), not by the
// DHCP next-server (the site's), and enrolls.
func TestProxyNetboot(t *testing.T) {
	vtestbed.Require(t, vtestbed.NetbootdProxy)
	start := time.Now()
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Server: vtestbed.NetbootdProxy, Image: image})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}

	vm := tb.Boot(t, node, vtestbed.BootOptions{Order: "n"})
	at := func(l vtestbed.Line) string { return vm.Since(l.At).Round(10 * time.Millisecond).String() }
	site, appliance := regexp.QuoteMeta(vtestbed.SiteIP.String()), regexp.QuoteMeta(vtestbed.ServerIP.String())
	// pxelinux appended the boot server it loaded the kernel from.
	cmdline := regexp.MustCompile(`Kernel command line: .* ip=` + regexp.QuoteMeta(node.IP.String()) + `:` + appliance + `:`)
	// The init's own DHCP: the site's server answers (netbootd does not
	// answer a client that is not PXE), and is the next-server, which the
	// RC used to take for the appliance.
	lease := regexp.MustCompile(`orbit-init: .*msg="dhcp lease" if=\S+ ip=` + regexp.QuoteMeta(node.IP.String()) +
		`/16 gw=` + site + ` server=` + site + ` next_server=` + site + ` `)
	found := regexp.MustCompile(`msg="orbit-rc starting" .*am=http://` + appliance + `:5054 found_by="boot server ` + appliance + ` \(pxelinux ip= in /proc/cmdline\)"`)
	var lines []vtestbed.Line
	for _, re := range []*regexp.Regexp{cmdline, lease, found} {
		l, err := vm.Wait(ctx, re)
		if err != nil {
			t.Fatalf("%v\nserial:\n%s\nservers:\n%s", err, vm.Console.Text(), tb.ServerLog())
		}
		lines = append(lines, l)
	}
	t.Logf("after power-on: kernel command line %s, site's lease %s, RC found the appliance %s: %s",
		at(lines[0]), at(lines[1]), at(lines[2]), lines[2].Text)

	enrolled(ctx, t, tb, vm)

	// netbootd's timeline: its proxy offer, the files, the enrollment. No
	// ack: iPXE boots from the proxy's offer without asking port 4011, and
	// the leases (iPXE's, the init's) are the site's.
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	var steps []vtestbed.Step
	for _, s := range vtestbed.NetbootSteps(node, *tb.Image) {
		if s.Name != "DHCP ack" && s.Name != "init's DHCP ack" {
			steps = append(steps, s)
		}
	}
	steps = append(steps, vtestbed.EnrolledStep)
	if _, err := vtestbed.InOrder(evs, steps...); err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	for _, e := range evs {
		if e.Source == "dhcp" && !strings.Contains(e.Detail, "proxy=yes") {
			t.Errorf("netbootd answered DHCP other than as a proxy: %s", e)
		}
	}
	// The site's server gave the address: to iPXE, then to the init.
	acks := 0
	for _, l := range tb.DnsmasqLines() {
		if strings.Contains(l.Text, "DHCPACK") && strings.Contains(l.Text, node.IP.String()+" "+node.MAC) {
			acks++
		}
	}
	if acks < 2 {
		t.Errorf("the site's dnsmasq acked %s %d times, want 2 (iPXE, the init):\n%s", node.IP, acks, tb.ServerLog())
	}
	t.Logf("timeline:\n%s", timeline(evs))
	t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond))
}

// enrolled waits for the RC of vm's node to enroll with image, and logs
// how long after power-on it was seen; it fails t, with the serial
// console, if the RC does not enroll.
func enrolled(ctx context.Context, t *testing.T, tb *vtestbed.Testbed, vm *vtestbed.VM) {
	t.Helper()
	st, seen, err := tb.WaitEnrolled(ctx, vm.Node.HRN)
	if err != nil {
		t.Fatalf("%v\nserial:\n%s", err, vm.Console.Text())
	}
	if st.Image != image {
		t.Errorf("RC enrolled with image %q, want %q", st.Image, image)
	}
	t.Logf("RC enrolled (seen by polling its status) %s after power-on", vm.Since(seen).Round(10*time.Millisecond))
}

func timeline(evs []vtestbed.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}
