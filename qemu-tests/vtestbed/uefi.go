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
var UEFILoaders = []string{Shim, GrubNet}

// UEFI makes a machine start OVMF instead of SeaBIOS, on q35 with SMM,
// from a copy of the firmware's variables of its own (<host>.vars.fd
// beside the disk). The boot order is the firmware's: the NIC (bootindex
// 1), then the disk (bootindex 2); BootOptions.Order is not used. A
// virtio-net NIC goes without QEMU's iPXE option ROM (romfile=): with it,
// OVMF would run iPXE instead of its own network stack, even under Secure
// Boot. The firmware's IPv6 stack is off (opt/org.tianocore/IPv6Support):
// the testbed netboots over IPv4 and has no DHCPv6, for which the PXEv6
// and HTTPv6 entries would each wait a minute before the disk. Memory
// defaults to 512 MiB, the disk to UEFIDiskSize.
type UEFI struct {
	// SecureBoot enforces Secure Boot (Microsoft's keys enrolled).
	SecureBoot bool
	// HTTPBoot turns the firmware's PXE off, leaving UEFI HTTP Boot:
	// OVMF tries PXE first, and a PXE attempt that gets no boot file
	// costs over a minute.
	HTTPBoot bool
}

// args are QEMU's arguments for the firmware, with vars the machine's
// copy of its variable store.
func (u UEFI) args(vars string) []string {
	a := []string{
		"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=n",
	}
	if u.HTTPBoot {
		a = append(a, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n")
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

// uefiMissing says what UEFI machines lack on this machine, or nil: OVMF,
// Debian's signed loaders, and mtools for ESP disks.
func uefiMissing() error {
	for _, f := range []string{OVMFCode, OVMFVarsMS, OVMFVars, Shim, GrubNet, GrubDisk} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("needs Debian's ovmf, shim-signed, grub-efi-amd64-signed (%w)", err)
		}
	}
	for _, tool := range []string{"mformat", "mmd", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (apt-get install mtools)", tool)
		}
	}
	return nil
}

// RequireUEFI skips t, with one line saying why, unless OVMF, Debian's
// signed loaders and mtools are installed; under CI=true it fails t
// instead.
func RequireUEFI(t testing.TB) {
	t.Helper()
	if err := uefiMissing(); err != nil {
		testenv.Missing(t, "%v", err)
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
