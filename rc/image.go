package rc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/orbit-lab/netboot/internal/ctxio"
	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/rc/proto"
)

// ioBlock is the size of one read or write of a disk.
const ioBlock = 4 << 20

// ErrDiskNotAllowed is returned for a disk outside the DiskAllow patterns.
var ErrDiskNotAllowed = errors.New("disk not allowed")

// checkDisk resolves disk and checks it against the allowed patterns, that
// it is a block device or a regular file, and that nothing of it is
// mounted. It returns the resolved path.
func (r *rc) checkDisk(disk string) (string, os.FileInfo, error) {
	if disk == "" || !filepath.IsAbs(disk) {
		return "", nil, fmt.Errorf("disk %q: want an absolute path", disk)
	}
	real, err := filepath.EvalSymlinks(disk)
	if err != nil {
		return "", nil, fmt.Errorf("disk %s: %w", disk, err)
	}
	allowed := false
	for _, pat := range r.cfg.DiskAllow {
		if ok, _ := filepath.Match(pat, real); ok {
			allowed = true
			break
		}
	}
	if !allowed {
		return "", nil, fmt.Errorf("disk %s (%s): %w: the RC may only touch %s", disk, real, ErrDiskNotAllowed, strings.Join(r.cfg.DiskAllow, " "))
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", nil, fmt.Errorf("disk %s: %w", disk, err)
	}
	isBlock := fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	if !isBlock && !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("disk %s: neither a block device nor a file (%s)", disk, fi.Mode().Type())
	}
	if isBlock {
		if m := mountedFrom(r.cfg.Mounts, real); m != "" {
			return "", nil, fmt.Errorf("disk %s is in use: %s", disk, m)
		}
	}
	return real, fi, nil
}

// mountedFrom says which mount uses disk or one of its partitions ("" if
// none), from a /proc/mounts file.
func mountedFrom(mounts, disk string) string {
	b, err := os.ReadFile(mounts)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "/") {
			continue
		}
		src := f[0]
		if s, err := filepath.EvalSymlinks(src); err == nil {
			src = s
		}
		if rest, ok := strings.CutPrefix(src, disk); ok && isPartSuffix(rest) {
			return src + " is mounted on " + f[1]
		}
	}
	return ""
}

// isPartSuffix: "", "1", "p1" (sda1, nvme0n1p1, mmcblk0p1).
func isPartSuffix(s string) bool {
	s = strings.TrimPrefix(s, "p")
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func failed(format string, args ...any) proto.Report {
	return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: fmt.Sprintf(format, args...)}
}

// loadImage streams a disk image from the appliance onto the disk:
// decompressed (gzip or zstd, by its magic bytes) and written as it comes,
// its checksum verified at the end against the one the command carries.
func (r *rc) loadImage(ctx context.Context, c proto.Command, rep *reporter) proto.Report {
	disk, fi, err := r.checkDisk(c.Disk)
	if err != nil {
		return failed("%v", err)
	}
	// A chunked image is fetched by ranges instead (chunkload.go): a HEAD
	// tells its format without starting the transfer of the whole file
	// (failing, it leaves the GET to say why).
	if h, err := rep.c.headImage(ctx, c.Image); err == nil && h.Get(proto.HeaderFormat) == proto.FormatChunked {
		want, err := imageSum(c, h)
		if err != nil {
			return failed("%v", err)
		}
		return r.loadChunked(ctx, c, disk, fi, want, rep)
	}
	resp, err := rep.c.getImage(ctx, c.Image)
	if err != nil {
		return failed("disk image %s: %v", c.Image, err)
	}
	defer resp.Body.Close()
	want, err := imageSum(c, resp.Header)
	if err != nil {
		return failed("%v", err)
	}
	// An appliance that does not say the format: the first bytes do.
	body := bufio.NewReaderSize(resp.Body, 16)
	if head, _ := body.Peek(len(proto.ChunkedMagic)); proto.FormatOf(head) == proto.FormatChunked {
		resp.Body.Close()
		return r.loadChunked(ctx, c, disk, fi, want, rep)
	}
	total := resp.ContentLength
	if total < 0 {
		total = c.Size
	}
	flags := os.O_WRONLY
	if fi.Mode()&os.ModeDevice != 0 {
		flags |= excl // Linux: EBUSY if the kernel uses the device (mounted, swap, RAID)
	}
	f, err := os.OpenFile(disk, flags, 0)
	if err != nil {
		return failed("disk %s: %v", disk, err)
	}
	defer f.Close()

	var read, written atomic.Int64
	rep.watch(func() proto.Progress {
		return proto.Progress{Done: read.Load(), Total: total, Written: written.Load(), Fetched: read.Load()}
	})
	rep.start(ctx)
	h := digest.New()
	src := bufio.NewReaderSize(io.TeeReader(countRead(ctxio.Reader(ctx, body), &read), h), ioBlock)
	head, _ := src.Peek(4)
	var dec io.Reader
	switch format := proto.FormatOf(head); format {
	case proto.FormatZstd:
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(1<<31), zstd.WithDecoderLowmem(false))
		if err != nil {
			return failed("disk image %s: zstd: %v", c.Image, err)
		}
		defer zr.Close()
		dec = zr
	case proto.FormatGzip:
		zr, err := gzip.NewReader(src)
		if err != nil {
			return failed("disk image %s: gzip: %v", c.Image, err)
		}
		defer zr.Close()
		dec = zr
	default:
		return failed("disk image %s is neither gzip nor zstd (it starts with % x); nothing was written", c.Image, head)
	}
	began := time.Now()
	fd := f.Fd()
	n, err := writeAll(f, dec, &written, func(off, n int64) { startWriteback(fd, off, n) })
	if err != nil {
		return failed("loading %s onto %s: %v after %d bytes written; the disk is now partly written", c.Image, disk, err, n)
	}
	// Whatever follows the compressed stream is part of the checksum.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return failed("loading %s onto %s: %v; the disk is now partly written", c.Image, disk, err)
	}
	wrote := time.Since(began)
	if err := f.Sync(); err != nil {
		return failed("loading %s onto %s: sync: %v", c.Image, disk, err)
	}
	r.log.Info("image written", "id", c.ID, "image", c.Image, "disk", disk, "bytes", n,
		"write", wrote.Round(time.Millisecond), "sync", (time.Since(began) - wrote).Round(time.Millisecond))
	got := h.Hex()
	if got != want {
		return failed("loading %s onto %s: checksum mismatch: received sha256 %s, the image is %s; the disk holds %d bytes that cannot be trusted: load again",
			c.Image, disk, got, want, n)
	}
	if fi.Mode()&os.ModeDevice != 0 {
		if err := rereadPartitions(f); err != nil {
			r.log.Warn("re-reading the partition table", "disk", disk, "err", err)
		}
	}
	final := proto.Progress{Done: read.Load(), Total: total, Written: n, Fetched: read.Load()}
	return proto.Report{State: proto.StateDone, Reply: proto.ReplyOK, SHA256: got, Progress: &final}
}

// imageSum is the checksum to verify the image by: the appliance's (h), the
// one the command was queued with, which must not differ.
func imageSum(c proto.Command, h http.Header) (string, error) {
	sum := h.Get(proto.HeaderSHA256)
	if c.SHA256 != "" && sum != c.SHA256 {
		return "", fmt.Errorf("disk image %s changed since the command was queued (sha256 %s, now %s); nothing was written", c.Image, c.SHA256, sum)
	}
	if sum == "" {
		sum = c.SHA256
	}
	return sum, nil
}

// writeAll copies src to dst in ioBlock writes, decompression and writing
// overlapping: one goroutine fills buffers, this one writes them, and
// calls wrote (if set) with each write's span of dst.
func writeAll(dst io.Writer, src io.Reader, written *atomic.Int64, wrote func(off, n int64)) (int64, error) {
	type chunk struct {
		b   []byte
		err error
	}
	const depth = 3
	free := make(chan []byte, depth)
	for range depth {
		free <- make([]byte, ioBlock)
	}
	full := make(chan chunk, depth)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-quit:
				return
			}
			n, err := io.ReadFull(src, b)
			if n > 0 {
				full <- chunk{b: b[:n]}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return
			}
			if err != nil {
				full <- chunk{err: err}
				return
			}
		}
	}()
	var total int64
	for c := range full {
		if c.err != nil {
			return total, c.err
		}
		n, err := dst.Write(c.b)
		if wrote != nil && n > 0 {
			wrote(total, int64(n))
		}
		total += int64(n)
		written.Store(total)
		if err != nil {
			return total, err
		}
		free <- c.b[:cap(c.b)]
	}
	return total, nil
}

// countRead counts the bytes read from r into n: what is read is written
// to a countWriter that keeps nothing.
func countRead(r io.Reader, n *atomic.Int64) io.Reader {
	return io.TeeReader(r, countWriter{io.Discard, n})
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
