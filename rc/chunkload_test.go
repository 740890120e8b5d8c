package rc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

const testChunk = chunkimg.MinChunkSize

// chunkImage is a chunked image made for a test, and what it was made of.
type chunkImage struct {
	raw      []byte
	file     []byte
	m        *chunkimg.Manifest
	manifest []byte
	digest   string
}

// testDisk is n chunks (the last one short by a little) of zero, random
// and text chunks.
func testDisk(n int) []byte {
	return zstdtest.MixedDisk(n*testChunk-1000, testChunk, "zrtr", 16)
}

func makeChunkImage(t *testing.T, raw []byte) chunkImage {
	t.Helper()
	var buf bytes.Buffer
	w, err := chunkimg.NewWriter(&buf, testChunk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m, mb, err := chunkimg.ReadManifest(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return chunkImage{raw: raw, file: buf.Bytes(), m: m, manifest: mb, digest: chunkimg.Digest(mb)}
}

// fakeImages is an appliance that serves one chunked image as netbootd
// does (the manifest; the file, with ranges), can damage frames, and can
// die mid-transfer and come back on the same address.
type fakeImages struct {
	t   *testing.T
	img chunkImage

	mu       sync.Mutex
	manifest []byte      // served instead of the image's, if not nil
	damage   map[int]int // chunk -> how many more times its frame is damaged (-1 always)
	dieAfter int64       // frame bytes served in all before the appliance dies (0 never)
	comeBack time.Duration
	served   int64
	starts   []int64 // the start of every range asked for
	dead     chan struct{}

	noFormat bool // no X-Image-Format: the RC tells by the first bytes

	addr string
	hs   *http.Server
}

func newFakeImages(t *testing.T, img chunkImage) *fakeImages {
	f := &fakeImages{t: t, img: img, damage: map[int]int{}, dead: make(chan struct{})}
	f.serve("127.0.0.1:0")
	t.Cleanup(f.stop)
	return f
}

func (f *fakeImages) url() string { return "http://" + f.addr }

func (f *fakeImages) serve(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/disk-images/img/manifest", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		b := f.manifest
		f.mu.Unlock()
		if b == nil {
			b = f.img.manifest
		}
		w.Header().Set(proto.HeaderSHA256, f.img.digest)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /api/v1/disk-images/img", f.serveImage)
	mux.HandleFunc("POST /api/v1/rc/commands/{id}/report", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	f.mu.Lock()
	f.addr = ln.Addr().String()
	f.hs = &http.Server{Handler: mux}
	hs := f.hs
	f.mu.Unlock()
	go func() { _ = hs.Serve(ln) }()
}

func (f *fakeImages) stop() {
	f.mu.Lock()
	hs := f.hs
	f.mu.Unlock()
	hs.Close()
}

// serveImage serves the file, its frames damaged as asked, until the
// appliance dies.
func (f *fakeImages) serveImage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(proto.HeaderSHA256, f.img.digest)
	if !f.noFormat {
		w.Header().Set(proto.HeaderFormat, proto.FormatChunked)
	}
	data := f.img.file
	var start int64
	if rg := r.Header.Get("Range"); rg != "" {
		var end int64
		if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &start, &end); err != nil {
			http.Error(w, "bad range "+rg, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.starts = append(f.starts, start)
		data = bytes.Clone(data)
		for i, c := range f.img.m.Chunks {
			if n := f.damage[i]; n != 0 && !c.Zero && c.Offset >= start && c.Offset+c.Size <= end+1 {
				data[c.Offset+c.Size/2] ^= 0x40
				if n > 0 {
					f.damage[i] = n - 1
				}
			}
		}
		f.mu.Unlock()
	}
	body := &dyingReader{ReadSeeker: bytes.NewReader(data), f: f, ranged: r.Header.Get("Range") != ""}
	http.ServeContent(w, r, "", time.Time{}, body)
	if body.died {
		// What was served reaches the RC before the connection closes.
		_ = http.NewResponseController(w).Flush()
		f.die()
	}
}

// dyingReader counts the frame bytes served and kills the appliance once
// it served dieAfter.
type dyingReader struct {
	io.ReadSeeker
	f      *fakeImages
	ranged bool
	died   bool
}

func (d *dyingReader) Read(p []byte) (int, error) {
	if !d.ranged {
		return d.ReadSeeker.Read(p)
	}
	f := d.f
	f.mu.Lock()
	room := int64(len(p))
	if f.dieAfter > 0 {
		room = f.dieAfter - f.served
	}
	f.mu.Unlock()
	if room <= 0 {
		d.died = true
		return 0, errors.New("the appliance died")
	}
	n, err := d.ReadSeeker.Read(p[:min(int64(len(p)), room)])
	f.mu.Lock()
	f.served += int64(n)
	f.mu.Unlock()
	return n, err
}

// die closes the server and its connections, and starts it again on the
// same address after comeBack (never if 0).
func (f *fakeImages) die() {
	f.mu.Lock()
	select {
	case <-f.dead:
		f.mu.Unlock()
		return
	default:
	}
	close(f.dead)
	f.dieAfter = 0
	hs, back := f.hs, f.comeBack
	f.mu.Unlock()
	go func() {
		hs.Close()
		if back > 0 {
			time.Sleep(back)
			f.serve(f.addr)
		}
	}()
}

// chunkTestRC is an RC for calling loadImage directly, its disks in dir.
func chunkTestRC(t testing.TB, dir string, retry time.Duration) (*rc, *apptest.SyncBuffer) {
	logs := &apptest.SyncBuffer{}
	cfg := Config{AM: "http://127.0.0.1:1", DiskAllow: []string{filepath.Join(dir, "disk*")}, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, LoadRetry: retry, ReportEvery: 10 * time.Millisecond, PowerCheck: func() error { return nil },
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}.withDefaults()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("RC log:\n%s", logs)
		}
	})
	return &rc{cfg: cfg, log: cfg.Log}, logs
}

// chunkTestLoad runs LOAD_IMAGE of the fake's image onto disk and returns its end.
func chunkTestLoad(t testing.TB, r *rc, url, disk, sum string) proto.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep := newReporter(r, &client{base: url, http: r.cfg.HTTP}, 1)
	final := r.loadImage(ctx, proto.Command{ID: 1, Type: proto.LoadImage, Image: "img", Disk: disk, SHA256: sum}, rep)
	cancel() // ends a report waiting for an appliance that is away
	rep.stopPeriodic()
	return final
}

// chunkSpan is chunk i's bytes of b.
func chunkSpan(m *chunkimg.Manifest, b []byte, i int) []byte {
	off, n := m.Range(i)
	return b[off : off+n]
}

func TestChunkedLoad(t *testing.T) {
	img := makeChunkImage(t, testDisk(160))
	m := img.m
	size := m.DiskSize
	var dataBytes, zeroBytes int64
	for i, c := range m.Chunks {
		if _, n := m.Range(i); c.Zero {
			zeroBytes += n
		} else {
			dataBytes += n
		}
	}
	garbage := func() []byte {
		b := make([]byte, size)
		r := rand.New(rand.NewChaCha8([32]byte{7}))
		for i := range b {
			b[i] = byte(r.Uint32() | 1)
		}
		return b
	}
	changed := []int{5, 8, 77} // two stored chunks and a zero one: 3 of 160 chunks
	damaged := 9
	tamperedManifest := bytes.Replace(img.manifest, []byte(m.Chunks[1].SHA256), []byte(strings.Repeat("0", 64)), 1)
	cases := []struct {
		name   string
		before []byte // the disk (nil: an empty file)
		damage map[int]int
		serve  []byte // a manifest to serve instead of the image's
		// the appliance does not say the image is chunked
		noFormat bool
		wantErr  string
		// the load's counts
		written, skipped, fetched int64
	}{
		{name: "full load onto an empty file", written: dataBytes, skipped: zeroBytes, fetched: m.FrameBytes()},
		{name: "full load over other data", before: garbage(), written: size, fetched: m.FrameBytes()},
		{name: "a chunked image told by its first bytes", noFormat: true, before: garbage(), written: size, fetched: m.FrameBytes()},
		{name: "reload of the same image", before: img.raw, skipped: size},
		{
			name: "reload after a change", before: func() []byte {
				b := bytes.Clone(img.raw)
				for _, i := range changed {
					chunkSpan(m, b, i)[100] ^= 1
				}
				return b
			}(),
			written: 3 * testChunk, skipped: size - 3*testChunk, fetched: m.Chunks[5].Size + m.Chunks[77].Size,
		},
		{
			name: "garbage where the zero chunks are", before: func() []byte {
				b, g := bytes.Clone(img.raw), garbage()
				for i, c := range m.Chunks {
					if c.Zero {
						copy(chunkSpan(m, b, i), chunkSpan(m, g, i))
					}
				}
				return b
			}(),
			written: zeroBytes, skipped: dataBytes,
		},
		{
			name: "a frame damaged once is fetched again", before: garbage(), damage: map[int]int{damaged: 1},
			written: size, fetched: m.FrameBytes() + m.Chunks[damaged].Size,
		},
		{
			name: "a frame always damaged fails the load", before: garbage(), damage: map[int]int{damaged: -1},
			wantErr: "did not verify after 4 fetches",
			written: size - testChunk, fetched: m.FrameBytes() + 3*m.Chunks[damaged].Size,
		},
		{name: "a manifest not the command's is refused", before: garbage(), serve: tamperedManifest, wantErr: "the command names " + img.digest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := filepath.Join(dir, "disk0")
			testenv.WriteFile(t, disk, tc.before)
			f := newFakeImages(t, img)
			f.damage, f.manifest, f.noFormat = tc.damage, tc.serve, tc.noFormat
			if f.damage == nil {
				f.damage = map[int]int{}
			}
			r, _ := chunkTestRC(t, dir, 10*time.Second)
			rep := chunkTestLoad(t, r, f.url(), disk, img.digest)
			got, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr == "" {
				if rep.State != proto.StateDone || rep.SHA256 != img.digest {
					t.Fatalf("load: %s %s, want done with sha256 %s", rep.State, rep.Error, img.digest)
				}
				if !bytes.Equal(got, img.raw) {
					t.Errorf("the disk differs from the image")
				}
			} else {
				if rep.State != proto.StateFailed || !strings.Contains(rep.Error, tc.wantErr) {
					t.Fatalf("load: %s %q, want failed with %q", rep.State, rep.Error, tc.wantErr)
				}
			}
			if tc.serve != nil {
				if !bytes.Equal(got, tc.before) {
					t.Errorf("a refused load changed the disk")
				}
				return
			}
			if tc.damage[damaged] < 0 {
				if !bytes.Equal(chunkSpan(m, got, damaged), chunkSpan(m, tc.before, damaged)) {
					t.Errorf("the span of the chunk that never verified was written")
				}
				for i := range m.Chunks {
					if i != damaged && !bytes.Equal(chunkSpan(m, got, i), chunkSpan(m, img.raw, i)) {
						t.Errorf("chunk %d was not loaded", i)
					}
				}
			}
			p := rep.Progress
			if p == nil {
				t.Fatalf("no progress in %+v", rep)
			}
			want := proto.Progress{Done: tc.written + tc.skipped, Total: size, Written: tc.written, Skipped: tc.skipped, Fetched: tc.fetched}
			if *p != want {
				t.Errorf("progress %+v, want %+v", *p, want)
			}
		})
	}
}

// An appliance that dies mid-load: if it comes back in time, the load goes
// on from the first frame it did not get; if not, the load fails, and the
// next load fetches only what the first did not write.
func TestChunkedLoadResumes(t *testing.T) {
	img := makeChunkImage(t, testDisk(160))
	m := img.m
	// The appliance dies halfway through chunk 5's frame, in the first
	// request: the load goes on from there.
	c5 := m.Chunks[5]
	cut, resumeAt := c5.Offset+c5.Size/2-chunkimg.HeaderSize, c5.Offset
	t.Run("the appliance comes back", func(t *testing.T) {
		dir := t.TempDir()
		disk := filepath.Join(dir, "disk0")
		testenv.WriteFile(t, disk, "")
		f := newFakeImages(t, img)
		f.dieAfter, f.comeBack = cut, 300*time.Millisecond
		r, logs := chunkTestRC(t, dir, 20*time.Second)
		rep := chunkTestLoad(t, r, f.url(), disk, img.digest)
		if rep.State != proto.StateDone {
			t.Fatalf("load: %s %s", rep.State, rep.Error)
		}
		if got, _ := os.ReadFile(disk); !bytes.Equal(got, img.raw) {
			t.Errorf("the disk differs from the image")
		}
		if rep.Progress.Fetched != m.FrameBytes() {
			t.Errorf("fetched %d bytes, the frames are %d: a frame was fetched twice, or one not at all", rep.Progress.Fetched, m.FrameBytes())
		}
		f.mu.Lock()
		starts := f.starts
		f.mu.Unlock()
		if len(starts) < 2 || starts[0] != chunkimg.HeaderSize || starts[1] != resumeAt {
			t.Errorf("ranges from %v, want from %d then %d, ...", starts, chunkimg.HeaderSize, resumeAt)
		}
		if !strings.Contains(logs.String(), "retrying") {
			t.Errorf("no retry logged")
		}
	})
	t.Run("a later load goes on", func(t *testing.T) {
		dir := t.TempDir()
		disk := filepath.Join(dir, "disk0")
		testenv.WriteFile(t, disk, "")
		f := newFakeImages(t, img)
		f.dieAfter = cut
		r, _ := chunkTestRC(t, dir, 300*time.Millisecond)
		first := chunkTestLoad(t, r, f.url(), disk, img.digest)
		if first.State != proto.StateFailed || !strings.Contains(first.Error, "unreachable") {
			t.Fatalf("first load: %s %q, want failed: unreachable", first.State, first.Error)
		}
		f.serve(f.addr)
		second := chunkTestLoad(t, r, f.url(), disk, img.digest)
		if second.State != proto.StateDone {
			t.Fatalf("second load: %s %s", second.State, second.Error)
		}
		if got, _ := os.ReadFile(disk); !bytes.Equal(got, img.raw) {
			t.Errorf("the disk differs from the image")
		}
		f1, f2 := first.Progress.Fetched, second.Progress.Fetched
		if f1 != resumeAt-chunkimg.HeaderSize || f1+f2 != m.FrameBytes() {
			t.Errorf("fetched %d then %d bytes; want %d then the rest of %d", f1, f2, resumeAt-chunkimg.HeaderSize, m.FrameBytes())
		}
		if second.Progress.Skipped < first.Progress.Written {
			t.Errorf("the second load skipped %d bytes, the first wrote %d", second.Progress.Skipped, first.Progress.Written)
		}
	})
}

// shuffledSource is a ChunkSource as multicast would be: it sends the
// frames in any order, some twice, and notes what it was asked for.
type shuffledSource struct {
	img   chunkImage
	mu    sync.Mutex
	calls [][]int
}

func (s *shuffledSource) Fetch(ctx context.Context, want []int, out chan<- Frame) error {
	s.mu.Lock()
	s.calls = append(s.calls, want)
	s.mu.Unlock()
	idx := append([]int(nil), want...)
	idx = append(idx, want[:len(want)/2]...) // repeats
	r := rand.New(rand.NewChaCha8([32]byte{3}))
	r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	for _, i := range idx {
		c := s.img.m.Chunks[i]
		if err := sendOrDone(ctx, out, Frame{Index: i, Data: bytes.Clone(s.img.file[c.Offset : c.Offset+c.Size])}); err != nil {
			return err
		}
	}
	return nil
}

// TestChunkedLoadTakesFramesInAnyOrder: the loader takes frames in any
// order, drops repeats, and with oneBatch asks for all it needs at once.
func TestChunkedLoadTakesFramesInAnyOrder(t *testing.T) {
	img := makeChunkImage(t, testDisk(160))
	m := img.m
	disk := filepath.Join(t.TempDir(), "disk0")
	before := bytes.Clone(img.raw)
	var stale []int // chunks that differ on the disk
	var staleBytes int64
	for i, c := range m.Chunks {
		if !c.Zero && i%3 == 0 {
			chunkSpan(m, before, i)[7] ^= 0x80
			stale = append(stale, i)
			staleBytes += int64(len(chunkSpan(m, before, i)))
		}
	}
	testenv.WriteFile(t, disk, before)
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := chunkimg.NewDecoder(chunkWorkers(runtime.GOMAXPROCS(0), m.ChunkSize))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	src := &shuffledSource{img: img}
	l := &chunkLoad{m: m, disk: f, dec: dec, src: src, oneBatch: true, log: slog.New(slog.DiscardHandler), state: make([]atomic.Int32, len(m.Chunks))}
	if err := l.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(disk); !bytes.Equal(got, img.raw) {
		t.Errorf("the disk differs from the image")
	}
	if len(src.calls) != 1 || !slices.Equal(src.calls[0], stale) {
		t.Errorf("asked for %v, want one call for %v", src.calls, stale)
	}
	if p := l.progress(); p.Written != staleBytes || p.Skipped != m.DiskSize-staleBytes {
		t.Errorf("progress %+v: want the %d stale chunks' %d bytes written, the rest skipped", p, len(stale), staleBytes)
	}
}

// TestFitDisk: a file grows to the image's disk size; a block device too
// small is refused, unchanged.
func TestFitDisk(t *testing.T) {
	for _, tc := range []struct {
		name     string
		block    bool
		size     int64
		wantErr  bool
		wantSize int64
	}{
		{"a file large enough", false, 50, false, 100},
		{"a file grows", false, 200, false, 200},
		{"a device large enough", true, 100, false, 100},
		{"a device too small", true, 200, true, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk0")
			testenv.WriteFile(t, path, bytes.Repeat([]byte{1}, 100))
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = fitDisk(f, tc.block, tc.size)
			if (err != nil) != tc.wantErr {
				t.Errorf("fitDisk: %v, want an error: %v", err, tc.wantErr)
			}
			if fi, _ := os.Stat(path); fi.Size() != tc.wantSize {
				t.Errorf("size %d, want %d", fi.Size(), tc.wantSize)
			}
		})
	}
}

// TestChunkWorkers: twice the CPUs, as long as four chunks each fit the
// load's memory bound; one at least.
func TestChunkWorkers(t *testing.T) {
	for _, tc := range []struct {
		procs     int
		chunkSize int64
		want      int
	}{
		{procs: 1, chunkSize: chunkimg.DefaultChunkSize, want: 2},
		{procs: 16, chunkSize: chunkimg.DefaultChunkSize, want: 32},
		{procs: 128, chunkSize: chunkimg.DefaultChunkSize, want: 128},
		{procs: 16, chunkSize: chunkimg.MaxChunkSize, want: 2},
		{procs: 1, chunkSize: chunkimg.MaxChunkSize, want: 2},
		{procs: 4, chunkSize: 256 << 20, want: 1},
	} {
		if got := chunkWorkers(tc.procs, tc.chunkSize); got != tc.want {
			t.Errorf("chunkWorkers(%d, %d) = %d, want %d", tc.procs, tc.chunkSize, got, tc.want)
		}
		if got := chunkWorkers(tc.procs, tc.chunkSize); int64(got)*4*tc.chunkSize > loadMemory && got > 1 {
			t.Errorf("chunkWorkers(%d, %d) = %d: %d bytes of chunks, over the bound", tc.procs, tc.chunkSize, got, int64(got)*4*tc.chunkSize)
		}
	}
}
