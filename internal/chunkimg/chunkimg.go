// Package chunkimg is the chunked disk image format: a disk cut into
// fixed-size chunks, each stored as an independent zstd frame, with a
// manifest of every chunk's SHA-256 so that a node verifies each chunk
// before writing it, skips the chunks its disk already holds (a delta or
// resumed load), and takes chunks in any order (multicast).
//
// One file holds an image, and the same bytes are the upload stream:
//
//	header    16 B   proto.ChunkedMagic ("NBCHUNK1"), 8 zero bytes
//	frames           one zstd frame per non-zero chunk, in chunk order
//	manifest         JSON (Manifest)
//	footer    16 B   the manifest's length (uint64, big-endian), "NBCHUNKM"
//
// Chunk i covers disk bytes [i*ChunkSize, min((i+1)*ChunkSize, DiskSize)).
// A chunk of zeros is not stored: its entry says so. The image is named by
// the SHA-256 of its manifest bytes as stored (Digest): the manifest holds
// every chunk's hash, so that one sum commits to the whole disk.
package chunkimg

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/rc/proto"
)

// Version is the manifest version this package writes and reads.
const Version = 1

// DefaultChunkSize is 1 MiB: small enough that a changed file rewrites
// little of the disk and a lost multicast chunk costs little to repeat,
// large enough that zstd compresses well and the manifest stays small
// (about 100 bytes of JSON a chunk: 400 KiB for a 4 GiB disk).
const DefaultChunkSize = 1 << 20

// Bounds on the chunk size a manifest may declare.
const (
	MinChunkSize = 64 << 10
	MaxChunkSize = 64 << 20
)

const (
	// HeaderSize is the size of the file's fixed start.
	HeaderSize = 16
	// FooterSize is the size of the file's fixed end.
	FooterSize  = 16
	footerMagic = "NBCHUNKM"
	// MaxManifest bounds the manifest a reader takes: about 100 bytes of JSON a
	// chunk, a 4 TiB disk in 1 MiB chunks (larger disks take larger chunks).
	MaxManifest = 512 << 20
)

// ErrFormat is wrapped by every error about bytes that are not a valid
// chunked image.
var ErrFormat = errors.New("not a valid chunked image")

// Chunk is one chunk's entry in the manifest.
type Chunk struct {
	// SHA256 is the hex sum of the chunk's raw (decompressed) bytes.
	SHA256 string `json:"sha256,omitempty"`
	// Offset and Size place its zstd frame in the image file.
	Offset int64 `json:"offset,omitempty"`
	Size   int64 `json:"size,omitempty"`
	// Zero: the chunk is all zeros and not stored.
	Zero bool `json:"zero,omitempty"`
}

// Manifest describes a chunked image.
type Manifest struct {
	Version   int     `json:"version"`
	DiskSize  int64   `json:"disk_size"`
	ChunkSize int64   `json:"chunk_size"`
	Chunks    []Chunk `json:"chunks"`
}

// Range is the span of the disk that chunk i covers.
func (m *Manifest) Range(i int) (off, n int64) {
	off = int64(i) * m.ChunkSize
	return off, min(m.ChunkSize, m.DiskSize-off)
}

// ZeroChunks counts the chunks that are not stored.
func (m *Manifest) ZeroChunks() int {
	n := 0
	for _, c := range m.Chunks {
		if c.Zero {
			n++
		}
	}
	return n
}

// FrameBytes is the sum of the stored frames' sizes.
func (m *Manifest) FrameBytes() int64 {
	var n int64
	for _, c := range m.Chunks {
		n += c.Size
	}
	return n
}

// Digest names manifest bytes as stored: the image's identity.
func Digest(manifest []byte) string { return digest.Bytes(manifest) }

// ParseManifest decodes and checks manifest bytes: the version, the chunk
// size within bounds, one entry per chunk of the disk, every stored frame
// placed after the previous one and the header, and every hash well formed.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("chunkimg: manifest: %w: %w", ErrFormat, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("chunkimg: manifest: %w: %w", ErrFormat, err)
	}
	return &m, nil
}

func (m *Manifest) check() error {
	switch {
	case m.Version != Version:
		return fmt.Errorf("version %d, want %d", m.Version, Version)
	case m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize:
		return fmt.Errorf("chunk size %d outside [%d, %d]", m.ChunkSize, MinChunkSize, MaxChunkSize)
	case m.DiskSize < 0:
		return fmt.Errorf("disk size %d", m.DiskSize)
	}
	if want := (m.DiskSize + m.ChunkSize - 1) / m.ChunkSize; int64(len(m.Chunks)) != want {
		return fmt.Errorf("%d chunks for a disk of %d bytes in chunks of %d, want %d", len(m.Chunks), m.DiskSize, m.ChunkSize, want)
	}
	next := int64(HeaderSize)
	for i, c := range m.Chunks {
		if c.Zero {
			if c.SHA256 != "" || c.Offset != 0 || c.Size != 0 {
				return fmt.Errorf("chunk %d: a zero chunk with a frame", i)
			}
			continue
		}
		if !digest.Valid(c.SHA256) {
			return fmt.Errorf("chunk %d: sha256 %q", i, c.SHA256)
		}
		if c.Offset != next || c.Size <= 0 || c.Size > 2*m.ChunkSize {
			return fmt.Errorf("chunk %d: frame at %d+%d, want it at %d and 1 to %d bytes", i, c.Offset, c.Size, next, 2*m.ChunkSize)
		}
		next += c.Size
	}
	return nil
}

// framesEnd is where the manifest starts in the file.
func (m *Manifest) framesEnd() int64 { return HeaderSize + m.FrameBytes() }

// header is the file's first HeaderSize bytes.
func header() []byte {
	h := make([]byte, HeaderSize)
	copy(h, proto.ChunkedMagic)
	return h
}

// footer is the file's last FooterSize bytes for a manifest of n bytes.
func footer(n int) []byte {
	f := make([]byte, FooterSize)
	binary.BigEndian.PutUint64(f, uint64(n))
	copy(f[8:], footerMagic)
	return f
}

// ReadManifest reads and checks the manifest of the image r of size bytes,
// and that the file holds exactly header, frames, manifest and footer. It
// returns the manifest's bytes too: Digest names the image by them.
func ReadManifest(r io.ReaderAt, size int64) (*Manifest, []byte, error) {
	if size < HeaderSize+FooterSize {
		return nil, nil, fmt.Errorf("chunkimg: %w: %d bytes", ErrFormat, size)
	}
	head := make([]byte, HeaderSize)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, nil, fmt.Errorf("chunkimg: header: %w", err)
	}
	if !bytes.Equal(head, header()) {
		return nil, nil, fmt.Errorf("chunkimg: %w: header % x", ErrFormat, head)
	}
	foot := make([]byte, FooterSize)
	if _, err := r.ReadAt(foot, size-FooterSize); err != nil {
		return nil, nil, fmt.Errorf("chunkimg: footer: %w", err)
	}
	n := binary.BigEndian.Uint64(foot)
	if string(foot[8:]) != footerMagic || n > MaxManifest || int64(n) > size-HeaderSize-FooterSize {
		return nil, nil, fmt.Errorf("chunkimg: %w: footer % x", ErrFormat, foot)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, size-FooterSize-int64(n)); err != nil {
		return nil, nil, fmt.Errorf("chunkimg: manifest: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, nil, err
	}
	if end := m.framesEnd(); end != size-FooterSize-int64(n) {
		return nil, nil, fmt.Errorf("chunkimg: %w: frames end at %d, the manifest starts at %d", ErrFormat, end, size-FooterSize-int64(n))
	}
	return m, b, nil
}

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Sum is the hex SHA-256 of b, as a manifest names a chunk.
func Sum(b []byte) string { return digest.Bytes(b) }
