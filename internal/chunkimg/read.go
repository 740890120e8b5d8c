package chunkimg

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// ErrChunk is wrapped by the error of a frame that does not decode to its
// chunk: the bytes were damaged or forged; nothing of it may be written.
var ErrChunk = errors.New("chunk does not match its hash")

// Decoder decodes and verifies frames; it is safe for concurrent use by up
// to the concurrency it was made with.
type Decoder struct{ d *zstd.Decoder }

// NewDecoder returns a Decoder for up to concurrency calls at once
// (GOMAXPROCS if 0). It never allocates more than MaxChunkSize for a
// frame, whatever the frame claims.
func NewDecoder(concurrency int) (*Decoder, error) {
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(concurrency), zstd.WithDecoderMaxMemory(MaxChunkSize),
		zstd.WithDecoderMaxWindow(MaxChunkSize))
	if err != nil {
		return nil, fmt.Errorf("chunkimg: %w", err)
	}
	return &Decoder{d: d}, nil
}

// Close releases the decoder.
func (d *Decoder) Close() { d.d.Close() }

// Decode decodes frame as chunk i of m into dst's storage and checks it:
// its length the chunk's, its hash the manifest's. Only then may it be
// written to the disk.
func (d *Decoder) Decode(m *Manifest, i int, frame, dst []byte) ([]byte, error) {
	if i < 0 || i >= len(m.Chunks) || m.Chunks[i].Zero {
		return nil, fmt.Errorf("chunkimg: chunk %d: %w: not a stored chunk", i, ErrChunk)
	}
	raw, err := d.d.DecodeAll(frame, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("chunkimg: chunk %d: %w: %w", i, ErrChunk, err)
	}
	if _, n := m.Range(i); int64(len(raw)) != n {
		return nil, fmt.Errorf("chunkimg: chunk %d: %w: %d bytes, want %d", i, ErrChunk, len(raw), n)
	}
	if Sum(raw) != m.Chunks[i].SHA256 {
		return nil, fmt.Errorf("chunkimg: chunk %d: %w", i, ErrChunk)
	}
	return raw, nil
}

// Frame reads chunk c's frame from the image r.
func Frame(r io.ReaderAt, c Chunk) ([]byte, error) {
	b := make([]byte, c.Size)
	if _, err := r.ReadAt(b, c.Offset); err != nil {
		return nil, fmt.Errorf("chunkimg: frame at %d: %w", c.Offset, err)
	}
	return b, nil
}

// Check reads the whole image r of size bytes and verifies it: its layout
// (ReadManifest) and every frame against its hash. It returns the manifest
// and the image's digest.
func Check(r io.ReaderAt, size int64) (*Manifest, string, error) {
	m, b, err := ReadManifest(r, size)
	if err != nil {
		return nil, "", err
	}
	dec, err := NewDecoder(0)
	if err != nil {
		return nil, "", err
	}
	defer dec.Close()
	next := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			buf := make([]byte, 0, m.ChunkSize)
			for i := range next {
				frame, err := Frame(r, m.Chunks[i])
				if err == nil {
					_, err = dec.Decode(m, i, frame, buf)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i, c := range m.Chunks {
		if c.Zero {
			continue
		}
		select {
		case err := <-errs:
			close(next)
			wg.Wait()
			return nil, "", err
		case next <- i:
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, "", err
	default:
	}
	return m, Digest(b), nil
}
