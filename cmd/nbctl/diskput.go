package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/rc/proto"
)

// nbctl disk put: whatever a disk image comes as (a raw disk, gzip or zstd
// of one, a qcow2 image), the appliance stores it as a chunked image
// (internal/chunkimg), made here as it is uploaded: the appliance checks
// every chunk before it keeps it, and RCs load it chunk by chunk, verified,
// skipping what their disk already holds.

// Input formats besides proto's: told apart by their first bytes, never by
// the file's name.
const (
	formatQcow2 = "qcow2"
	formatRaw   = "raw"
)

// qcow2Magic starts a qcow2 image.
const qcow2Magic = "QFI\xfb"

// sniff names the format of a file that starts with head: one of proto's,
// qcow2, or raw (anything else: a disk as it is).
func sniff(head []byte) string {
	if f := proto.FormatOf(head); f != "" {
		return f
	}
	if bytes.HasPrefix(head, []byte(qcow2Magic)) {
		return formatQcow2
	}
	return formatRaw
}

func (k *cli) diskPut(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("disk put", flag.ContinueOnError)
	chunkSize := fs.Int64("chunk-size", chunkimg.DefaultChunkSize, fmt.Sprintf("bytes of disk per chunk, %d to %d", chunkimg.MinChunkSize, chunkimg.MaxChunkSize))
	asIs := fs.Bool("as-is", false, "store a gzip or zstd FILE unchanged, as one stream (loaded whole, without per-chunk checks or delta)")
	if err := parseFlags(fs, args, 2, 2); err != nil {
		return err
	}
	if *chunkSize < chunkimg.MinChunkSize || *chunkSize > chunkimg.MaxChunkSize {
		return fmt.Errorf("--chunk-size %d: want %d to %d: %w", *chunkSize, chunkimg.MinChunkSize, chunkimg.MaxChunkSize, errUsage)
	}
	name, file := fs.Arg(0), fs.Arg(1)
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	format := sniff(fileHead(f))
	var img proto.DiskImage
	switch {
	case format == proto.FormatChunked:
		img, err = k.putAsIs(ctx, name, f, format)
	case *asIs && format != proto.FormatZstd && format != proto.FormatGzip:
		return fmt.Errorf("--as-is stores a gzip or zstd stream; %s is %s: %w", file, format, errUsage)
	case *asIs:
		img, err = k.putAsIs(ctx, name, f, format)
	default:
		var src io.Reader
		var done func()
		src, done, err = rawDisk(ctx, f, format)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		defer done()
		img, err = k.putChunked(ctx, name, src, *chunkSize)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(k.out, "stored %s: %s, %s, sha256 %s\n", img.Name, img.Format, bytesize(img.Size), img.SHA256)
	if img.Format == proto.FormatChunked {
		fmt.Fprintf(k.out, "  from %s %s: a disk of %s in %d chunks of %s, %s of them zero\n",
			format, file, bytesize(img.DiskSize), img.Chunks, bytesize(img.ChunkSize), zeroShare(img))
	}
	return nil
}

// putAsIs uploads f unchanged, with the checksum that names it: a chunked
// image's manifest digest, else the file's SHA-256.
func (k *cli) putAsIs(ctx context.Context, name string, f *os.File, format string) (proto.DiskImage, error) {
	var sum string
	if format == proto.FormatChunked {
		fi, err := f.Stat()
		if err != nil {
			return proto.DiskImage{}, err
		}
		_, mb, err := chunkimg.ReadManifest(f, fi.Size())
		if err != nil {
			return proto.DiskImage{}, fmt.Errorf("%s starts as a chunked image but is not one: %w", f.Name(), err)
		}
		sum = chunkimg.Digest(mb)
	} else {
		s, _, err := digest.Reader(f)
		if err != nil {
			return proto.DiskImage{}, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return proto.DiskImage{}, err
		}
		sum = s
	}
	return k.c.PutDiskImage(ctx, name, f, sum)
}

// rawDisk reads the disk that f, of format, holds; done releases what it
// took (a decompressor, a converted copy).
func rawDisk(ctx context.Context, f *os.File, format string) (io.Reader, func(), error) {
	switch format {
	case proto.FormatZstd:
		zr, err := zstd.NewReader(f, zstd.WithDecoderMaxWindow(1<<31), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	case proto.FormatGzip:
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case formatQcow2:
		return qcow2Raw(ctx, f.Name())
	}
	return f, func() {}, nil
}

// qcow2Raw converts a qcow2 image with qemu-img into a raw file in a
// temporary directory ($TMPDIR), removed by done.
func qcow2Raw(ctx context.Context, file string) (io.Reader, func(), error) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil, nil, fmt.Errorf("a qcow2 image: converting it needs qemu-img (Debian: qemu-utils), which is not on PATH; or convert it first: qemu-img convert -O raw %s disk.raw", file)
	}
	dir, err := os.MkdirTemp("", "nbctl-qcow2-")
	if err != nil {
		return nil, nil, fmt.Errorf("qcow2: %w", err)
	}
	raw := filepath.Join(dir, "disk.raw")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, "convert", "-O", "raw", file, raw)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("qemu-img convert: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	r, err := os.Open(raw)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("qcow2: %w", err)
	}
	return r, func() { r.Close(); os.RemoveAll(dir) }, nil
}

// putChunked uploads the disk read from src as a chunked image made as it
// goes; its digest follows in a trailer.
func (k *cli) putChunked(ctx context.Context, name string, src io.Reader, chunkSize int64) (proto.DiskImage, error) {
	img, _, err := chunkimg.Upload(ctx, src, chunkSize, nil, func(ctx context.Context, body io.Reader, trailer http.Header) (proto.DiskImage, error) {
		return k.c.PutDiskImageTrailer(ctx, name, body, trailer)
	})
	return img, err
}

// zeroShare is the share of an image's chunks that are zero, in percent.
func zeroShare(i proto.DiskImage) string {
	if i.Chunks == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(i.ZeroChunks)/float64(i.Chunks))
}
