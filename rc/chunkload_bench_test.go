package rc

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/rc/proto"
)

// BenchmarkChunkedLoad measures a chunked load by the RC onto a file
// beside `curl | zstd -dc | dd` of the same data as one zstd stream, both
// from the same local HTTP server, each ending with an fsync. The data is
// NB_BENCH_MIB MiB (default 512) of 1 MiB stretches, 40% random, 40%
// zeros, 20% text, as bench/rc makes. Run it alone:
//
//	go test ./rc -run '^$' -bench ChunkedLoad -benchtime 3x
func BenchmarkChunkedLoad(b *testing.B) {
	mib := 512
	if v, err := strconv.Atoi(os.Getenv("NB_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	size := int64(mib) << 20
	dir := b.TempDir()
	raw := filepath.Join(dir, "raw")
	nbi := filepath.Join(dir, "img.nbi")
	zst := filepath.Join(dir, "img.zst")
	target := filepath.Join(dir, "disk0")
	if err := benchData(raw, size); err != nil {
		b.Fatal(err)
	}
	manifest, digest, err := benchImages(raw, nbi, zst)
	if err != nil {
		b.Fatal(err)
	}
	other := func() { // the target holds other data: every chunk differs
		if err := benchFill(target, size, 0xa5); err != nil {
			b.Fatal(err)
		}
	}
	zero := func() {
		if err := benchFill(target, size, 0); err != nil {
			b.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/disk-images/img/manifest", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(proto.HeaderSHA256, digest)
		_, _ = w.Write(manifest)
	})
	serveFile := func(path, format string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open(path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			w.Header().Set(proto.HeaderFormat, format)
			if format == proto.FormatChunked {
				w.Header().Set(proto.HeaderSHA256, digest)
			}
			http.ServeContent(w, r, "", time.Time{}, f)
		}
	}
	mux.HandleFunc("GET /api/v1/disk-images/img", serveFile(nbi, proto.FormatChunked))
	mux.HandleFunc("GET /api/v1/disk-images/zst", serveFile(zst, proto.FormatZstd))
	mux.HandleFunc("POST /api/v1/rc/commands/{id}/report", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	r, _ := chunkTestRC(b, dir, time.Minute)
	want, err := os.ReadFile(raw)
	if err != nil {
		b.Fatal(err)
	}
	check := func() {
		got, err := os.ReadFile(target)
		if err != nil || !bytes.Equal(got, want) {
			b.Fatalf("the target differs from the data (%v)", err)
		}
	}
	rcLoad := func(b *testing.B) {
		rep := chunkTestLoad(b, r, srv.URL, target, digest)
		if rep.State != proto.StateDone {
			b.Fatalf("load: %s %s", rep.State, rep.Error)
		}
		p := rep.Progress
		b.ReportMetric(float64(p.Written)/float64(size), "written/disk")
		b.ReportMetric(float64(p.Fetched)/float64(size), "fetched/disk")
	}
	pipeline := func(b *testing.B) {
		script := fmt.Sprintf("curl -sf %s/api/v1/disk-images/zst | zstd -dcq | dd of=%s bs=4M conv=notrunc,fsync status=none", srv.URL, target)
		if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", script, err, out)
		}
	}
	for _, m := range []struct {
		name  string
		setup func()
		run   func(*testing.B)
	}{
		{"curl|zstd|dd", other, pipeline},
		{"rc chunked over other data", other, rcLoad},
		{"rc chunked onto zeros", zero, rcLoad},
		{"rc chunked reload unchanged", func() {}, rcLoad},
	} {
		b.Run(m.name, func(b *testing.B) {
			if m.name == "curl|zstd|dd" {
				for _, p := range []string{"curl", "zstd", "dd"} {
					if _, err := exec.LookPath(p); err != nil {
						b.Skipf("%s is not installed", p)
					}
				}
			}
			b.SetBytes(size)
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				m.setup()
				syscall.Sync()
				time.Sleep(500 * time.Millisecond)
				before := cpuTime()
				b.StartTimer()
				m.run(b)
				b.StopTimer()
				cpu += cpuTime() - before
				b.StartTimer()
			}
			b.StopTimer()
			// CPU time (user and system, of this process, the server in
			// it included, and of the pipeline's processes): steadier than
			// the wall time on a shared machine.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			check()
		})
	}
}

// benchData writes size bytes of disk-like data.
func benchData(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewChaCha8([32]byte{42}))
	const block = 1 << 20
	text := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, orbit testbed node image; "), block/54+1)[:block]
	buf := make([]byte, block)
	for off := int64(0); off < size; off += block {
		switch p := r.IntN(100); {
		case p < 40:
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
		case p < 80:
			clear(buf)
		default:
			copy(buf, text)
		}
		if _, err := f.Write(buf[:min(block, size-off)]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// benchImages makes the chunked and the zstd image of raw; it returns the
// chunked image's manifest and digest.
func benchImages(raw, nbi, zst string) ([]byte, string, error) {
	for _, out := range []string{nbi, zst} {
		in, err := os.Open(raw)
		if err != nil {
			return nil, "", err
		}
		defer in.Close()
		f, err := os.Create(out)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		var w io.Writer
		var closeW func() error
		if out == nbi {
			cw, err := chunkimg.NewWriter(f, 0)
			if err != nil {
				return nil, "", err
			}
			w, closeW = cw, func() error { _, _, err := cw.Close(); return err }
		} else {
			zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedDefault))
			if err != nil {
				return nil, "", err
			}
			w, closeW = zw, zw.Close
		}
		if _, err := io.Copy(w, in); err != nil {
			return nil, "", err
		}
		if err := closeW(); err != nil {
			return nil, "", err
		}
		if err := f.Sync(); err != nil {
			return nil, "", err
		}
	}
	f, err := os.Open(nbi)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	_, mb, err := chunkimg.ReadManifest(f, fi.Size())
	if err != nil {
		return nil, "", err
	}
	return mb, chunkimg.Digest(mb), nil
}

// benchFill makes path size bytes of the byte v.
func benchFill(path string, size int64, v byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{v}, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// cpuTime is the CPU time used so far by this process and its waited-for
// children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	d := func(tv syscall.Timeval) time.Duration { return time.Duration(tv.Nano()) }
	return d(self.Utime) + d(self.Stime) + d(kids.Utime) + d(kids.Stime)
}
