package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// writableDir makes dir (mode perm) if it is missing and checks, by making
// and removing a file in it, that netbootd can write there, so that a
// directory it cannot use stops it at start with its config key named,
// rather than at the first boot link or database write. A read-only file
// system is most often the sandbox of netbootd's systemd unit, so that
// error says how to widen it.
func writableDir(key, dir string, perm fs.FileMode) error {
	err := os.MkdirAll(dir, perm)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".netbootd-write-check-*"); err == nil {
			f.Close()
			if err = os.Remove(f.Name()); err == nil {
				return nil
			}
		}
	}
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%s %s is on a read-only file system: netbootd's systemd unit (ProtectSystem=full) keeps /usr, /boot and /etc read-only; "+
			"choose another directory in the config, or add it to the unit with a drop-in (systemctl edit netbootd: [Service] ReadWritePaths=%s): %w", key, dir, dir, err)
	}
	return fmt.Errorf("%s %s: netbootd cannot write there: %w", key, dir, err)
}
