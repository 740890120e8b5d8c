package qemutests

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// Debian's Secure Boot parts (packages ovmf, shim-signed,
// grub-efi-amd64-signed) and the names the node asks for them by.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" // Microsoft's keys enrolled: Secure Boot on
	shimFile = "/usr/lib/shim/shimx64.efi.signed"
	grubFile = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
)

// TestUEFISecureBootNetboot: a UEFI node with Secure Boot enforced (OVMF
// with Microsoft's keys, virtio-net without an option ROM so that the
// firmware's own PXE runs) boots shim, Debian's signed network GRUB, the
// node's grub/grub.cfg-<HEX> link, Debian's signed kernel and our
// initramfs; its RC enrolls and reports firmware uefi with Secure Boot on,
// read from the SecureBoot variable through efivarfs.
func TestUEFISecureBootNetboot(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	for _, f := range []string{ovmfCode, ovmfVars, shimFile, grubFile} {
		if _, err := os.Stat(f); err != nil {
			testenv.Missing(t, "Debian: ovmf, shim-signed, grub-efi-amd64-signed (%v)", err)
		}
	}
	node := vtestbed.NewNode(1, vtestbed.NIC("virtio-net-pci,romfile="))
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image})
	cp := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteFile(t, dst, b)
	}
	cp(shimFile, filepath.Join(tb.TFTPRoot, "shimx64.efi"))
	cp(grubFile, filepath.Join(tb.TFTPRoot, "grubx64.efi")) // shim asks for this name beside itself
	vars := filepath.Join(t.TempDir(), "vars.fd")           // the firmware writes its variables
	cp(ovmfVars, vars)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{Memory: 512, Extra: []string{
		"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}})
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
