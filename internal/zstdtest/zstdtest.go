// Package zstdtest compresses and decompresses whole disk images in tests,
// as one zstd stream or as a chunked image (internal/chunkimg),
// failing the test on an error, so that each test says only what it checks;
// and makes the disks they hold.
package zstdtest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
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

// MixedDisk is a disk of size bytes for tests of images, in chunks of
// chunkSize whose kinds follow pattern in turn: 'z' zeros, 'r' random
// bytes from seed, 't' text (the same for every seed) that compresses
// well; the last chunk is cut to fit.
func MixedDisk(size, chunkSize int, pattern string, seed uint64) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, uint64(size)))
	for i := 0; i*chunkSize < size; i++ {
		c := b[i*chunkSize : min((i+1)*chunkSize, size)]
		switch pattern[i%len(pattern)] {
		case 'r':
			for j := range c {
				c[j] = byte(rng.Uint32())
			}
		case 't':
			line := fmt.Sprintf("chunk %d of a test disk; ", i)
			for j := range c {
				c[j] = line[j%len(line)]
			}
		}
	}
	return b
}
