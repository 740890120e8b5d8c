package qemutests

import (
	"context"
	"regexp"
	"strconv"
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
	vtestbed.Require(t, vtestbed.Netbootd)
	if err := vtestbed.MissingUEFI(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image, SecureBoot: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{Firmware: vtestbed.OVMFSecureBoot})
	if _, err := vm.Wait(ctx, regexp.MustCompile(`Secure boot enabled`)); err != nil {
		t.Fatalf("the kernel did not say Secure Boot is on: %v\nserial:\n%s", err, vm.Console.Text())
	}
	st, _, err := tb.WaitEnrolled(ctx, node.HRN)
	if err != nil {
		t.Fatalf("%v\nserial:\n%s", err, vm.Console.Text())
	}
	if sb := "unknown"; st.Firmware != "uefi" || st.SecureBoot == nil || !*st.SecureBoot {
		if st.SecureBoot != nil {
			sb = strconv.FormatBool(*st.SecureBoot)
		}
		t.Errorf("RC status: firmware %q, secure_boot %s; want uefi, true\nserial:\n%s", st.Firmware, sb, vm.Console.Text())
	}
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
