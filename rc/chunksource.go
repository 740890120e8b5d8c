package rc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/rc/proto"
)

// Frame is one stored chunk's zstd frame as a ChunkSource delivers it:
// untrusted bytes until the loader has decoded them and checked them
// against the manifest's hash.
type Frame struct {
	Index int    // the chunk's index in the manifest
	Data  []byte // its frame; the receiver owns it
}

// ChunkSource is where the frames of a chunked image come from: HTTP range
// requests to the appliance (httpSource), or, beside it, a multicast
// session. The loader scans the disk, asks for the chunks it still needs,
// verifies every frame it receives before writing it, and asks again for
// those that fail.
type ChunkSource interface {
	// Fetch sends to out the frame of every chunk in want (indices of
	// stored chunks, ascending), in any order, each at least once (the
	// loader drops repeats). It returns nil once all were sent; ctx's
	// error when ctx ends; another error when it cannot get them, such as
	// the appliance unreachable for too long or the image gone.
	Fetch(ctx context.Context, want []int, out chan<- Frame) error
}

// Bounds of the HTTP chunk source.
const (
	// maxRangeRequest bounds one range request: consecutive needed chunks
	// go in one request up to this many bytes of frames.
	maxRangeRequest = 64 << 20
	// stallTimeout ends a request that receives nothing for this long (an
	// appliance gone without a reset): it is retried like any other.
	stallTimeout = 30 * time.Second
	// DefaultLoadRetry is how long a load keeps retrying an appliance that
	// does not answer before it fails.
	DefaultLoadRetry = 5 * time.Minute
)

// manifestPath is the URL path of a chunked image's manifest.
func manifestPath(name string) string { return proto.DiskImagePath(name) + "/manifest" }

// retrier paces retries of an appliance that fails or cannot be reached:
// backoff with jitter, reset by progress, given up after limit without
// any.
type retrier struct {
	limit, min, max time.Duration
	log             *slog.Logger
	what            string
	since           time.Time // the last progress
	backoff         time.Duration
}

func newRetrier(cfg Config, log *slog.Logger, what string) *retrier {
	return &retrier{limit: cfg.LoadRetry, min: cfg.MinBackoff, max: cfg.MaxBackoff, log: log, what: what, since: time.Now(), backoff: cfg.MinBackoff}
}

// progressed notes that the appliance answered.
func (t *retrier) progressed() {
	t.since = time.Now()
	t.backoff = t.min
}

// wait decides on err: nil after a pause if retrying may help, else the
// error to fail with.
func (t *retrier) wait(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case permanent(err) || errors.Is(err, errReplaced) || errors.Is(err, errNoRange):
		return err
	case time.Since(t.since) > t.limit:
		return fmt.Errorf("%s: the appliance failed or was unreachable for %v: %w", t.what, t.limit, err)
	}
	d := t.backoff/2 + rand.N(t.backoff/2+1)
	t.log.Warn(t.what+" failed; retrying", "err", err, "in", d.Round(time.Millisecond))
	sleep(ctx, d)
	t.backoff = min(2*t.backoff, t.max)
	return ctx.Err()
}

// fetchManifest gets image's manifest and checks it is the one named by
// want: the digest of its bytes. The appliance restarting is waited for.
func fetchManifest(ctx context.Context, c *client, cfg Config, log *slog.Logger, image, want string) (*chunkimg.Manifest, error) {
	rt := newRetrier(cfg, log, "fetching the manifest of "+image)
	for {
		b, err := c.getManifest(ctx, image)
		if err == nil {
			if got := chunkimg.Digest(b); got != want {
				return nil, fmt.Errorf("the manifest of %s has sha256 %s, the command names %s", image, got, want)
			}
			return chunkimg.ParseManifest(b)
		}
		if err := rt.wait(ctx, err); err != nil {
			return nil, err
		}
	}
}

// headImage asks for a disk image's headers only: its format and sum.
func (c *client) headImage(ctx context.Context, name string) (http.Header, error) {
	req, err := c.newRequest(ctx, http.MethodHead, proto.DiskImagePath(name), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Method: http.MethodHead, Path: proto.DiskImagePath(name), Status: resp.StatusCode, Message: resp.Status}
	}
	return resp.Header, nil
}

func (c *client) getManifest(ctx context.Context, image string) ([]byte, error) {
	req, err := c.newRequest(ctx, http.MethodGet, manifestPath(image), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, chunkimg.MaxManifest+1))
	if err == nil && len(b) > chunkimg.MaxManifest {
		err = fmt.Errorf("more than %d bytes", chunkimg.MaxManifest)
	}
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", manifestPath(image), err)
	}
	return b, nil
}

// httpSource fetches frames from the appliance with range requests of the
// image file, consecutive frames in one request.
type httpSource struct {
	c      *client
	cfg    Config
	log    *slog.Logger
	image  string
	digest string // the image's; an answer naming another means it was replaced
	m      *chunkimg.Manifest
	bufs   *frameBufs // where frame buffers come from (nil: new ones)
}

// frameBufs recycles frame buffers between a source and the loader, which
// is done with a frame once it wrote its chunk: no buffer to clear and
// collect for every chunk.
type frameBufs struct {
	p    sync.Pool
	size int64 // every buffer's capacity: the largest frame
}

// get returns a buffer of n bytes.
func (b *frameBufs) get(n int64) []byte {
	if b == nil {
		return make([]byte, n)
	}
	if v, ok := b.p.Get().(*[]byte); ok && int64(cap(*v)) >= n {
		return (*v)[:n]
	}
	return make([]byte, n, max(n, b.size))
}

// put takes back a buffer that get returned.
func (b *frameBufs) put(d []byte) {
	if b != nil {
		b.p.Put(&d)
	}
}

// errReplaced: the image changed on the appliance during the load.
var errReplaced = errors.New("the image was replaced on the appliance during the load")

// Fetch implements ChunkSource.
func (s *httpSource) Fetch(ctx context.Context, want []int, out chan<- Frame) error {
	rt := newRetrier(s.cfg, s.log, "fetching chunks of "+s.image)
	for _, run := range s.runs(want) {
		for len(run) > 0 {
			n, err := s.fetchRun(ctx, run, out)
			run = run[n:]
			if n > 0 {
				rt.progressed()
			}
			if err == nil {
				continue
			}
			if err := rt.wait(ctx, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// runs cuts want into runs of chunks whose frames follow each other in the
// file, each at most maxRangeRequest bytes (or one frame).
func (s *httpSource) runs(want []int) [][]int {
	var runs [][]int
	var run []int
	var end, size int64
	for _, i := range want {
		c := s.m.Chunks[i]
		if len(run) > 0 && (c.Offset != end || size+c.Size > maxRangeRequest) {
			runs, run, size = append(runs, run), nil, 0
		}
		run = append(run, i)
		end, size = c.Offset+c.Size, size+c.Size
	}
	if len(run) > 0 {
		runs = append(runs, run)
	}
	return runs
}

// fetchRun gets the frames of run in one request and sends them to out as
// they come. It returns how many it sent, and why it stopped short.
func (s *httpSource) fetchRun(ctx context.Context, run []int, out chan<- Frame) (int, error) {
	first, last := s.m.Chunks[run[0]], s.m.Chunks[run[len(run)-1]]
	start, end := first.Offset, last.Offset+last.Size-1
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	path := proto.DiskImagePath(s.image)
	req, err := s.c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end))
	resp, err := s.c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusPartialContent && resp.StatusCode/100 == 2:
		return 0, fmt.Errorf("GET %s: HTTP %d to a range request: %w", path, resp.StatusCode, errNoRange)
	case resp.StatusCode != http.StatusPartialContent:
		return 0, statusError(resp)
	}
	if sum := resp.Header.Get(proto.HeaderSHA256); sum != "" && sum != s.digest {
		return 0, fmt.Errorf("GET %s: sha256 %s, the load's is %s: %w", path, sum, s.digest, errReplaced)
	}
	if got := resp.Header.Get("Content-Range"); !strings.HasPrefix(got, "bytes "+strconv.FormatInt(start, 10)+"-") {
		return 0, fmt.Errorf("GET %s: asked for bytes %d-%d, got %q: %w", path, start, end, got, errNoRange)
	}
	body := newStallReader(resp.Body, stallTimeout, cancel)
	defer body.stop()
	for n, i := range run {
		f := Frame{Index: i, Data: s.bufs.get(s.m.Chunks[i].Size)}
		_, err := io.ReadFull(body, f.Data)
		body.stop()
		if err != nil {
			return n, fmt.Errorf("GET %s: chunk %d: %w", path, i, err)
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
	return len(run), nil
}

// errNoRange: the appliance did not answer a range request with the range.
var errNoRange = errors.New("the appliance does not serve byte ranges")

// stallReader cancels a transfer that receives nothing for a while.
type stallReader struct {
	r     io.Reader
	idle  time.Duration
	timer *time.Timer
}

func newStallReader(r io.Reader, idle time.Duration, cancel func()) *stallReader {
	return &stallReader{r: r, idle: idle, timer: time.AfterFunc(idle, cancel)}
}

// Read waits at most idle for bytes.
func (s *stallReader) Read(p []byte) (int, error) {
	s.timer.Reset(s.idle)
	return s.r.Read(p)
}

// stop stops the clock until the next Read: the wait for the loader to
// take a frame is not a stall of the appliance.
func (s *stallReader) stop() { s.timer.Stop() }
