// Package zstdtest compresses and decompresses whole disk images in tests,
// failing the test on an error, so that each test says only what it checks.
package zstdtest

import (
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Compress is data as one zstd stream.
func Compress(t testing.TB, data []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	defer w.Close()
	return w.EncodeAll(data, nil)
}

// Decompress reads the zstd stream r to its end.
func Decompress(t testing.TB, r io.Reader) []byte {
	t.Helper()
	zr, err := zstd.NewReader(r)
	if err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("zstdtest: decompress: %v", err)
	}
	return out
}
