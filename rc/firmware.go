package rc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/orbit-lab/netboot/rc/proto"
)

// secureBootVar is the SecureBoot variable of the EFI global variable GUID
// as efivarfs names it: 4 attribute bytes, then one data byte, 1 = on.
const secureBootVar = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// localFirmware says how the node booted from efiDir (/sys/firmware/efi,
// which the kernel creates only when it was started by UEFI) and whether
// Secure Boot is on, from efiDir/efivars (orbit-init mounts efivarfs
// there). What it cannot tell is unknown ("", nil), never a guess.
func localFirmware(efiDir string) (string, *bool) {
	off, on := false, true
	if _, err := os.Stat(efiDir); errors.Is(err, fs.ErrNotExist) {
		return proto.FirmwareBIOS, &off // no UEFI, so no Secure Boot
	} else if err != nil {
		return "", nil
	}
	b, err := os.ReadFile(filepath.Join(efiDir, "efivars", secureBootVar))
	if err != nil || len(b) != 5 {
		return proto.FirmwareUEFI, nil
	}
	switch b[4] {
	case 1:
		return proto.FirmwareUEFI, &on
	case 0:
		return proto.FirmwareUEFI, &off
	}
	return proto.FirmwareUEFI, nil
}
