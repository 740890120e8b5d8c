// Package zstdtest compresses and decompresses whole disk images in tests,
// as one zstd stream or as a chunked image (internal/chunkimg),
// failing the test on an error, so that each test says only what it checks.
package zstdtest

import (
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/rc/proto"
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

// Chunked is data as a chunked image (internal/chunkimg) of chunkSize
// chunks (chunkimg.DefaultChunkSize if 0), and its digest.
func Chunked(t testing.TB, data []byte, chunkSize int64) ([]byte, string) {
	t.Helper()
	var out bytes.Buffer
	w, err := chunkimg.NewWriter(&out, chunkSize)
	if err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	_, sum, err := w.Close()
	if err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	return out.Bytes(), sum
}

// Disk is the disk a stored image holds: img decompressed if it is one
// zstd stream; if it is a chunked image, checked whole (chunkimg.Check)
// and its chunks put back in place, zero chunks as zeros.
func Disk(t testing.TB, img []byte) []byte {
	t.Helper()
	if proto.FormatOf(img) != proto.FormatChunked {
		return Decompress(t, bytes.NewReader(img))
	}
	r := bytes.NewReader(img)
	m, _, err := chunkimg.Check(r, int64(len(img)))
	if err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	dec, err := chunkimg.NewDecoder(1)
	if err != nil {
		t.Fatalf("zstdtest: %v", err)
	}
	defer dec.Close()
	disk := make([]byte, m.DiskSize)
	for i, c := range m.Chunks {
		if c.Zero {
			continue
		}
		raw, err := dec.Decode(m, i, img[c.Offset:c.Offset+c.Size], nil)
		if err != nil {
			t.Fatalf("zstdtest: %v", err)
		}
		off, _ := m.Range(i)
		copy(disk[off:], raw)
	}
	return disk
}
