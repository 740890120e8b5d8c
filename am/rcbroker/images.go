package rcbroker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/ctxio"
	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/rc/proto"
)

// Disk images live in one directory, one file per image, named by its
// format: NAME.nbi (chunked, internal/chunkimg), NAME.zst or NAME.gz (one
// stream of the whole disk). Beside a single stream, NAME.ext.sha256 holds
// its checksum in sha256sum(1) format; it is valid only if it is not older
// than the image (an operator may drop an image in by hand: its checksum is
// then computed once, when first asked for). A chunked image needs none:
// its identity is its manifest's digest, read from the file's end. Uploads
// go to .upload-* files and are renamed into place only when their checksum
// matches and, if chunked, every chunk decodes to its hash.

var extOf = map[string]string{proto.FormatChunked: ".nbi", proto.FormatZstd: ".zst", proto.FormatGzip: ".gz"}

// findOrder is the order find tries the formats in, should a name have
// several files (put leaves one; an operator may drop in more).
var findOrder = []string{proto.FormatChunked, proto.FormatZstd, proto.FormatGzip}

const (
	uploadPrefix = ".upload-"
	sumSuffix    = ".sha256"
	copyBuffer   = 1 << 20
)

type imageStore struct {
	dir string
	log *slog.Logger
	mu  sync.Mutex // serializes the rename of an upload and the sidecars
	// manifests caches what listings need of each chunked image's
	// manifest, by path, valid while the file's size and mtime match.
	manifests map[string]manifestInfo
}

func openImageStore(dir string, log *slog.Logger) (*imageStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("rcbroker: image dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("rcbroker: image dir: %w", err)
	}
	for _, e := range entries { // uploads and checksums cut short by a crash
		if strings.HasPrefix(e.Name(), uploadPrefix) || atomicfile.IsTemp(e.Name()) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &imageStore{dir: dir, log: log, manifests: map[string]manifestInfo{}}, nil
}

// checkImageName refuses what could escape the directory or collide with
// the store's own files.
func checkImageName(name string) error {
	if !imagename.ValidDisk(name) {
		return apierr.BadRequest("disk image name %q: %s", clip(name), imagename.DiskRule)
	}
	return nil
}

// find opens the image's file (chunked, then zstd, preferred should
// several exist).
func (s *imageStore) find(name string) (*os.File, string, error) {
	if err := checkImageName(name); err != nil {
		return nil, "", err
	}
	for _, format := range findOrder {
		f, err := os.Open(filepath.Join(s.dir, name+extOf[format]))
		if err == nil {
			return f, format, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("rcbroker: disk image %q: %w", name, err)
		}
	}
	return nil, "", fmt.Errorf("no disk image %q: %w", name, store.ErrNotFound)
}

// describe returns the image open as f, with its checksum from the sidecar,
// computing and saving it if the sidecar is missing or older than f.
func (s *imageStore) describe(f *os.File, name, format string) (proto.DiskImage, error) {
	fi, err := f.Stat()
	if err != nil {
		return proto.DiskImage{}, fmt.Errorf("rcbroker: disk image %q: %w", name, err)
	}
	img := proto.DiskImage{Name: name, Format: format, Size: fi.Size(), Modified: fi.ModTime().UTC()}
	if format == proto.FormatChunked {
		return s.describeChunked(f, fi, img)
	}
	sumPath := f.Name() + sumSuffix
	s.mu.Lock()
	if sfi, err := os.Stat(sumPath); err == nil && !sfi.ModTime().Before(fi.ModTime()) {
		if b, err := os.ReadFile(sumPath); err == nil {
			if sum, _, _ := strings.Cut(string(b), " "); digest.Valid(sum) {
				img.SHA256 = sum
			}
		}
	}
	s.mu.Unlock()
	if img.SHA256 != "" {
		return img, nil
	}
	sum, _, err := digest.Reader(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return img, fmt.Errorf("rcbroker: disk image %q: checksum: %w", name, err)
	}
	img.SHA256 = sum
	s.mu.Lock()
	defer s.mu.Unlock()
	// Save it only if the file is still the one summed.
	if cur, err := os.Stat(f.Name()); err == nil && os.SameFile(cur, fi) && cur.ModTime().Equal(fi.ModTime()) {
		if err := atomicfile.WriteFile(sumPath, []byte(img.SHA256+"  "+filepath.Base(f.Name())+"\n"), 0o600); err != nil {
			s.log.Warn("rc: saving an image checksum", "image", name, "err", err)
		}
	}
	return img, nil
}

// stat describes one image.
func (s *imageStore) stat(name string) (proto.DiskImage, error) {
	f, format, err := s.find(name)
	if err != nil {
		return proto.DiskImage{}, err
	}
	defer f.Close()
	return s.describe(f, name, format)
}

// list describes every image, by name.
func (s *imageStore) list() ([]proto.DiskImage, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("rcbroker: image dir: %w", err)
	}
	out := []proto.DiskImage{}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		for format, ext := range extOf {
			name, ok := strings.CutSuffix(e.Name(), ext)
			if !ok || checkImageName(name) != nil {
				continue
			}
			f, err := os.Open(filepath.Join(s.dir, e.Name()))
			if err != nil {
				continue // removed meanwhile
			}
			img, err := s.describe(f, name, format)
			f.Close()
			if errors.Is(err, chunkimg.ErrFormat) { // one broken file hides no other image
				s.log.Warn("rc: a disk image that is no valid chunked image", "image", name, "err", err)
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// put stores an upload read from r under name. want returns the checksum
// the uploader claims, asked only once r is read to its end (it may come in
// a trailer). Nothing replaces the current image unless the upload is
// complete, gzip, zstd or chunked, and matches that checksum; a chunked
// upload's checksum is its manifest's digest, and every one of its chunks
// must decode to the hash the manifest gives it.
func (s *imageStore) put(ctx context.Context, name string, r io.Reader, want func() string) (proto.DiskImage, error) {
	if err := checkImageName(name); err != nil {
		return proto.DiskImage{}, err
	}
	tmp, err := os.CreateTemp(s.dir, uploadPrefix+name+"-*")
	if err != nil {
		return proto.DiskImage{}, fmt.Errorf("rcbroker: upload %q: %w", name, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := digest.New()
	head := &headWriter{}
	file := &errWriter{w: tmp}
	n, err := io.CopyBuffer(io.MultiWriter(file, h, head), ctxio.Reader(ctx, r), make([]byte, copyBuffer))
	if err == nil {
		err = tmp.Sync() // a file system may refuse the blocks only now
		file.err = err
	}
	if err != nil {
		return proto.DiskImage{}, uploadError(name, n, file.err, err)
	}
	got := h.Hex()
	claim := strings.ToLower(strings.TrimSpace(want()))
	switch {
	case claim == "":
		return proto.DiskImage{}, apierr.BadRequest("upload of disk image %q: no %s header or trailer; the stored image is unchanged", name, proto.HeaderSHA256)
	case !digest.Valid(claim):
		return proto.DiskImage{}, apierr.BadRequest("upload of disk image %q: %s %q is not a hex SHA-256", name, proto.HeaderSHA256, clip(claim))
	}
	format := proto.FormatOf(head.b)
	var mi manifestInfo
	if format == proto.FormatChunked {
		m, d, err := chunkimg.Check(tmp, n)
		if err != nil {
			return proto.DiskImage{}, apierr.BadRequest("upload of disk image %q: %d bytes that are not a valid chunked image: %v; the stored image is unchanged", name, n, err)
		}
		mi = infoOf(m, d)
		if claim != d {
			return proto.DiskImage{}, apierr.BadRequest("upload of disk image %q: checksum mismatch: a chunked image whose manifest digest is %s, the uploader said %s; the stored image is unchanged",
				name, d, claim)
		}
		got = d
	}
	if claim != got {
		return proto.DiskImage{}, apierr.BadRequest("upload of disk image %q: checksum mismatch: %d bytes with sha256 %s, the uploader said %s; the stored image is unchanged",
			name, n, got, claim)
	}
	if format == "" {
		return proto.DiskImage{}, apierr.BadRequest("upload of disk image %q: neither gzip nor zstd nor a chunked image (it starts with % x)", name, head.b)
	}
	if err := tmp.Close(); err != nil {
		return proto.DiskImage{}, uploadError(name, n, err, err)
	}
	final := filepath.Join(s.dir, name+extOf[format])
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Rename(tmp.Name(), final); err != nil {
		return proto.DiskImage{}, fmt.Errorf("rcbroker: upload %q: %w", name, err)
	}
	tmp = nil
	if format != proto.FormatChunked {
		if err := atomicfile.WriteFile(final+sumSuffix, []byte(got+"  "+filepath.Base(final)+"\n"), 0o600); err != nil {
			s.log.Warn("rc: saving an image checksum", "image", name, "err", err)
		}
	}
	for other, ext := range extOf { // one name, one image
		if other != format {
			os.Remove(filepath.Join(s.dir, name+ext))
			os.Remove(filepath.Join(s.dir, name+ext+sumSuffix))
			s.forget(filepath.Join(s.dir, name+ext))
		}
	}
	s.syncDir()
	fi, err := os.Stat(final)
	if err != nil {
		return proto.DiskImage{}, fmt.Errorf("rcbroker: upload %q: %w", name, err)
	}
	img := proto.DiskImage{Name: name, Format: format, Size: n, SHA256: got, Modified: fi.ModTime().UTC()}
	if format == proto.FormatChunked {
		s.manifests[final] = mi.at(fi)
		mi.fill(&img)
	}
	return img, nil
}

// remove deletes an image and its checksum.
func (s *imageStore) remove(name string) error {
	if err := checkImageName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for _, ext := range extOf {
		err := os.Remove(filepath.Join(s.dir, name+ext))
		s.forget(filepath.Join(s.dir, name+ext))
		if err == nil {
			found = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rcbroker: remove disk image %q: %w", name, err)
		}
		os.Remove(filepath.Join(s.dir, name+ext+sumSuffix))
	}
	if !found {
		return fmt.Errorf("no disk image %q: %w", name, store.ErrNotFound)
	}
	s.syncDir()
	return nil
}

// uploadError says why an upload was not stored: the appliance's own disk
// (full: 507, which the uploader cannot fix by sending again; other write
// errors: 500), else the upload itself (400: it was cut short).
func uploadError(name string, n int64, werr, err error) error {
	switch {
	case errors.Is(werr, syscall.ENOSPC), errors.Is(werr, syscall.EDQUOT):
		return apierr.New(http.StatusInsufficientStorage, "upload of disk image %q: the appliance's disk image directory is full after %d bytes (%v); the stored image is unchanged",
			name, n, werr)
	case werr != nil:
		return fmt.Errorf("rcbroker: upload %q: writing it after %d bytes: %w; the stored image is unchanged", name, n, werr)
	}
	return apierr.BadRequest("upload of disk image %q cut short after %d bytes: %v; the stored image is unchanged", name, n, err)
}

// errWriter keeps the error of the writer it wraps: a copy's error may
// come from either side.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// headWriter keeps the first bytes written through it.
type headWriter struct{ b []byte }

func (w *headWriter) Write(p []byte) (int, error) {
	if n := 8 - len(w.b); n > 0 {
		w.b = append(w.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// ctxReadSeeker is ctxio.Reader for http.ServeContent, which seeks.
type ctxReadSeeker struct {
	ctx context.Context
	io.ReadSeeker
}

func (c ctxReadSeeker) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.ReadSeeker.Read(p)
}

// syncDir makes the directory's renames and removals durable. Best
// effort: the files themselves are synced already, so a failure is only
// logged.
func (s *imageStore) syncDir() {
	d, err := os.Open(s.dir)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.log.Warn("rc: syncing the image directory", "dir", s.dir, "err", err)
	}
}

// HTTP handlers.

func (b *Broker) listImages(c *gin.Context) {
	imgs, err := b.images.list()
	if err != nil {
		b.apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, imgs)
}

var contentType = map[string]string{proto.FormatZstd: "application/zstd", proto.FormatGzip: "application/gzip", proto.FormatChunked: "application/octet-stream"}

// openToLoad opens the image the request names, for a caller who may load
// it (imageAccess); it has answered the request when ok is false.
func (b *Broker) openToLoad(c *gin.Context) (f *os.File, name, format string, ok bool) {
	name = c.Param("name")
	if !b.imageAccess(c, name, proto.LoadImage) {
		return nil, "", "", false
	}
	f, format, err := b.images.find(name)
	if err != nil {
		b.apiError(c, err)
		return nil, "", "", false
	}
	return f, name, format, true
}

func (b *Broker) getImage(c *gin.Context) {
	f, name, format, ok := b.openToLoad(c)
	if !ok {
		return
	}
	defer f.Close()
	img, err := b.images.describe(f, name, format)
	if err != nil {
		b.apiError(c, err)
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", contentType[format])
	h.Set(proto.HeaderSHA256, img.SHA256)
	h.Set(proto.HeaderFormat, format)
	h.Set("ETag", `"`+img.SHA256+`"`)
	// A transfer in flight ends when the appliance stops, instead of
	// holding its shutdown.
	defer ctxio.CutOnDone(c.Request.Context(), c.Writer, true)()
	r := c.Request
	if r.Method != http.MethodHead {
		b.cfg.Metrics.ImagingSessionStarted()
		defer b.cfg.Metrics.ImagingSessionEnded()
	}
	if r.Method == http.MethodGet && r.Header.Get("Range") == "" && r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "" {
		// The RC's plain GET: the open file goes to net/http's own writer,
		// which hands it to the kernel (sendfile) instead of copying it
		// 32 KiB at a time through gin's. The file never changes under its
		// descriptor: uploads replace it by rename.
		h.Set("Content-Length", strconv.FormatInt(img.Size, 10))
		h.Set("Last-Modified", img.Modified.Format(http.TimeFormat))
		c.Writer.WriteHeader(http.StatusOK)
		c.Writer.WriteHeaderNow()
		n, err := io.Copy(apierr.RawWriter(c.Writer), io.LimitReader(f, img.Size))
		b.cfg.Metrics.ImagingBytes("load", n)
		if err != nil {
			b.log.Info("rc: disk image download cut short", "image", name, "client", peer.Name(c.Request), "err", err)
		}
		return
	}
	// ServeContent answers Range, conditional and HEAD requests; the
	// section reader keeps it to the size described.
	http.ServeContent(c.Writer, r, "", img.Modified, ctxReadSeeker{r.Context(), io.NewSectionReader(f, 0, img.Size)})
	b.cfg.Metrics.ImagingBytes("load", int64(max(0, c.Writer.Size())))
}

func (b *Broker) putImage(c *gin.Context) {
	name := c.Param("name")
	if err := checkImageName(name); err != nil {
		b.apiError(c, err)
		return
	}
	if !b.imageAccess(c, name, proto.SaveImage) {
		return
	}
	start := time.Now()
	req := c.Request
	defer ctxio.CutOnDone(c.Request.Context(), c.Writer, false)() // a stalled upload must not hold a shutdown
	b.cfg.Metrics.ImagingSessionStarted()
	defer b.cfg.Metrics.ImagingSessionEnded()
	img, err := b.images.put(req.Context(), name, req.Body, func() string {
		if v := req.Header.Get(proto.HeaderSHA256); v != "" {
			return v
		}
		return req.Trailer.Get(proto.HeaderSHA256)
	})
	if err != nil {
		b.log.Warn("rc: disk image upload refused", "image", name, "client", peer.Name(c.Request), "err", err)
		b.apiError(c, err)
		return
	}
	b.cfg.Metrics.ImagingBytes("save", img.Size)
	b.log.Info("rc: disk image stored", "image", name, "format", img.Format, "size", img.Size, "sha256", img.SHA256,
		"took", time.Since(start).Round(time.Millisecond), "client", peer.Name(c.Request))
	c.JSON(http.StatusCreated, img)
}

func (b *Broker) deleteImage(c *gin.Context) {
	if err := b.images.remove(c.Param("name")); err != nil {
		b.apiError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
