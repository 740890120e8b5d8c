package qemutests

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// diskSize is the nodes' disk in the imaging scenarios: small, so that the
// scenarios time the flow and not TCG's disk speed.
const diskSize = 4 << 20

// imagingTestbed is a testbed whose nodes' power is the AM's: each machine
// waits, paused, for netbootd's cmc to power it on, and reboots instead of
// exiting. Every disk starts with a boot sector printing oldMarker(node).
// orders are the nodes' -boot orders, by index; the default "nc" has the
// node boot its disk once pxelinux finds no link (LOCALBOOT).
// It skips t where a testbed cannot run, and logs the scenario's time at
// the end.
func imagingTestbed(t *testing.T, nodes []vtestbed.Node, orders ...string) (*vtestbed.Testbed, []*vtestbed.VM) {
	t.Helper()
	vtestbed.Require(t, vtestbed.Netbootd)
	return newImagingTestbed(t, nodes, nil, orders)
}

// newImagingTestbed is imagingTestbed, with uefi for UEFI machines
// (disks of vtestbed.UEFIDiskSize whose EFI system partition prints
// oldMarker(node); shim and GRUB in the TFTP root).
func newImagingTestbed(t *testing.T, nodes []vtestbed.Node, uefi *vtestbed.UEFI, orders []string) (*vtestbed.Testbed, []*vtestbed.VM) {
	t.Helper()
	if uefi != nil {
		vtestbed.RequireUEFI(t)
	}
	start := time.Now()
	for i := range nodes {
		nodes[i].DiskMarker = oldMarker(nodes[i])
	}
	tb := vtestbed.New(t, vtestbed.Options{Nodes: nodes, Image: image})
	if uefi != nil {
		if err := tb.InstallUEFILoaders(); err != nil {
			t.Fatal(err)
		}
	}
	// Runs before the testbed's teardown.
	t.Cleanup(func() { t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond)) })
	var vms []*vtestbed.VM
	for i, n := range nodes {
		o := vtestbed.BootOptions{AMPower: true, DiskSize: diskSize, Order: "nc", UEFI: uefi}
		if uefi != nil {
			o.DiskSize = vtestbed.UEFIDiskSize
		}
		if i < len(orders) && orders[i] != "" {
			o.Order = orders[i]
		}
		vms = append(vms, tb.Boot(t, n, o))
	}
	return tb, vms
}

func oldMarker(n vtestbed.Node) string { return "OLD-DISK " + n.Hostname }

// markedDisk is a raw disk of diskSize whose boot sector prints marker,
// with a megabyte of random data that does not compress away.
func markedDisk(t *testing.T, marker string) []byte {
	t.Helper()
	sector, err := vtestbed.BootSector(marker)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, diskSize)
	copy(raw, sector)
	rand.Read(raw[1<<20 : 2<<20])
	return raw
}

func regexpQuote(s string) *regexp.Regexp { return regexp.MustCompile(regexp.QuoteMeta(s)) }

// nbctl runs nbctl inside the testbed's namespace, bounded by ctx.
func nbctl(ctx context.Context, t *testing.T, tb *vtestbed.Testbed, args ...string) (string, error) {
	t.Helper()
	start := time.Now()
	out, err := tb.App.NbctlContext(ctx, args...)
	t.Logf("$ nbctl %s  (%v)\n%s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond), out)
	return out, err
}

// noLinksLeft fails t if any of nodes still has a boot link.
func noLinksLeft(ctx context.Context, t *testing.T, tb *vtestbed.Testbed, when string, nodes ...vtestbed.Node) {
	t.Helper()
	out, err := nbctl(ctx, t, tb, "boot", "list")
	if err != nil {
		t.Errorf("nbctl boot list: %v", err)
	}
	for _, n := range nodes {
		if strings.Contains(out, n.HRN) {
			t.Errorf("%s's boot link left %s", n.Hostname, when)
		}
	}
}

// putDiskImage stores raw on the appliance with nbctl, from a gzip file as
// an operator has one: nbctl converts it to a chunked image.
func putDiskImage(ctx context.Context, t *testing.T, tb *vtestbed.Testbed, name string, raw []byte) {
	t.Helper()
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), name+".gz")
	if err := os.WriteFile(file, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := nbctl(ctx, t, tb, "disk", "put", name, file); err != nil {
		t.Fatalf("nbctl disk put: %v\n%s", err, out)
	}
}

// TestLoad is scenario c: `nbctl load` of a disk image onto two nodes at
// once (e1000 and virtio-net). The appliance netboots them through its
// power service, their RCs take the image's chunks from one multicast
// session (issue 16's test e) and write them, and after the reboot both
// boot the freshly written disk: its boot sector prints a marker the old
// one did not. The boot link an EC had set on one node is back at the end.
func TestLoad(t *testing.T) {
	nodes := []vtestbed.Node{vtestbed.NewNode(1, vtestbed.E1000), vtestbed.NewNode(2, vtestbed.VirtioNet)}
	tb, vms := imagingTestbed(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const newMarker = "NEW-DISK-LOADED by nbctl load"
	raw := markedDisk(t, newMarker)
	putDiskImage(ctx, t, tb, "experiment-1", raw)
	// An EC's link on the first node, which the load's own replaces: it is
	// back after the load, once the reboot has read pxelinux.cfg/default
	// and so boots the new disk.
	if reply, err := tb.SetBootImageNS(ctx, image, nodes[0]); err != nil {
		t.Fatalf("setBootImageNS: %v\n%s", err, reply)
	}

	loadStart := time.Now()
	out, err := nbctl(ctx, t, tb, "load", "--nodes", nodes[0].HRN+","+nodes[1].HRN, "--image", "experiment-1",
		"--boot-timeout", "3m", "--timeout", "4m", "--poll", "200ms")
	if err != nil {
		t.Fatalf("nbctl load: %v", err)
	}
	for _, n := range nodes {
		if !apptest.HasLine(out, n.HRN, "loaded", "/dev/sda") {
			t.Errorf("the summary has no line saying %s was loaded onto /dev/sda", n.HRN)
		}
	}
	for i, n := range nodes {
		line := bootedLoadedDisk(ctx, t, vms[i], newMarker, raw)
		t.Logf("%s (%s) booted the loaded disk %.1fs after nbctl load started", n.Hostname, n.NIC, line.At.Sub(loadStart).Seconds())
	}
	noLinksLeft(ctx, t, tb, "after the load", nodes[1])
	if !apptest.HasLine(out, nodes[0].HRN+": earlier boot link to "+image+" until ", ": restored") {
		t.Errorf("the summary does not say %s's earlier link was restored", nodes[0].HRN)
	}
	if links, err := nbctl(ctx, t, tb, "boot", "list"); err != nil || !apptest.HasLine(links, nodes[0].HRN, image) {
		t.Errorf("%s's earlier link is not back after the load: %v", nodes[0].Hostname, err)
	}
	// The whole flow, as the appliance saw it.
	for _, n := range nodes {
		evs, err := tb.Events(ctx, n.HRN)
		if err != nil {
			t.Fatal(err)
		}
		steps := loadSteps(vtestbed.NetbootSteps(n, *tb.Image), vtestbed.LocalbootSteps()...)
		found, err := vtestbed.InOrder(evs, steps...)
		if err != nil {
			t.Errorf("%s: %v\ntimeline:\n%s", n.Hostname, err, timeline(evs))
		}
		// Between the enrollment and the image loaded: the session.
		mc := vtestbed.Step{Name: "multicast session", Source: "rc", What: regexp.MustCompile(`^image multicast$`)}
		if len(found) == len(steps) {
			enrolled, loaded := slices.Index(steps, vtestbed.EnrolledStep), len(steps)-len(vtestbed.LocalbootSteps())-2
			between := evs[slices.Index(evs, found[enrolled]):slices.Index(evs, found[loaded])]
			if _, err := vtestbed.InOrder(between, mc); err != nil {
				t.Errorf("%s did not load by multicast: %v\ntimeline:\n%s", n.Hostname, err, timeline(evs))
			}
		}
	}
	sessions := map[string]bool{}
	for _, n := range nodes {
		evs, _ := tb.Events(ctx, n.HRN)
		for _, e := range evs {
			if e.What == "image multicast" {
				sessions[strings.Fields(e.Detail)[4]] = true // "IMAGE group G session N": N
			}
		}
	}
	if len(sessions) != 1 {
		t.Errorf("the two nodes' multicast groups: %v, want one session for both", sessions)
	}
}

// bootedLoadedDisk waits for vm's node to print marker from the disk
// nbctl load wrote (GRUB's colour sequences may come before it) and fails
// t if it printed its old disk's marker, or if the disk is not raw byte
// for byte. It returns the marker's line.
func bootedLoadedDisk(ctx context.Context, t *testing.T, vm *vtestbed.VM, marker string, raw []byte) vtestbed.Line {
	t.Helper()
	n := vm.Node
	line, err := vm.Wait(ctx, regexp.MustCompile(regexp.QuoteMeta(marker)+`\s*$`))
	if err != nil {
		t.Fatalf("%s did not boot the loaded disk: %v\nserial:\n%s", n.Hostname, err, vm.Console.Text())
	}
	if old, ok := vm.Console.Find(regexpQuote(oldMarker(n))); ok {
		t.Errorf("%s booted its old disk at %s", n.Hostname, old.At.Format("15:04:05.000"))
	}
	disk, err := os.ReadFile(vm.Disk)
	if err != nil || !bytes.Equal(disk, raw) {
		t.Errorf("%s: the disk is not the image byte for byte (%v)", n.Hostname, err)
	}
	return line
}

// loadSteps are the steps of nbctl load on a node's timeline: the reset,
// its netboot, the enrollment, the image loaded, the reboot, then after.
func loadSteps(netboot []vtestbed.Step, after ...vtestbed.Step) []vtestbed.Step {
	steps := []vtestbed.Step{{Name: "reset", Source: "power", What: regexp.MustCompile(`^reset$`)}}
	steps = append(steps, netboot...)
	steps = append(steps, vtestbed.EnrolledStep,
		vtestbed.Step{Name: "image loaded", Source: "rc", What: regexp.MustCompile(`^image load done$`)},
		vtestbed.Step{Name: "reboot", Source: "rc", What: regexp.MustCompile(`^reboot done$`)})
	return append(steps, after...)
}

// TestSave is scenario d: `nbctl save` of a node's disk gives an image
// that is the disk byte for byte; the node then boots its disk again.
func TestSave(t *testing.T) {
	node := vtestbed.NewNode(3, vtestbed.VirtioNet)
	tb, vms := imagingTestbed(t, []vtestbed.Node{node})
	vm := vms[0]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Content to save beyond the boot sector: written while the machine
	// is still paused, before its guest has run.
	f, err := os.OpenFile(vm.Disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	if _, err := f.WriteAt(data, 2<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want, err := os.ReadFile(vm.Disk)
	if err != nil {
		t.Fatal(err)
	}

	out, err := nbctl(ctx, t, tb, "save", "--node", node.HRN, "--image", "saved-1", "--boot-timeout", "3m", "--timeout", "3m", "--poll", "200ms")
	if err != nil {
		t.Fatalf("nbctl save: %v", err)
	}
	if !apptest.HasLine(out, node.HRN, "saved", "/dev/sda", "4.0 MiB") {
		t.Errorf("the summary has no line saying %s's /dev/sda was saved, 4.0 MiB", node.HRN)
	}
	file := filepath.Join(t.TempDir(), "saved-1.nbi")
	if out, err := nbctl(ctx, t, tb, "disk", "get", "saved-1", file); err != nil {
		t.Fatalf("nbctl disk get: %v\n%s", err, out)
	}
	if got := zstdtest.Disk(t, []byte(testenv.ReadFile(t, file))); !bytes.Equal(got, want) {
		t.Fatalf("the saved image (%d bytes) is not the disk (%d bytes) byte for byte", len(got), len(want))
	}
	// The reboot at the end boots the disk, which the save left alone.
	if _, err := vm.Console.WaitLine(ctx, oldMarker(node)); err != nil {
		t.Errorf("%s did not boot its disk after the save: %v\nserial:\n%s", node.Hostname, err, vm.Console.Text())
	}
}

// TestLoadRefused is scenario f: an image name that does not exist fails
// before any node is touched. Then a load onto two nodes, one of which
// never brings an RC up (it does not netboot: it boots its disk, which
// powers it off): that one times out with a clear message and its link
// cleared, and the other is loaded all the same. Ctrl-C clears the links
// too.
func TestLoadRefused(t *testing.T) {
	dead, good := vtestbed.NewNode(4, vtestbed.E1000), vtestbed.NewNode(5, vtestbed.VirtioNet)
	tb, vms := imagingTestbed(t, []vtestbed.Node{dead, good}, "c", "nc")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	both := dead.HRN + "," + good.HRN
	noLinks := func(when string) { t.Helper(); noLinksLeft(ctx, t, tb, when, dead, good) }

	out, err := nbctl(ctx, t, tb, "load", "--nodes", both, "--image", "no-such-image")
	if err == nil || !strings.Contains(out, `disk image "no-such-image" does not exist`) {
		t.Fatalf("nbctl load of a missing image: %v; want a failure naming the image", err)
	}
	for _, vm := range vms {
		if st, err := vm.QMPStatus(ctx); err != nil || st != "prelaunch" {
			t.Errorf("%s was touched: run state %q (%v), want prelaunch", vm.Node.Hostname, st, err)
		}
	}
	noLinks("by a refused load")

	const marker = "LOADED-DESPITE-ITS-NEIGHBOUR"
	sector, err := vtestbed.BootSector(marker)
	if err != nil {
		t.Fatal(err)
	}
	putDiskImage(ctx, t, tb, "experiment-2", sector)
	out, err = nbctl(ctx, t, tb, "load", "--nodes", both, "--image", "experiment-2", "--boot-timeout", "90s", "--attempts", "1", "--poll", "200ms")
	if err == nil || !strings.Contains(out, "load: 1 of 2 nodes failed") {
		t.Errorf("nbctl load: %v; want it to say that 1 of 2 nodes failed", err)
	}
	if !strings.Contains(out, dead.HRN+": no RC enrolled in time: none within 1m30s of the reset") || !apptest.HasLine(out, dead.HRN, "FAILED (netbooting)") {
		t.Errorf("nbctl load did not say that %s's RC never enrolled", dead.Hostname)
	}
	if !apptest.HasLine(out, good.HRN, "loaded", "/dev/sda") {
		t.Errorf("nbctl load did not load %s", good.Hostname)
	}
	if _, err := vms[1].Console.WaitLine(ctx, marker); err != nil {
		t.Errorf("%s did not boot the loaded disk: %v", good.Hostname, err)
	}
	// Powered on, the dead node booted its disk, whose boot sector powers it off.
	if _, err := vms[0].Console.WaitLine(ctx, oldMarker(dead)); err != nil {
		t.Errorf("%s was not powered on: %v", dead.Hostname, err)
	}
	noLinks("after the load")

	// Ctrl-C while the node netboots: the link goes too.
	var stdout apptest.SyncBuffer
	cmd := tb.App.NbctlCommand(ctx, "load", "--nodes", dead.HRN, "--image", "experiment-2", "--poll", "200ms")
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(stdout.String(), "netbooting") && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	if out, _ := nbctl(ctx, t, tb, "boot", "list"); !strings.Contains(out, dead.Hex()) {
		t.Errorf("no boot link while nbctl load runs")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupting nbctl load: %v", err)
	}
	err = cmd.Wait()
	t.Logf("nbctl load, interrupted: %v\n%s", err, stdout.String())
	if err == nil || !strings.Contains(stdout.String(), "interrupted while netbooting") || !strings.Contains(stdout.String(), "PXE links cleared") {
		t.Errorf("nbctl load did not say it was interrupted")
	}
	noLinks("after Ctrl-C")
}

// TestLoadWrongImage: the RC that comes up answers ENROLL with
// WRONG_IMAGE, so nbctl load resets the node again, and gives up after its
// attempts, saying why. The misconfiguration is a real one: a PXE image
// "orbit-3.0.0" whose pxelinux config boots orbit-2.0.0's initramfs.
func TestLoadWrongImage(t *testing.T) {
	node := vtestbed.NewNode(6, vtestbed.VirtioNet)
	tb, _ := imagingTestbed(t, []vtestbed.Node{node})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	cfg, err := os.ReadFile(filepath.Join(tb.TFTPRoot, tb.Image.Config))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tb.TFTPRoot, "pxelinux.cfg", "orbit-3.0.0"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, tb.AMURL+"/api/v1/images/orbit-3.0.0", strings.NewReader(`{"description": "mislabelled"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tb.App.Token)
	resp, err := tb.HTTP.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("register orbit-3.0.0: %v %v", resp, err)
	}
	resp.Body.Close()
	putDiskImage(ctx, t, tb, "experiment-3", make([]byte, 4096))

	out, err := nbctl(ctx, t, tb, "load", "--nodes", node.HRN, "--image", "experiment-3", "--pxe-image", "orbit-3.0.0",
		"--attempts", "2", "--boot-timeout", "3m", "--poll", "200ms")
	if err == nil {
		t.Fatal("nbctl load succeeded onto a node that runs the wrong image")
	}
	if !strings.Contains(out, `RC answered WRONG_IMAGE: it runs "orbit-2.0.0", not "orbit-3.0.0"`) ||
		!strings.Contains(out, "after 2 resets") || !apptest.HasLine(out, node.HRN, "FAILED (netbooting)", "  2  ") {
		t.Errorf("nbctl load did not say the node answered WRONG_IMAGE twice")
	}
	if !strings.Contains(out, "reset again") {
		t.Errorf("nbctl load did not say it reset the node again")
	}
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	reset := vtestbed.Step{Name: "reset", Source: "power", What: regexp.MustCompile(`^reset$`)}
	if _, err := vtestbed.InOrder(evs, reset, vtestbed.EnrolledStep, reset, vtestbed.EnrolledStep); err != nil {
		t.Errorf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	noLinksLeft(ctx, t, tb, "after the load", node)
}
