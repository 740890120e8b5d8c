package main

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

func putDisk() []byte {
	return zstdtest.MixedDisk(19*chunkimg.MinChunkSize+4096, chunkimg.MinChunkSize, "rzt", 16)
}

// TestDiskPut: nbctl disk put stores a raw disk, gzip and zstd of one, a
// qcow2 image and a chunked image as a chunked image of that disk, told by
// their first bytes, never their names; what it cannot read is refused
// with nothing stored.
func TestDiskPut(t *testing.T) {
	a := apptest.New(t, apptest.Options{})
	a.Start()
	c := amclient.New(a.URL).WithToken(a.Token)
	ctx := t.Context()
	dir := t.TempDir()
	raw := putDisk()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		testenv.WriteFile(t, p, data)
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	chunked, chunkedDigest := zstdtest.Chunked(t, raw, 128<<10)
	const zeros = 7 // chunks 1, 4, ... 19 of 64 KiB; in chunks of 128 KiB or more, none is all zeros
	for _, tc := range []struct {
		name, file, format string
		chunkSize          int64
		zero               int
		sum                string // the digest, when known before
	}{
		{"raw", file("disk.img", raw), "raw", chunkimg.MinChunkSize, zeros, ""},
		{"raw named zst", file("raw.zst", raw), "raw", chunkimg.MinChunkSize, zeros, ""},
		{"gzip", file("disk.img.gz", gz.Bytes()), "gzip", chunkimg.MinChunkSize, zeros, ""},
		{"zstd", file("disk.img.zst", zstdtest.Compress(t, raw)), "zstd", chunkimg.MinChunkSize, zeros, ""},
		{"zstd named gz, default chunk size", file("zstd.gz", zstdtest.Compress(t, raw)), "zstd", chunkimg.DefaultChunkSize, 0, ""},
		{"qcow2", qcow2File(t, file("for-qcow2.img", raw)), "qcow2", chunkimg.MinChunkSize, zeros, ""},
		{"chunked, as is", file("disk.nbi", chunked), "chunked", 128 << 10, 0, chunkedDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.file == "" {
				testenv.Missing(t, "needs qemu-img to make a qcow2 image (Debian: qemu-utils; make test installs it)")
			}
			name := strings.ReplaceAll(tc.name, " ", "-")
			name = strings.ReplaceAll(name, ",", "")
			args := []string{"disk", "put", name, tc.file}
			if tc.chunkSize != chunkimg.DefaultChunkSize && tc.format != proto.FormatChunked {
				args = []string{"disk", "put", "--chunk-size", "65536", name, tc.file}
			}
			out := nbctlOK(ctx, t, a, args...)
			if !strings.Contains(out, "stored "+name+": chunked") || !strings.Contains(out, "from "+tc.format+" "+tc.file) {
				t.Errorf("nbctl said %q", out)
			}
			var stored bytes.Buffer
			s, err := c.GetDiskImage(ctx, name, &stored)
			if err != nil {
				t.Fatal(err)
			}
			m, mb, err := chunkimg.ReadManifest(bytes.NewReader(stored.Bytes()), int64(stored.Len()))
			if err != nil || chunkimg.Digest(mb) != s || (tc.sum != "" && s != tc.sum) {
				t.Fatalf("stored image: %v, digest %s", err, s)
			}
			if !bytes.Equal(zstdtest.Disk(t, stored.Bytes()), raw) {
				t.Errorf("the stored image is not the disk")
			}
			if m.ChunkSize != tc.chunkSize || m.ZeroChunks() != tc.zero {
				t.Errorf("chunks of %d, %d zero; want %d, %d zero", m.ChunkSize, m.ZeroChunks(), tc.chunkSize, tc.zero)
			}
			if !strings.Contains(out, s) {
				t.Errorf("nbctl did not say the digest %s: %q", s, out)
			}
		})
	}
	list := nbctlOK(ctx, t, a, "disk", "list")
	// 20 chunks of 64 KiB, 7 zero: 35%.
	if !apptest.HasLine(list, "raw ", "chunked", "1.2 MiB", " 20 ", "35%") || !apptest.HasLine(list, "zstd-named-gz-default-chunk-size", " 2 ", "0%") ||
		!strings.Contains(list, "STORED") || !strings.Contains(list, "ZERO") {
		t.Errorf("disk list:\n%s", list)
	}

	before, err := c.DiskImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cut := gz.Bytes()[:gz.Len()/2]
	notChunked := append([]byte(proto.ChunkedMagic), raw[:1000]...)
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"a cut gzip stream", []string{"disk", "put", "raw", file("cut.gz", cut)}, "reading the disk"},
		{"a chunked image's start, then no image", []string{"disk", "put", "raw", file("bad.nbi", notChunked)}, "not a valid chunked image"},
		{"--as-is of a raw disk", []string{"disk", "put", "--as-is", "raw", file("as-is.img", raw)}, "gzip or zstd stream"},
		{"a chunk size out of bounds", []string{"disk", "put", "--chunk-size", "1000", "raw", file("small.img", raw)}, "--chunk-size 1000"},
		{"no such file", []string{"disk", "put", "raw", filepath.Join(dir, "nosuch")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, err := nbctl(ctx, a, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("nbctl %s: %v, want an error saying %q\n%s%s", strings.Join(tc.args, " "), err, tc.says, out, errs)
			}
		})
	}
	after, err := c.DiskImages(ctx)
	if err != nil || len(after) != len(before) {
		t.Fatalf("images after the refusals: %v, %v", after, err)
	}
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("image changed by a refused put: %+v, was %+v", after[i], before[i])
		}
	}
	// The appliance left no upload behind (its handler may end just after
	// nbctl saw the refusal: wait for it).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var left []string
		err := filepath.WalkDir(a.Dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".upload-") {
				left = append(left, p)
			}
			return nil // a file removed meanwhile
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left 30s after the refused puts: %v", left)
		}
	}
}

// TestDiskPutQcow2WithoutQemuImg: without qemu-img, a qcow2 image is
// refused with what to install, and nothing is stored.
func TestDiskPutQcow2WithoutQemuImg(t *testing.T) {
	src := qcow2File(t, filepath.Join(t.TempDir(), "disk.img"))
	if src == "" {
		testenv.Missing(t, "needs qemu-img to make a qcow2 image (Debian: qemu-utils; make test installs it)")
	}
	a := apptest.New(t, apptest.Options{})
	a.Start()
	t.Setenv("PATH", t.TempDir())
	_, _, err := nbctl(t.Context(), a, "disk", "put", "q", src)
	if err == nil || !strings.Contains(err.Error(), "qemu-img") || !strings.Contains(err.Error(), "qemu-utils") {
		t.Errorf("disk put of a qcow2 image without qemu-img: %v", err)
	}
	if imgs, err := amclient.New(a.URL).WithToken(a.Token).DiskImages(t.Context()); err != nil || len(imgs) != 0 {
		t.Errorf("images: %v, %v", imgs, err)
	}
}

// qcow2File converts the raw disk at path (made of putDisk if missing)
// into a qcow2 image beside it, or returns "" without qemu-img.
func qcow2File(t *testing.T, path string) string {
	t.Helper()
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return ""
	}
	if _, err := os.Stat(path); err != nil {
		testenv.WriteFile(t, path, putDisk())
	}
	out := path + ".qcow2"
	if b, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "qcow2", path, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	return out
}
