package testenv

import (
	"path/filepath"
	"testing"

	"github.com/orbit-lab/netboot/internal/modroot"
)

// SourceTree returns the netboot source tree the test runs in, failing the
// test outside one.
func SourceTree(t testing.TB) string {
	t.Helper()
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Kernel ends t (see Missing) unless make kernel (scripts/fetch-kernel.sh)
// has unpacked the Debian kernel package into the source tree's
// .cache/kernel, and returns its directory.
func Kernel(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(SourceTree(t), ".cache", "kernel", "linux-image-*-amd64"))
	if len(dirs) == 0 {
		Missing(t, "no kernel in .cache/kernel: run make kernel (make test does)")
	}
	return dirs[0]
}
