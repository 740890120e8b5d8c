package qemutests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
	node, tb := uefiTestbed(t, vtestbed.ImageOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // TCG on a loaded machine: minutes
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{Memory: 512, UEFI: &vtestbed.UEFI{SecureBoot: true}})
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

// uefiTestbed is a testbed with one UEFI node (virtio-net without option
// ROM, so that the firmware's own network stack runs) and Debian's signed
// shim and network GRUB in the TFTP root, installed as an operator does.
func uefiTestbed(t *testing.T, io vtestbed.ImageOptions) (vtestbed.Node, *vtestbed.Testbed) {
	t.Helper()
	vtestbed.Require(t, vtestbed.Netbootd)
	vtestbed.RequireUEFI(t)
	node := vtestbed.NewNode(1, vtestbed.NIC("virtio-net-pci,romfile="))
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image, ImageOptions: io})
	if err := tb.InstallUEFILoaders(); err != nil {
		t.Fatal(err)
	}
	return node, tb
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
	node, tb := uefiTestbed(t, vtestbed.ImageOptions{EFIImg: true})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // TCG on a loaded machine: minutes
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{Memory: 512, UEFI: &vtestbed.UEFI{SecureBoot: true, HTTPBoot: true}})
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
	node, tb := uefiTestbed(t, vtestbed.ImageOptions{})
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
	vm := tb.Boot(t, node, vtestbed.BootOptions{Memory: 512, UEFI: &vtestbed.UEFI{SecureBoot: true}})
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
