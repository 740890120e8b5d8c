package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
)

// Faults the appliance must survive while it images nodes (issue 15, 7):
// each test breaks netbootd or its disk in the middle of nbctl load or
// save against nodes whose reset starts an RC (vnode), and checks what is
// left: the boot links in the database and in cfg_dir, the stored images.

// randomData is n bytes that do not compress, the same for the same seed.
func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// mountTmpfs mounts a tmpfs of size (mount's size=, e.g. 6m) on dir until
// the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	testenv.Root(t, "mounting a tmpfs")
	testenv.Programs(t, "Debian: mount", "mount", "umount")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// leftovers lists what is in the image directory besides images and
// their checksums: uploads or temp files a failure left behind.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".zst") || strings.HasSuffix(n, ".gz") || strings.HasSuffix(n, ".sha256")) {
			out = append(out, n)
		}
	}
	return out
}

// TestSaveDiskFull: nbctl save --replace of a disk that does not fit in
// what is left of state_dir (a 6 MiB tmpfs) fails, saying the appliance's
// disk is full; the image of that name is the one stored before and still
// downloads whole, no upload is left in the image directory, and a save
// that fits works after.
func TestSaveDiskFull(t *testing.T) {
	n := newVnode(t, 1)
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Inventory: "testbeds:\n  - domain: vtb\n    nodes:\n" + n.inventory()})
	state := filepath.Join(a.Dir, "state")
	mountTmpfs(t, state, "6m")
	a.Start()
	n.run(a.URL)
	ctx := t.Context()

	old := randomData(1, 1<<20)
	img := filepath.Join(t.TempDir(), "old.zst")
	testenv.WriteFile(t, img, zstdtest.Compress(t, old))
	nbctlOK(ctx, t, a.URL, "disk", "put", "old", img)

	n.writeDisk("disk0", randomData(2, 12<<20)) // compressed, still twice the tmpfs
	out, errs, err := nbctl(ctx, a.URL, "save", "--node", n.hrn, "--image", "old", "--replace", "--disk", filepath.Join(n.dir, "disk0"), "--poll", "50ms")
	t.Logf("nbctl save onto a full disk: %v\n%s%s", err, out, errs)
	if err == nil {
		t.Fatalf("nbctl save of 12 MiB into a 6 MiB state_dir succeeded")
	}
	if !apptest.HasLine(out, n.hrn, "FAILED (saving)") || !strings.Contains(out, "disk image directory is full") ||
		!strings.Contains(out, "the stored image is unchanged") {
		t.Errorf("nbctl save does not say the appliance's disk is full:\n%s", out)
	}
	if !apptest.HasLine(a.Log.String(), "disk image upload refused", "no space left on device") {
		t.Errorf("netbootd does not log the refusal with its cause:\n%s", a.Log)
	}
	if !bytes.Equal(storedImage(ctx, t, a.URL, "old"), old) {
		t.Errorf("image old changed")
	}
	if left := leftovers(t, filepath.Join(state, "images")); len(left) > 0 {
		t.Errorf("left in the image directory: %q", left)
	}

	// The appliance goes on: a disk that fits is stored.
	n.writeDisk("disk1", diskData("small"))
	nbctlOK(ctx, t, a.URL, "save", "--node", n.hrn, "--image", "old", "--replace", "--disk", filepath.Join(n.dir, "disk1"), "--poll", "50ms")
	if !bytes.Equal(storedImage(ctx, t, a.URL, "old"), diskData("small")) {
		t.Errorf("image old is not the disk saved after")
	}
}
