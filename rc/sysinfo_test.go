package rc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc/proto"
)

func TestLocalDisks(t *testing.T) {
	sys := t.TempDir()
	write := func(path, body string) {
		testenv.WriteFile(t, filepath.Join(sys, path), body)
	}
	write("sda/size", "976773168\n")
	write("sda/device/model", "Samsung SSD 860 \n")
	write("sda/removable", "0\n")
	write("nvme0n1/size", "2000409264\n")
	write("sr0/size", "2097151\n")
	write("loop0/size", "0\n")
	write("cciss!c0d0/size", "100\n")
	write("sdb/removable", "1\n") // no size: skipped
	got := localDisks(sys)
	want := []proto.Disk{
		{Name: "cciss!c0d0", Path: "/dev/cciss/c0d0", Size: 51200},
		{Name: "nvme0n1", Path: "/dev/nvme0n1", Size: 2000409264 * 512},
		{Name: "sda", Path: "/dev/sda", Size: 976773168 * 512, Model: "Samsung SSD 860"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMountedFrom(t *testing.T) {
	mounts := filepath.Join(t.TempDir(), "mounts")
	if err := os.WriteFile(mounts, []byte(`rootfs / rootfs rw 0 0
proc /proc proc rw 0 0
/dev/sda2 /mnt ext4 rw 0 0
/dev/nvme0n1p1 /boot vfat rw 0 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for disk, want := range map[string]bool{
		"/dev/sda": true, "/dev/sda2": true, "/dev/sdb": false, "/dev/sd": false,
		"/dev/nvme0n1": true, "/dev/nvme0n": false, "/dev/nvme0n12": false,
	} {
		if got := mountedFrom(mounts, disk) != ""; got != want {
			t.Errorf("mountedFrom(%s) = %v, want %v", disk, got, want)
		}
	}
}
