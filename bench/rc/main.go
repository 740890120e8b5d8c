// Command rc measures how fast orbit-rc's LOAD_IMAGE writes a disk image,
// beside dd writing the same (uncompressed) data to the same file.
//
// It makes a disk's worth of data (-size, a mix of random, zero and text
// stretches, so that it compresses as a real disk does: -random and -zero
// say how much of each), compresses it as a zstd and a gzip image, and
// starts an RC broker (a real SQLite store and the broker's HTTP routes,
// package am/rcbroker/rcbrokertest) and the RC (package rc, in process),
// both on 127.0.0.1. Then, -runs times each:
//
//	dd:        dd if=RAW of=TARGET bs=4M conv=notrunc,fsync
//	zstd|dd:   zstd -dc IMAGE.zst | dd of=TARGET bs=4M conv=notrunc,fsync  (if zstd is installed)
//	gzip|dd:   gzip -dc IMAGE.gz | dd ...
//	rc zstd:   LOAD_IMAGE of the zstd image onto TARGET, from the command's
//	           start to its end as the RC reported them (HTTP from the
//	           appliance, decompression, SHA-256, writes, fsync)
//	rc gzip:   the same with the gzip image
//
// TARGET is one preallocated file of -size bytes in -dir, as a disk would
// be; every method overwrites it in place and ends with an fsync. Before
// each run the program calls sync(2) and pauses (-pause), so that no run
// pays for the writeback of the one before. After each
// RC load the target is checked byte for byte. It prints MB/s (of
// uncompressed bytes, 10^6) for the best run of each method and its ratio to
// dd's best.
//
//	go run ./bench/rc                          # 1 GiB in $TMPDIR
//	go run ./bench/rc -size 256MiB -runs 5 -dir /mnt/scratch
//	go run ./bench/rc -only rc -cpuprofile /tmp/rc.prof
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/am/rcbroker/rcbrokertest"
	"github.com/orbit-lab/netboot/bench/internal/benchproc"
	"github.com/orbit-lab/netboot/bench/internal/diskdata"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/rc"
	"github.com/orbit-lab/netboot/rc/proto"
)

const (
	node   = "bench1.bench"
	mac    = "02:00:00:be:0c:01"
	nodeIP = "127.0.0.2" // the RC speaks from its node's control IP, as the appliance asks
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/rc:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	sizeFlag := flag.String("size", "1GiB", "disk size")
	runs := flag.Int("runs", 3, "runs of each method (the best counts)")
	dirFlag := flag.String("dir", os.TempDir(), "directory for the data and the target file (the disk under test)")
	randomPct := flag.Int("random", 40, "percent of the data that is random (incompressible)")
	zeroPct := flag.Int("zero", 40, "percent of the data that is zeros (the rest is text)")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	pause := flag.Duration("pause", time.Second, "pause after a sync before each run")
	only := flag.String("only", "", "run only the methods whose name contains this")
	verbose := flag.Bool("v", false, "print the RC's log on stderr")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the RC loads (the whole process) to this file")
	flag.Parse()
	size, err := diskdata.ParseSize(*sizeFlag)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(*dirFlag, "bench-rc-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("# orbit-rc LOAD_IMAGE vs dd: %d MiB, %d%% random, %d%% zeros, %d CPUs, %s, in %s\n\n",
		size>>20, *randomPct, *zeroPct, runtime.NumCPU(), runtime.Version(), dir)

	raw := filepath.Join(dir, "raw.img")
	target := filepath.Join(dir, "disk0")
	images := filepath.Join(dir, "appliance", "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return err
	}
	start := time.Now()
	rawSum, err := diskdata.Make(raw, size, diskdata.Mix{Seed: 42, RandomPct: *randomPct, ZeroPct: *zeroPct})
	if err != nil {
		return err
	}
	zsize, err := diskdata.Compress(raw, filepath.Join(images, "bench.zst"), "zstd")
	if err != nil {
		return err
	}
	gsize, err := diskdata.Compress(raw, filepath.Join(images, "bench-gz.gz"), "gzip")
	if err != nil {
		return err
	}
	if err := preallocate(target, size); err != nil {
		return err
	}
	fmt.Printf("data made in %v: zstd image %d MiB (%.1f%%), gzip image %d MiB (%.1f%%)\n\n", time.Since(start).Round(time.Second),
		zsize>>20, 100*float64(zsize)/float64(size), gsize>>20, 100*float64(gsize)/float64(size))

	a, err := rcbrokertest.Start(filepath.Join(dir, "appliance"), rcbrokertest.Options{
		Inventory: fmt.Sprintf("testbeds:\n  - domain: bench\n    nodes:\n      - { hrn: %s, control_ip: %s, control_mac: %q }\n", node, nodeIP, mac),
		Config:    rcbroker.Config{ImageDir: images},
	})
	if err != nil {
		return err
	}
	defer a.Stop()
	rcLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	if *verbose {
		rcLog = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rc.Run(ctx, rc.Config{AM: a.URL, MACs: []string{mac}, ImageName: "bench", DiskAllow: []string{target},
			HTTP: apptest.ClientFrom(nodeIP), Log: rcLog})
	}()
	defer func() {
		cancel()
		// Run fails only on a configuration it cannot use.
		if rerr := <-done; rerr != nil && err == nil {
			err = fmt.Errorf("rc: %w", rerr)
		}
	}()
	c := amclient.New(a.URL)
	if err := waitEnrolled(c); err != nil {
		return err
	}

	type method struct {
		name string
		run  func() (time.Duration, error)
	}
	shell := func(script string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			t0 := time.Now()
			out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput()
			if err != nil {
				return 0, fmt.Errorf("%s: %w: %s", script, err, out)
			}
			return time.Since(t0), nil
		}
	}
	load := func(image string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			d, err := rcLoad(c, image, target)
			if err != nil {
				return 0, err
			}
			s, err := diskdata.FileSum(target)
			if err != nil {
				return 0, fmt.Errorf("rc %s: %w", image, err)
			}
			if !bytes.Equal(s, rawSum) {
				return 0, fmt.Errorf("rc %s: the target differs from the data", image)
			}
			return d, nil
		}
	}
	ddOut := fmt.Sprintf("dd of=%s bs=4M conv=notrunc,fsync status=none", target)
	methods := []method{{"dd", shell(fmt.Sprintf("dd if=%s ", raw) + ddOut[3:])}}
	if _, err := exec.LookPath("zstd"); err == nil {
		methods = append(methods, method{"zstd -dc | dd", shell(fmt.Sprintf("zstd -dcq %s | %s", filepath.Join(images, "bench.zst"), ddOut))})
	}
	methods = append(methods,
		method{"gzip -dc | dd", shell(fmt.Sprintf("gzip -dc %s | %s", filepath.Join(images, "bench-gz.gz"), ddOut))},
		method{"rc LOAD_IMAGE zstd", load("bench")},
		method{"rc LOAD_IMAGE gzip", load("bench-gz")},
	)
	stopProfile, err := benchproc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	best := map[string]time.Duration{}
	for r := 0; r < *runs; r++ {
		for _, m := range methods {
			if !strings.Contains(m.name, *only) {
				continue
			}
			// Let the writeback of the run before settle: each run starts
			// with clean page cache over the target.
			syscall.Sync()
			time.Sleep(*pause)
			d, err := m.run()
			if err != nil {
				return err
			}
			fmt.Printf("run %d  %-20s %8.1f MB/s  (%v)\n", r+1, m.name, mbps(size, d), d.Round(time.Millisecond))
			if b, ok := best[m.name]; !ok || d < b {
				best[m.name] = d
			}
		}
	}
	fmt.Printf("\n| method | best MB/s | vs dd |\n|---|---:|---:|\n")
	dd := 0.0
	if best["dd"] > 0 {
		dd = mbps(size, best["dd"])
	}
	for _, m := range methods {
		if best[m.name] == 0 {
			continue
		}
		v := mbps(size, best[m.name])
		ratio := "-"
		if dd > 0 {
			ratio = fmt.Sprintf("%.2f", v/dd)
		}
		fmt.Printf("| %s | %.1f | %s |\n", m.name, v, ratio)
	}
	return nil
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func waitEnrolled(c *amclient.Client) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s, err := c.RCStatus(context.Background(), node); err == nil && s.Enrolled {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the RC did not enroll within 10s")
}

// rcLoad runs LOAD_IMAGE and returns its duration as the RC reported it.
func rcLoad(c *amclient.Client, image, target string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	st, err := c.SendCommand(ctx, node, proto.CommandRequest{Type: proto.LoadImage, Image: image, Disk: target})
	if err != nil {
		return 0, err
	}
	st, err = c.WaitCommand(ctx, st.ID, 10*time.Millisecond, nil)
	if err != nil {
		return 0, err
	}
	if st.State != proto.StateDone || st.StartedAt == nil || st.FinishedAt == nil {
		return 0, fmt.Errorf("LOAD_IMAGE %s: %s: %s", image, st.State, st.Error)
	}
	return st.FinishedAt.Sub(*st.StartedAt), nil
}

func preallocate(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zero := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(zero)) {
		if _, err := f.Write(zero[:min(int64(len(zero)), size-off)]); err != nil {
			return err
		}
	}
	return f.Sync()
}
