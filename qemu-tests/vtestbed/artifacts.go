package vtestbed

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// ArtifactsEnv names the directory failed tests keep their machines' logs
// in; default <module root>/.cache/qemu-artifacts.
const ArtifactsEnv = "QEMU_ARTIFACTS"

// KeepEnv names the variable that, set to 1, keeps the artifacts of tests that pass too.
const KeepEnv = "QEMU_ARTIFACTS_KEEP"

// keepArtifacts says whether t's artifacts are kept: it failed, or
// $QEMU_ARTIFACTS_KEEP is 1.
func keepArtifacts(t testing.TB) bool {
	return t.Failed() || os.Getenv(KeepEnv) == "1"
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._/-]+`)

// ArtifactsBase returns $QEMU_ARTIFACTS, else <root>/.cache/qemu-artifacts.
func ArtifactsBase(root string) string {
	if d := os.Getenv(ArtifactsEnv); d != "" {
		return d
	}
	return filepath.Join(root, ".cache", "qemu-artifacts")
}

// artifactsPath is the test's own directory below the base: its name, a
// subtest's in a subdirectory.
func artifactsPath(t testing.TB, root string) string {
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	return filepath.Join(ArtifactsBase(root), filepath.FromSlash(name))
}

// writeArtifact writes one file of artifacts. A failure is logged, not
// fatal: the artifacts only explain the test's own result.
func writeArtifact(t testing.TB, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Logf("artifacts: %v", err)
	}
}

func artifactsDir(t testing.TB, root string) (string, error) {
	dir := artifactsPath(t, root)
	return dir, os.MkdirAll(dir, 0o755)
}

// resetArtifacts removes what an earlier run of the same test kept, so
// that the directory only ever holds the artifacts of the last run.
func resetArtifacts(t testing.TB, root string) {
	os.RemoveAll(artifactsPath(t, root))
}
