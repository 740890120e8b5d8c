package chunkimg

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Writer cuts the raw disk bytes written to it into chunks and writes the
// chunked image to an io.Writer as it goes: the chunks of a batch are
// hashed and compressed in parallel, their frames written in order.
type Writer struct {
	w     io.Writer
	enc   *zstd.Encoder
	m     Manifest
	off   int64    // where the next frame goes
	cur   []byte   // the chunk being filled
	batch [][]byte // full chunks not yet written
	free  [][]byte // chunk buffers to reuse
	par   int
	err   error // the first failure: every later call returns it
	done  bool
}

// NewWriter writes the header to w and returns a Writer of chunkSize
// chunks (DefaultChunkSize if 0).
func NewWriter(w io.Writer, chunkSize int64) (*Writer, error) {
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize {
		return nil, fmt.Errorf("chunkimg: chunk size %d outside [%d, %d]", chunkSize, MinChunkSize, MaxChunkSize)
	}
	par := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(par))
	if err != nil {
		return nil, fmt.Errorf("chunkimg: %w", err)
	}
	if _, err := w.Write(header()); err != nil {
		enc.Close()
		return nil, fmt.Errorf("chunkimg: header: %w", err)
	}
	return &Writer{
		w: w, enc: enc, par: par, off: HeaderSize,
		m: Manifest{Version: Version, ChunkSize: chunkSize},
	}, nil
}

// Write adds p to the disk.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("chunkimg: write after Close")
	}
	n := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			w.cur = w.buffer()
		}
		k := copy(w.cur[len(w.cur):cap(w.cur)], p)
		w.cur = w.cur[:len(w.cur)+k]
		p = p[k:]
		w.m.DiskSize += int64(k)
		if int64(len(w.cur)) == w.m.ChunkSize {
			w.batch, w.cur = append(w.batch, w.cur), nil
			if len(w.batch) == 2*w.par {
				if err := w.flush(); err != nil {
					return n - len(p), err
				}
			}
		}
	}
	return n, nil
}

func (w *Writer) buffer() []byte {
	if k := len(w.free); k > 0 {
		b := w.free[k-1]
		w.free = w.free[:k-1]
		return b[:0]
	}
	return make([]byte, 0, w.m.ChunkSize)
}

// flush hashes and compresses the batch in parallel, then writes its frames.
func (w *Writer) flush() error {
	type result struct {
		sum   string
		frame []byte
	}
	out := make([]result, len(w.batch))
	var wg sync.WaitGroup
	for i, raw := range w.batch {
		if IsZero(raw) {
			continue
		}
		wg.Go(func() {
			out[i] = result{sum: Sum(raw), frame: w.enc.EncodeAll(raw, make([]byte, 0, len(raw)/2))}
		})
	}
	wg.Wait()
	for i, r := range out {
		w.free = append(w.free, w.batch[i])
		if r.frame == nil {
			w.m.Chunks = append(w.m.Chunks, Chunk{Zero: true})
			continue
		}
		if _, err := w.w.Write(r.frame); err != nil {
			w.err = fmt.Errorf("chunkimg: writing chunk %d: %w", len(w.m.Chunks), err)
			return w.err
		}
		w.m.Chunks = append(w.m.Chunks, Chunk{SHA256: r.sum, Offset: w.off, Size: int64(len(r.frame))})
		w.off += int64(len(r.frame))
	}
	w.batch = w.batch[:0]
	return nil
}

// Close writes the last chunk, the manifest and the footer. It returns the
// manifest and the image's digest (Digest of the manifest's bytes).
func (w *Writer) Close() (*Manifest, string, error) {
	defer w.enc.Close()
	if w.err != nil {
		return nil, "", w.err
	}
	if w.done {
		return nil, "", fmt.Errorf("chunkimg: Close twice")
	}
	w.done = true
	if len(w.cur) > 0 {
		w.batch, w.cur = append(w.batch, w.cur), nil
	}
	if err := w.flush(); err != nil {
		return nil, "", err
	}
	if w.m.Chunks == nil {
		w.m.Chunks = []Chunk{}
	}
	b, err := json.Marshal(w.m)
	if err != nil {
		return nil, "", fmt.Errorf("chunkimg: manifest: %w", err)
	}
	if _, err := w.w.Write(append(b, footer(len(b))...)); err != nil {
		w.err = fmt.Errorf("chunkimg: manifest: %w", err)
		return nil, "", w.err
	}
	m := w.m
	return &m, Digest(b), nil
}

// Copy writes the raw disk read from src to dst as a chunked image of
// chunkSize chunks (DefaultChunkSize if 0) and
// returns its manifest and digest.
func Copy(dst io.Writer, src io.Reader, chunkSize int64) (*Manifest, string, error) {
	w, err := NewWriter(dst, chunkSize)
	if err != nil {
		return nil, "", err
	}
	if _, err := io.CopyBuffer(w, src, make([]byte, 4<<20)); err != nil {
		w.Close()
		return nil, "", err
	}
	return w.Close()
}
