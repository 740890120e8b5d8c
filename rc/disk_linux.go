package rc

import (
	"os"

	"golang.org/x/sys/unix"
)

// excl, with O_WRONLY and no O_CREAT, opens a block device only if the
// kernel does not use it (mounted, swap, RAID member): EBUSY otherwise.
const excl = unix.O_EXCL

// rereadPartitions makes the kernel read the partition table just written.
func rereadPartitions(f *os.File) error {
	return unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
}
