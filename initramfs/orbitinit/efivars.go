package orbitinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EFIDir exists only when UEFI started the kernel.
const EFIDir = "/sys/firmware/efi"

// mountEFIVars mounts efivarfs on efiDir/efivars when efiDir exists, so
// that the RC can read the SecureBoot variable and report it at
// enrollment. mount mounts efivarfs on its target. On a BIOS node it does
// nothing and says so (false, nil); a mount that fails (no efivarfs in the
// kernel) is an error, and the RC then reports Secure Boot as unknown.
func mountEFIVars(efiDir string, mount func(target string) error) (bool, error) {
	if _, err := os.Stat(efiDir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("efivarfs: %w", err)
	}
	target := filepath.Join(efiDir, "efivars")
	if err := mount(target); err != nil {
		return false, fmt.Errorf("efivarfs on %s: %w", target, err)
	}
	return true, nil
}
