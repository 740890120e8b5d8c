package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFile writes a test's input file, and the directories above it,
// failing the test on an error.
func WriteFile[D string | []byte](t testing.TB, path string, data D) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ReadFile returns the text of a file the test reads, failing the test on
// an error.
func ReadFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
