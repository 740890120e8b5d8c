package vtestbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// Debian's UEFI firmware for QEMU (package ovmf): one code image that can
// enforce Secure Boot (it needs SMM: q35,smm=on), and two variable stores
// whose copy the machine writes.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	// OVMFVarsMS has Microsoft's keys enrolled: Secure Boot on.
	OVMFVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	// OVMFVars has no keys (setup mode): Secure Boot off.
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// UEFILoaders are Debian's signed shim and network GRUB (packages
// shim-signed, grub-efi-amd64-signed), which scripts/install-uefi-loaders.sh
// puts into a TFTP root.
var UEFILoaders = []string{"/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"}

// UEFI makes a machine start OVMF instead of SeaBIOS. Its NIC should be
// "virtio-net-pci,romfile=": with QEMU's iPXE ROM, OVMF runs iPXE instead
// of its own network stack, even under Secure Boot.
type UEFI struct {
	// SecureBoot enforces Secure Boot (Microsoft's keys enrolled).
	SecureBoot bool
	// HTTPBoot turns the firmware's PXE off, leaving UEFI HTTP Boot:
	// OVMF tries PXE first, and a PXE attempt that gets no boot file
	// costs about two minutes (IPv4 then IPv6).
	HTTPBoot bool
}

// args are QEMU's arguments for the firmware, with vars the machine's
// copy of its variable store.
func (u UEFI) args(vars string) []string {
	a := []string{
		"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}
	if u.HTTPBoot {
		a = append(a, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	}
	return a
}

// varsTemplate is the variable store a machine's copy starts from.
func (u UEFI) varsTemplate() string {
	if u.SecureBoot {
		return OVMFVarsMS
	}
	return OVMFVars
}

// RequireUEFI skips t, with one line saying why, unless OVMF and Debian's
// signed loaders are installed; under CI=true it fails t instead.
func RequireUEFI(t testing.TB) {
	t.Helper()
	for _, f := range append([]string{OVMFCode, OVMFVarsMS, OVMFVars}, UEFILoaders...) {
		if _, err := os.Stat(f); err != nil {
			testenv.Missing(t, "needs Debian's ovmf, shim-signed, grub-efi-amd64-signed (%v)", err)
		}
	}
}

// InstallUEFILoaders puts Debian's signed shim and network GRUB into the
// testbed's TFTP root with scripts/install-uefi-loaders.sh, as an operator
// does.
func (tb *Testbed) InstallUEFILoaders() error {
	cmd := exec.Command(filepath.Join(tb.Root, "scripts", "install-uefi-loaders.sh"), tb.TFTPRoot)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/install-uefi-loaders.sh: %w\n%s", err, out)
	}
	return nil
}
