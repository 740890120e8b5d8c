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

// startWriteback starts writing [off, off+n) of the file fd to its device
// without waiting for it: the load's closing fsync then finds little left,
// the disk having written while the network brought the rest, and a node
// does not gather the whole image in dirty pages first. Best effort: the
// fsync still makes it durable.
func startWriteback(fd uintptr, off, n int64) {
	_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
