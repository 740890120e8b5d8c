package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/dhcpd"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// TestUEFISecureBootNetboot: a UEFI node with Secure Boot enforced (OVMF
// with Microsoft's keys, virtio-net without an option ROM so that the
// firmware's own PXE runs) boots shim, Debian's signed network GRUB, the
// node's grub/grub.cfg-<HEX> link, Debian's signed kernel and our
// initramfs; its RC enrolls and reports firmware uefi with Secure Boot on,
// read from the SecureBoot variable through efivarfs.
func TestUEFISecureBootNetboot(t *testing.T) {
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := uefiTestbed(t, node, vtestbed.Options{Image: image})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // TCG on a loaded machine: minutes
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{UEFI: &vtestbed.UEFI{SecureBoot: true}})
	enrolledSecure(ctx, t, tb, vm)
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	steps := append(vtestbed.UEFIShimSteps(node, *tb.Image), vtestbed.EnrolledStep)
	if _, err := vtestbed.InOrder(evs, steps...); err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	if last := evs[len(evs)-1]; last.What != "enrolled" || !regexp.MustCompile(` firmware=uefi secure_boot=on$`).MatchString(last.Detail) {
		t.Errorf("enrolled event %q; want it to say firmware=uefi secure_boot=on", last.Detail)
	}
	t.Logf("timeline:\n%s", timeline(evs))
}

// uefiTestbed is a testbed of o with node alone, a UEFI machine, and
// Debian's signed shim and network GRUB in the TFTP root, installed as an
// operator does. It skips t where a UEFI testbed cannot run.
func uefiTestbed(t *testing.T, node vtestbed.Node, o vtestbed.Options) *vtestbed.Testbed {
	t.Helper()
	vtestbed.Require(t, vtestbed.Netbootd)
	vtestbed.RequireUEFI(t)
	o.Nodes = []vtestbed.Node{node}
	tb := vtestbed.New(t, o)
	if err := tb.InstallUEFILoaders(); err != nil {
		t.Fatal(err)
	}
	return tb
}

// enrolledSecure waits for the kernel to say Secure Boot is on and for the
// RC to enroll reporting firmware uefi with Secure Boot on.
func enrolledSecure(ctx context.Context, t *testing.T, tb *vtestbed.Testbed, vm *vtestbed.VM) {
	t.Helper()
	if _, err := vm.Wait(ctx, regexp.MustCompile(`Secure boot enabled`)); err != nil {
		t.Fatalf("the kernel did not say Secure Boot is on: %v\nserial:\n%s", err, vm.Console.Text())
	}
	st, seen, err := tb.WaitEnrolled(ctx, vm.Node.HRN)
	if err != nil {
		t.Fatalf("%v\nserial:\n%s", err, vm.Console.Text())
	}
	if sb := "unknown"; st.Firmware != "uefi" || st.SecureBoot == nil || !*st.SecureBoot {
		if st.SecureBoot != nil {
			sb = strconv.FormatBool(*st.SecureBoot)
		}
		t.Errorf("RC status: firmware %q, secure_boot %s; want uefi, true\nserial:\n%s", st.Firmware, sb, vm.Console.Text())
	}
	t.Logf("RC enrolled %s after power-on", vm.Since(seen).Round(10*time.Millisecond))
}

// TestUEFIHTTPBoot: a UEFI node with Secure Boot enforced and its PXE off
// (UEFI HTTP Boot only) gets, while linked, the URL of its image's RAM
// disk (efi/<image>.img, nbctl image build --efi-img) in DHCP, downloads
// it whole over HTTP, and boots shim, Debian's signed GRUB, the signed
// kernel and the initramfs from it, each checked by Secure Boot; the RC
// enrolls reporting Secure Boot on, and the node's timeline has the RAM
// disk's fetch and no TFTP at all.
func TestUEFIHTTPBoot(t *testing.T) {
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := uefiTestbed(t, node, vtestbed.Options{Image: image, ImageOptions: vtestbed.ImageOptions{EFIImg: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // TCG on a loaded machine: minutes
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{UEFI: &vtestbed.UEFI{SecureBoot: true, HTTPBoot: true}})
	enrolledSecure(ctx, t, tb, vm)
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	steps := append(vtestbed.UEFIHTTPBootSteps(*tb.Image), vtestbed.EnrolledStep)
	found, err := vtestbed.InOrder(evs, steps...)
	if err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	if !strings.Contains(found[0].Detail, "loader=http") {
		t.Errorf("DHCP ack %q; want loader=http", found[0].Detail)
	}
	for _, e := range evs {
		if e.Source == "tftp" {
			t.Errorf("TFTP on an HTTP Boot node's timeline: %s", e)
		}
	}
	t.Logf("timeline:\n%s", timeline(evs))
}

// TestUEFISecureBootRefusesUnsignedKernel: with Secure Boot enforced, the
// signed chain refuses a kernel whose signature was stripped (osslsigncode
// remove-signature): shim's verifier, called by GRUB, says so on the
// serial line, and no init runs and the RC never enrolls.
func TestUEFISecureBootRefusesUnsignedKernel(t *testing.T) {
	if _, err := exec.LookPath("osslsigncode"); err != nil {
		testenv.Missing(t, "needs osslsigncode (apt-get install osslsigncode)")
	}
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := uefiTestbed(t, node, vtestbed.Options{Image: image})
	kernel := filepath.Join(tb.TFTPRoot, tb.Image.Kernel)
	unsigned := kernel + ".unsigned"
	if out, err := exec.Command("osslsigncode", "remove-signature", "-in", kernel, "-out", unsigned).CombinedOutput(); err != nil {
		t.Fatalf("osslsigncode remove-signature: %v\n%s", err, out)
	}
	if err := os.Rename(unsigned, kernel); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // TCG on a loaded machine: minutes
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{UEFI: &vtestbed.UEFI{SecureBoot: true}})
	refused, err := vm.Wait(ctx, regexp.MustCompile(`bad shim signature|Security Violation|Access Denied`))
	if err != nil {
		t.Fatalf("no refusal on the serial line: %v\nserial:\n%s", err, vm.Console.Text())
	}
	t.Logf("refused %s after power-on: %s", vm.Since(refused.At).Round(10*time.Millisecond), refused.Text)
	// A chain that went on would run the init within seconds of loading
	// the kernel (~3 s under TCG, a minute on a loaded machine).
	waitCtx, waitCancel := context.WithTimeout(ctx, 90*time.Second)
	defer waitCancel()
	if l, err := vm.Wait(waitCtx, runInit); err == nil {
		t.Fatalf("the unsigned kernel ran: %s\nserial:\n%s", l.Text, vm.Console.Text())
	}
	st, err := tb.RCStatus(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enrolled {
		t.Errorf("the RC of a node whose kernel was refused enrolled")
	}
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	// The refused kernel is the one the node fetched: the chain got that far.
	if _, err := vtestbed.InOrder(evs, vtestbed.UEFIShimSteps(node, *tb.Image)[:5]...); err != nil {
		t.Errorf("%v\ntimeline:\n%s", err, timeline(evs))
	}
}

// TestUEFILocalBoot is scenario 5d: a UEFI node (Secure Boot on) without a
// boot link leaves netboot for its next boot entry, its disk. netbootd
// sends it a boot file that is not in tftp_root (dhcpd.NoLinkFile), so
// that the firmware's PXE entry fails at once (GRUB's exit would return
// success, and OVMF would open its menu instead); the serial line shows
// OVMF failing that entry and starting the disk's, whose EFI system
// partition boots with Secure Boot checked (shim, then Debian's signed
// GRUB): its grub.cfg prints a marker, then powers off.
//
// OVMF's network entries come in a fixed order, PXEv4, PXEv6, HTTPv4,
// HTTPv6, all before the disk. HTTPv4 cannot be turned off in OVMF: it
// fails at once too, on the URL of NoLinkFile. The IPv6 ones are off
// (vtestbed.UEFI), as on a testbed that netboots over IPv4
// only: netbootd has no DHCPv6, and each would wait a minute for it.
func TestUEFILocalBoot(t *testing.T) {
	start := time.Now()
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	node.DiskMarker = "UEFI-DISK-BOOTED " + node.Hostname
	tb := uefiTestbed(t, node, vtestbed.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	vm := tb.Boot(t, node, vtestbed.BootOptions{UEFI: &vtestbed.UEFI{SecureBoot: true}})
	// GRUB's console output carries terminal colour sequences.
	marker, err := vm.Wait(ctx, regexp.MustCompile(regexp.QuoteMeta(node.DiskMarker)+`\s*$`))
	if err != nil {
		t.Fatalf("the disk's GRUB did not print its marker: %v\nserial:\n%s", err, vm.Console.Text())
	}
	// The firmware's own account: the PXE entry failed, the disk's started.
	nbp := regexp.MustCompile(`NBP filename is ` + regexp.QuoteMeta(dhcpd.NoLinkFile) + `$`)
	tftpError := regexp.MustCompile(`PXE-E23: Client received TFTP error from server`)
	pxeFailed := regexp.MustCompile(`^BdsDxe: failed to load Boot[0-9A-F]{4} "UEFI PXEv4 \(MAC:` + strings.ReplaceAll(node.MAC, ":", "") + `\)"`)
	diskStarted := regexp.MustCompile(`^BdsDxe: starting Boot[0-9A-F]{4} "UEFI QEMU HARDDISK`)
	var at []string
	for _, re := range []*regexp.Regexp{nbp, tftpError, pxeFailed, diskStarted} {
		l, ok := vm.Console.Find(re)
		if !ok || !l.At.Before(marker.At) {
			t.Errorf("the serial line lacks %q before the marker", re)
			continue
		}
		at = append(at, fmt.Sprintf("%.1fs", vm.Since(l.At).Seconds()))
	}
	t.Logf("after power-on: NBP %s named, TFTP error, PXEv4 entry failed, disk entry started %v; the disk's GRUB printed its marker %.1fs",
		dhcpd.NoLinkFile,
		at, vm.Since(marker.At).Seconds())
	if err := vm.WaitExit(ctx); err != nil {
		t.Errorf("QEMU did not exit after GRUB's halt: %v", err)
	}
	t.Logf("serial:\n%s", vm.Console.Text())

	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	steps := []vtestbed.Step{
		{Name: "DHCP ack", Source: "dhcp", What: regexp.MustCompile(`^DHCPACK$`)},
		{Name: "refused boot file", Source: "tftp", What: regexp.MustCompile(`^` + regexp.QuoteMeta(dhcpd.NoLinkFile) + `$`)},
	}
	if found, err := vtestbed.InOrder(evs, steps[0]); err != nil || !strings.Contains(found[0].Detail, "file="+dhcpd.NoLinkFile+" arch=7 loader=localboot") {
		t.Errorf("no DHCP ack with file=%s arch=7 loader=localboot: %v\ntimeline:\n%s", dhcpd.NoLinkFile, err, timeline(evs))
	}
	for _, e := range evs {
		if e.Source == "tftp" || e.Source == "http" {
			t.Errorf("a UEFI node without a boot link fetched a file: %s", e)
		}
	}
	t.Logf("timeline:\n%s", timeline(evs))
	t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond))
}

// TestUEFILoad is scenario 5e: `nbctl load` onto a UEFI node with Secure
// Boot on, of a disk image whose GPT carries an EFI system partition
// (shim as EFI/BOOT/BOOTX64.EFI, Debian's signed GRUB beside it, a
// grub.cfg that prints a marker). The appliance resets the node, which
// netboots through shim and GRUB, its RC writes the image, and after the
// reboot the node has no link: its firmware fails the network entries at
// once and boots the written disk, Secure Boot checked, whose GRUB prints
// the new marker, not the old disk's.
func TestUEFILoad(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	node := vtestbed.NewNode(7, vtestbed.VirtioNet)
	tb, vms := newImagingTestbed(t, []vtestbed.Node{node}, &vtestbed.UEFI{SecureBoot: true}, nil)
	vm := vms[0]
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	const newMarker = "NEW-ESP-LOADED by nbctl load"
	files, err := vtestbed.ESPMarkerFiles(newMarker)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := vtestbed.ESPDisk(vtestbed.UEFIDiskSize, files)
	if err != nil {
		t.Fatal(err)
	}
	putDiskImage(ctx, t, tb, "esp-1", raw)

	loadStart := time.Now()
	out, err := nbctl(ctx, t, tb, "load", "--nodes", node.HRN, "--image", "esp-1",
		"--boot-timeout", "4m", "--timeout", "6m", "--poll", "200ms")
	if err != nil {
		t.Fatalf("nbctl load: %v\nserial:\n%s", err, vm.Console.Text())
	}
	// The disk is checked byte for byte below; what was written depends
	// on what the disk held (a chunked load skips what is already right).
	if !apptest.HasLine(out, node.HRN, "loaded", "/dev/sda") {
		t.Errorf("the summary has no line saying %s was loaded onto /dev/sda", node.HRN)
	}
	line := bootedLoadedDisk(ctx, t, vm, newMarker, raw)
	t.Logf("%s booted the loaded disk's ESP %.1fs after nbctl load started", node.Hostname, line.At.Sub(loadStart).Seconds())
	noLinksLeft(ctx, t, tb, "after the load", node)

	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	steps := loadSteps(vtestbed.UEFIShimSteps(node, *tb.Image),
		vtestbed.Step{Name: "no link: " + dhcpd.NoLinkFile, Source: "dhcp", What: regexp.MustCompile(`^DHCPACK$`)})
	found, err := vtestbed.InOrder(evs, steps...)
	if err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	if last := found[len(found)-1]; !strings.Contains(last.Detail, "file="+dhcpd.NoLinkFile) {
		t.Errorf("after the reboot the node was sent %q, want %s\ntimeline:\n%s", last.Detail, dhcpd.NoLinkFile, timeline(evs))
	}
	t.Logf("timeline:\n%s", timeline(evs))
}
