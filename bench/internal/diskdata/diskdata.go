// Package diskdata makes the disk images the benchmarks load (bench/rc,
// bench/imaging): a disk's worth of deterministic data that compresses as
// a real disk does (stretches of random, zero and text-like bytes), and
// its compressed forms as the appliance stores them.
package diskdata

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Block is the size of one stretch: each is wholly random, zero or text.
const Block = 1 << 20

// Mix says what the data is made of, and from which seed: the same Mix
// and size give the same bytes.
type Mix struct {
	Seed      uint64
	RandomPct int // percent of the blocks that are random (incompressible)
	ZeroPct   int // percent that are zeros; the rest is text
}

// ParseSize reads a size such as 1GiB, 256MiB, 64KiB or a byte count.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want e.g. 1GiB, 256MiB or a byte count", s)
	}
	return n * mult, nil
}

// Write writes size bytes of m's data to w, block by block.
func Write(w io.Writer, size int64, m Mix) error {
	if m.RandomPct < 0 || m.ZeroPct < 0 || m.RandomPct+m.ZeroPct > 100 {
		return fmt.Errorf("diskdata: %d%% random and %d%% zeros: want percentages adding up to at most 100", m.RandomPct, m.ZeroPct)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], m.Seed)
	r := rand.New(rand.NewChaCha8(seed))
	text := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, orbit testbed node image; "), Block/54+1)[:Block]
	buf := make([]byte, Block)
	for off := int64(0); off < size; off += Block {
		n := min(Block, size-off)
		switch p := r.IntN(100); {
		case p < m.RandomPct:
			for i := 0; i+8 <= len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
			}
		case p < m.RandomPct+m.ZeroPct:
			clear(buf)
		default:
			copy(buf, text)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("diskdata: %w", err)
		}
	}
	return nil
}

// Make writes size bytes of m's data to a new file at path, synced, and
// returns their SHA-256.
func Make(path string, size int64, m Mix) ([]byte, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("diskdata: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if err := Write(io.MultiWriter(f, h), size, m); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("diskdata: %w", err)
	}
	return h.Sum(nil), nil
}

// Compress writes src compressed as format ("zstd", one stream at the
// default level, as nbctl disk put stores it; or "gzip") to a new file dst,
// synced, and returns its size.
func Compress(src, dst, format string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("diskdata: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("diskdata: %w", err)
	}
	defer out.Close()
	var w io.WriteCloser
	switch format {
	case "zstd":
		w, err = zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault))
	case "gzip":
		w, err = gzip.NewWriterLevel(out, gzip.DefaultCompression)
	default:
		err = fmt.Errorf("format %q: want zstd or gzip", format)
	}
	if err != nil {
		return 0, fmt.Errorf("diskdata: %w", err)
	}
	if _, err := io.Copy(w, in); err != nil {
		return 0, fmt.Errorf("diskdata: compress %s: %w", src, err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("diskdata: compress %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		return 0, fmt.Errorf("diskdata: %w", err)
	}
	fi, err := out.Stat()
	if err != nil {
		return 0, fmt.Errorf("diskdata: %w", err)
	}
	return fi.Size(), nil
}

// FileSum is the SHA-256 of the file at path.
func FileSum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("diskdata: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("diskdata: %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
