package rc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/rc/proto"
)

// maxChunkFetches bounds how often a chunk whose frame fails verification
// is fetched: the image on the appliance is damaged, or the network
// corrupts data, and the load fails.
const maxChunkFetches = 4

// The state of a chunk during a load.
const (
	chunkUnknown int32 = iota // not scanned yet
	chunkNeeded               // the disk differs: its frame is wanted
	chunkWriting              // a frame of it is being verified and written
	chunkDone                 // the disk holds it (found so, or written)
)

// loadChunked loads a chunked image (internal/chunkimg) onto disk: it
// fetches the manifest and checks it is the one named by sum, hashes what
// the disk holds at each chunk and leaves the chunks that already match,
// and fetches, verifies and writes the others. Hashing the disk, fetching,
// decoding and writing overlap. An interrupted load, loaded again, finds
// what it wrote and goes on from there.
func (r *rc) loadChunked(ctx context.Context, c proto.Command, disk string, fi os.FileInfo, sum string, rep *reporter) proto.Report {
	if sum == "" {
		return failed("disk image %s: no checksum to verify it by; nothing was written", c.Image)
	}
	log := r.log.With("id", c.ID, "image", c.Image, "disk", disk)
	m, err := fetchManifest(ctx, rep.c, r.cfg, log, c.Image, sum)
	if err != nil {
		return failed("disk image %s: manifest: %v; nothing was written", c.Image, err)
	}
	block := fi.Mode()&os.ModeDevice != 0
	flags := os.O_RDWR
	if block {
		flags |= excl
	}
	f, err := os.OpenFile(disk, flags, 0)
	if err != nil {
		return failed("disk %s: %v", disk, err)
	}
	defer f.Close()
	fd := f.Fd()
	if err := fitDisk(f, block, m.DiskSize); err != nil {
		return failed("disk %s: %v; nothing was written", disk, err)
	}
	dec, err := chunkimg.NewDecoder(chunkWorkers(runtime.GOMAXPROCS(0), m.ChunkSize))
	if err != nil {
		return failed("disk image %s: %v", c.Image, err)
	}
	defer dec.Close()
	bufs := &frameBufs{size: 2 * m.ChunkSize} // ParseManifest's bound on a frame
	l := &chunkLoad{
		m: m, disk: f, dec: dec, log: log, state: make([]atomic.Int32, len(m.Chunks)), bufs: bufs,
		writeback: func(off, n int64) { startWriteback(fd, off, n) },
		src:       &httpSource{c: rep.c, cfg: r.cfg, log: log, image: c.Image, digest: sum, m: m, bufs: bufs},
	}
	if c.Multicast != nil {
		// The session takes chunks in any order: it wants them all at once.
		var maxFrame int64
		sizes := make([]int, len(m.Chunks))
		for i, ch := range m.Chunks {
			maxFrame = max(maxFrame, ch.Size)
			sizes[i] = int(ch.Size)
		}
		l.src = &mcastSource{m: c.Multicast, id: c.HRN, sizes: sizes, maxFrame: max(maxFrame, 1), http: l.src,
			log: log.With("group", c.Multicast.Group)}
		l.oneBatch = true
	}
	rep.watch(l.progress)
	rep.start(ctx)
	began := time.Now()
	if err := l.run(ctx); err != nil {
		p := l.progress()
		rep := failed("loading %s onto %s: %v; %d bytes written, %d found already right: loading again goes on from there",
			c.Image, disk, err, p.Written, p.Skipped)
		rep.Progress = &p
		return rep
	}
	wrote := time.Since(began)
	if err := f.Sync(); err != nil {
		return failed("loading %s onto %s: sync: %v", c.Image, disk, err)
	}
	final := l.progress()
	log.Info("image written", "written", final.Written, "skipped", final.Skipped, "fetched", final.Fetched,
		"write", wrote.Round(time.Millisecond), "sync", (time.Since(began) - wrote).Round(time.Millisecond))
	if block {
		if err := rereadPartitions(f); err != nil {
			log.Warn("re-reading the partition table", "err", err)
		}
	}
	return proto.Report{State: proto.StateDone, Reply: proto.ReplyOK, SHA256: sum, Progress: &final}
}

// fitDisk checks that the disk holds size bytes; a file (a VM's disk, a
// test's) grows to size.
func fitDisk(f *os.File, block bool, size int64) error {
	have, err := f.Seek(0, io.SeekEnd) // works for block devices too
	if err != nil {
		return fmt.Errorf("size: %w", err)
	}
	switch {
	case have >= size:
		return nil
	case block:
		return fmt.Errorf("%d bytes, the image needs %d", have, size)
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("growing to the image's %d bytes: %w", size, err)
	}
	return nil
}

// firstWindow is the span of the disk scanned before the first fetch.
const firstWindow = 4 << 20

// loadMemory bounds the chunks a load holds at once: frames being decoded,
// their raw chunks, the decoders' windows, the scan's reads. A RAM-image
// node's memory is also its root file system, and a many-core node
// loading an image of 64 MiB chunks would otherwise hold gigabytes.
const loadMemory = 512 << 20

// chunkWorkers is how many frames are decoded and written at once, on a
// node of procs CPUs, for chunks of chunkSize bytes: more than the CPUs,
// so that a write waiting on the disk leaves none idle, within loadMemory
// at four chunks each (a frame of up to two, its raw chunk, a decoder's
// window). The scan reads with half as many.
func chunkWorkers(procs int, chunkSize int64) int {
	return int(max(1, min(int64(2*procs), loadMemory/(4*chunkSize))))
}

// chunkLoad is one chunked load under way.
type chunkLoad struct {
	m    *chunkimg.Manifest
	disk interface {
		io.ReaderAt
		io.WriterAt
	}
	// writeback, if set, starts writing a range just written to the
	// device (startWriteback).
	writeback func(off, n int64)
	src       ChunkSource
	bufs      *frameBufs // the frames' buffers go back there (nil: nowhere)
	dec       *chunkimg.Decoder
	log       *slog.Logger
	state     []atomic.Int32 // per chunk

	// oneBatch: the scan asks the source for every chunk it needs in one
	// Fetch, at its end, instead of a window at a time (a multicast
	// source, which takes frames in any order, wants the whole list).
	oneBatch bool

	written, skipped, fetched atomic.Int64
	lastBad                   atomic.Pointer[error] // that of the last frame that failed verification
}

func (l *chunkLoad) progress() proto.Progress {
	w, s := l.written.Load(), l.skipped.Load()
	return proto.Progress{Done: w + s, Total: l.m.DiskSize, Written: w, Skipped: s, Fetched: l.fetched.Load()}
}

// run scans the disk and fetches what it lacks, then fetches again the
// chunks whose frames failed verification, a bounded number of times.
func (l *chunkLoad) run(ctx context.Context) error {
	if err := l.round(ctx, l.scan); err != nil {
		return err
	}
	for fetches := 1; ; fetches++ {
		var want []int
		for i := range l.state {
			if l.state[i].Load() != chunkDone {
				want = append(want, i)
			}
		}
		if len(want) == 0 {
			return nil
		}
		if fetches == maxChunkFetches {
			var err error
			if p := l.lastBad.Load(); p != nil {
				err = *p
			}
			return fmt.Errorf("%d chunks (the first chunk %d) did not verify after %d fetches: the image on the appliance is damaged or the network corrupts data; nothing unverified was written: %w",
				len(want), want[0], fetches, err)
		}
		l.log.Warn("fetching chunks again that failed verification", "chunks", len(want), "first", want[0])
		if err := l.round(ctx, func(ctx context.Context, out chan<- []int) error {
			return sendOrDone(ctx, out, want)
		}); err != nil {
			return err
		}
	}
}

// round runs a pipeline: wanted lists the chunks to fetch, a batch at a
// time, the source fetches each batch while workers verify and write the
// frames that came.
func (l *chunkLoad) round(ctx context.Context, wanted func(context.Context, chan<- []int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan []int, 2)
	// Frames wait for a worker up to about 64 MiB, whatever the chunk size.
	workers := chunkWorkers(runtime.GOMAXPROCS(0), l.m.ChunkSize)
	frames := make(chan Frame, min(2*workers, int(max(2, maxRangeRequest/l.m.ChunkSize))))
	g.Go(func() error {
		defer close(batches)
		return wanted(ctx, batches)
	})
	g.Go(func() error {
		defer close(frames)
		for b := range batches {
			if err := l.src.Fetch(ctx, b, frames); err != nil {
				return err
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error { return l.write(ctx, frames) })
	}
	return g.Wait()
}

func sendOrDone[T any](ctx context.Context, out chan<- T, v T) error {
	select {
	case out <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scan reads the disk a window of chunks at a time, the chunks of a window
// in parallel, settles the chunks it can (already right; zero chunks
// written with zeros) and sends the rest of each window to be fetched.
func (l *chunkLoad) scan(ctx context.Context, out chan<- []int) error {
	n := len(l.m.Chunks)
	// The first windows are small, so that fetching starts soon; then
	// each spans four requests' worth of raw chunks: frames are
	// compressed and zero chunks are not fetched, and windows of one
	// request's raw size made requests a third as large, each ending
	// with the link idle while the next began.
	window := int(max(1, firstWindow/l.m.ChunkSize))
	par := max(1, chunkWorkers(runtime.GOMAXPROCS(0), l.m.ChunkSize)/2)
	bufs := make([][]byte, par)
	for i := range bufs {
		bufs[i] = make([]byte, l.m.ChunkSize)
	}
	var zeros []byte
	var zerosOnce sync.Once
	zero := func() []byte {
		zerosOnce.Do(func() { zeros = make([]byte, l.m.ChunkSize) })
		return zeros
	}
	var want []int
	for start, end := 0, 0; start < n; start, window = end, int(min(2*int64(window), max(1, 4*maxRangeRequest/l.m.ChunkSize))) {
		end = min(start+window, n)
		var next atomic.Int64
		next.Store(int64(start))
		var g errgroup.Group
		for _, buf := range bufs {
			g.Go(func() error {
				for {
					if err := ctx.Err(); err != nil {
						return err
					}
					i := int(next.Add(1) - 1)
					if i >= end {
						return nil
					}
					if err := l.scanChunk(i, buf, zero); err != nil {
						return err
					}
				}
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for i := start; i < end; i++ {
			if l.state[i].Load() == chunkNeeded {
				want = append(want, i)
			}
		}
		if len(want) > 0 && !l.oneBatch {
			if err := sendOrDone(ctx, out, want); err != nil {
				return err
			}
			want = nil
		}
	}
	if len(want) > 0 {
		return sendOrDone(ctx, out, want)
	}
	return nil
}

// scanChunk compares chunk i with the disk.
func (l *chunkLoad) scanChunk(i int, buf []byte, zero func() []byte) error {
	off, n := l.m.Range(i)
	b := buf[:n]
	if _, err := l.disk.ReadAt(b, off); err != nil {
		return fmt.Errorf("reading the disk at %d: %w", off, err)
	}
	c := l.m.Chunks[i]
	isZero := chunkimg.IsZero(b)
	switch {
	case c.Zero && isZero, !c.Zero && !isZero && chunkimg.Sum(b) == c.SHA256:
		l.skipped.Add(n)
	case c.Zero:
		if _, err := l.disk.WriteAt(zero()[:n], off); err != nil {
			return fmt.Errorf("writing zeros at %d: %w", off, err)
		}
		l.written.Add(n)
	default:
		l.state[i].Store(chunkNeeded)
		return nil
	}
	l.state[i].Store(chunkDone)
	return nil
}

// write verifies frames and writes those that pass.
func (l *chunkLoad) write(ctx context.Context, frames <-chan Frame) error {
	buf := make([]byte, 0, l.m.ChunkSize)
	for f := range frames {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.fetched.Add(int64(len(f.Data)))
		if f.Index < 0 || f.Index >= len(l.state) || !l.state[f.Index].CompareAndSwap(chunkNeeded, chunkWriting) {
			l.bufs.put(f.Data)
			continue // not wanted, or a repeat
		}
		raw, err := l.dec.Decode(l.m, f.Index, f.Data, buf)
		l.bufs.put(f.Data)
		if err != nil {
			l.state[f.Index].Store(chunkNeeded)
			l.lastBad.Store(&err)
			l.log.Warn("a chunk failed verification; it will be fetched again", "chunk", f.Index, "err", err)
			continue
		}
		off, _ := l.m.Range(f.Index)
		if _, err := l.disk.WriteAt(raw, off); err != nil {
			return fmt.Errorf("writing chunk %d at %d: %w", f.Index, off, err)
		}
		if l.writeback != nil {
			l.writeback(off, int64(len(raw)))
		}
		l.written.Add(int64(len(raw)))
		l.state[f.Index].Store(chunkDone)
		buf = raw[:0]
	}
	return nil
}
