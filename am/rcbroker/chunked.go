package rcbroker

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/rc/proto"
)

// Chunked images (internal/chunkimg): the store reads only a file's footer
// and manifest to describe it, and keeps what a listing shows of it while
// the file is unchanged, so that listing many large images reads no frame.

// manifestInfo is what a listing shows of a chunked image's manifest.
type manifestInfo struct {
	digest     string
	diskSize   int64
	chunkSize  int64
	chunks     int
	zeroChunks int
	// The file it was read from: valid while these match.
	size  int64
	mtime time.Time
}

func infoOf(m *chunkimg.Manifest, digest string) manifestInfo {
	return manifestInfo{digest: digest, diskSize: m.DiskSize, chunkSize: m.ChunkSize, chunks: len(m.Chunks), zeroChunks: m.ZeroChunks()}
}

// at is i as read from the file fi.
func (i manifestInfo) at(fi os.FileInfo) manifestInfo {
	i.size, i.mtime = fi.Size(), fi.ModTime()
	return i
}

func (i manifestInfo) valid(fi os.FileInfo) bool {
	return i.size == fi.Size() && i.mtime.Equal(fi.ModTime())
}

func (i manifestInfo) fill(img *proto.DiskImage) {
	img.SHA256, img.DiskSize, img.ChunkSize, img.Chunks, img.ZeroChunks = i.digest, i.diskSize, i.chunkSize, i.chunks, i.zeroChunks
}

// describeChunked completes img, the chunked image open as f, from its
// manifest. A file that is no valid chunked image (one dropped in by hand)
// is an error wrapping chunkimg.ErrFormat.
func (s *imageStore) describeChunked(f *os.File, fi os.FileInfo, img proto.DiskImage) (proto.DiskImage, error) {
	s.mu.Lock()
	i, ok := s.manifests[f.Name()]
	s.mu.Unlock()
	if !ok || !i.valid(fi) {
		m, b, err := chunkimg.ReadManifest(f, fi.Size())
		if err != nil {
			return img, fmt.Errorf("rcbroker: disk image %q: %w", img.Name, err)
		}
		i = infoOf(m, chunkimg.Digest(b)).at(fi)
		s.mu.Lock()
		s.manifests[f.Name()] = i
		s.mu.Unlock()
	}
	i.fill(&img)
	return img, nil
}

// forget drops the cached manifest of the file at path; the caller holds mu.
func (s *imageStore) forget(path string) { delete(s.manifests, path) }

// getImageManifest answers a chunked image's manifest, its bytes exactly
// as stored (their SHA-256 is the image's identity), to whoever may fetch
// the image itself.
func (b *Broker) getImageManifest(c *gin.Context) {
	f, name, format, ok := b.openToLoad(c)
	if !ok {
		return
	}
	defer f.Close()
	if format != proto.FormatChunked {
		b.apiError(c, apierr.New(http.StatusConflict, "disk image %q is one %s stream, not a chunked image: it has no manifest; GET the image itself",
			clip(name), format))
		return
	}
	fi, err := f.Stat()
	if err != nil {
		b.apiError(c, fmt.Errorf("rcbroker: disk image %q: %w", name, err))
		return
	}
	_, mb, err := chunkimg.ReadManifest(f, fi.Size())
	if err != nil {
		b.apiError(c, fmt.Errorf("rcbroker: disk image %q: %w", name, err))
		return
	}
	sum := chunkimg.Digest(mb)
	h := c.Writer.Header()
	h.Set(proto.HeaderSHA256, sum)
	h.Set(proto.HeaderFormat, format)
	h.Set("ETag", `"`+sum+`"`)
	c.Data(http.StatusOK, "application/json", mb)
}
