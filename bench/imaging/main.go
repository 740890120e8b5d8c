// Command imaging measures loading one disk image onto 1, 5 and 20
// simulated nodes at once (issue 16, point 5): the wall time and the
// bytes the appliance sent, for each way of loading it, in one run on one
// network:
//
//	unicast        today's load: netbootd sends every node's orbit-rc
//	               LOAD_IMAGE at once; each RC streams the zstd image
//	               over HTTP, decompresses, verifies and writes it
//	udpcast        Debian's udpcast, the standard multicast imaging tool:
//	               udp-sender (--max-bitrate -udp-rate) in the appliance's
//	               namespace sends the same stored image to a udp-receiver
//	               on every node, which pipes it through zstd -dc onto the disk
//	curl|zstd|dd   one node: curl of the image from the appliance's API,
//	               zstd -dc, dd onto the disk (conv=fsync), by hand
//
// (chunked unicast, its delta reload and multicast join the mode table in
// modes.go as issue 16 lands them; until then their targets say "not
// measured").
//
// The rig, in network namespaces it makes and deletes: a bridge in a
// switch namespace (IGMP snooping off: multicast floods it); the appliance
// (netbootd, the real binary, with the admin token it generates) and every
// node in a namespace of its own, each linked to the bridge by a veth whose
// two ends are shaped with tc tbf to -rate (1 Gbit/s: the appliance's
// link too, so that unicast to N nodes shares one port as it does on a
// grid); addresses in 10.216.0.0/16, multicast (224.0.0.0/4) routed on
// those links only. Every node runs a real orbit-rc, enrolled before any
// measure. A node's disk is a file, -dir/bench-imaging-*/nodeI/disk0, made
// fresh (sparse, reading zeros) before each full load; every disk is
// checked against the image's SHA-256 after every load (-verify).
//
// The image is -size bytes (1 GiB) of deterministic data from -seed, in
// 1 MiB stretches: -random percent random, -zero percent zeros, the rest
// text; stored as the appliance stores it (one zstd stream today). Wall
// time runs from the load's start (the first LOAD_IMAGE issued, the sender
// started: RCs and receivers are already waiting) to the last node's data
// written and fsynced; "appliance MiB sent" is the tx_bytes of the
// appliance's link over the load (frames: headers included).
//
// The nodes share this machine's CPUs and its one disk (or -dir's file
// system): every node's decompression and writes, not the 1 Gbit/s links,
// may bound the many-node loads, for every mode alike (on 2 cores and a
// 400 MB/s disk, 20 nodes x 1 GiB take over a minute whatever sends them).
// Compare modes at the same N; N nodes against one measures the machine
// too. tmpfs (-dir /dev/shm) lifts the disk's bound for as many GiB of RAM
// as nodes x -size.
//
//	go run ./bench/imaging                          # 1 GiB, 1, 5 and 20 nodes (as root)
//	go run ./bench/imaging -size 64MiB -nodes 1,5   # a quick look
//	go run ./bench/imaging -modes unicast,udpcast -nodes 20
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/bench/internal/benchproc"
	"github.com/orbit-lab/netboot/bench/internal/diskdata"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

type options struct {
	size    int64
	nodes   []int
	modes   []string // "" : all
	dir     string
	mix     diskdata.Mix
	rate    string // tc's rate of every link
	udpRate string // udp-sender --max-bitrate
	pause   time.Duration
	verify  bool
	keep    bool
}

func main() {
	var o options
	var size, nodes, modeList string
	var timeout time.Duration
	flag.StringVar(&size, "size", "1GiB", "disk image size (its raw bytes)")
	flag.StringVar(&nodes, "nodes", "1,5,20", "node counts, comma-separated")
	flag.StringVar(&modeList, "modes", "", "modes to run, comma-separated (default: all of "+strings.Join(modeNames(), ", ")+")")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "directory for the image and the node disks (max nodes x size, sparse)")
	flag.Uint64Var(&o.mix.Seed, "seed", 16, "seed of the image's data")
	flag.IntVar(&o.mix.RandomPct, "random", 40, "percent of the image that is random (incompressible)")
	flag.IntVar(&o.mix.ZeroPct, "zero", 30, "percent of the image that is zeros (the rest is text)")
	flag.StringVar(&o.rate, "rate", "1gbit", "every link's rate (tc tbf rate)")
	flag.StringVar(&o.udpRate, "udp-rate", "900m", "udp-sender --max-bitrate")
	flag.DurationVar(&o.pause, "pause", time.Second, "pause after a sync before each load")
	flag.BoolVar(&o.verify, "verify", true, "check every disk's SHA-256 after every load")
	flag.BoolVar(&o.keep, "keep", false, "keep the directory of the image and disks")
	flag.DurationVar(&timeout, "timeout", time.Hour, "bound on the whole run")
	flag.Parse()
	var err error
	if o.size, err = diskdata.ParseSize(size); err == nil {
		o.nodes, err = parseCounts(nodes)
	}
	if err == nil && modeList != "" {
		o.modes, err = parseModes(modeList)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imaging:", err)
		os.Exit(2)
	}
	benchproc.Run(timeout, func(ctx context.Context) error {
		return vtestbed.RunProgram("bench/imaging", os.Stderr, func(t testing.TB) { bench(ctx, t, o, os.Stdout) })
	})
}

func modeNames() []string {
	var names []string
	for _, m := range modes() {
		names = append(names, m.name)
	}
	return names
}

// parseCounts reads -nodes: positive counts, each once.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 200 {
			return nil, fmt.Errorf("-nodes: %q: want counts from 1 to 200, comma-separated", f)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// parseModes reads -modes: names of the mode table.
func parseModes(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(modeNames(), f) {
			return nil, fmt.Errorf("-modes: unknown mode %q (have %s)", f, strings.Join(modeNames(), ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

func bench(ctx context.Context, t testing.TB, o options, out io.Writer) {
	testenv.Root(t, "network namespaces, a bridge, veths, tc")
	testenv.Programs(t, "Debian: iproute2, udpcast, zstd, curl, ethtool; make bench-deps installs them",
		"ip", "tc", "ethtool", "udp-sender", "udp-receiver", "zstd", "curl", "bash")
	dir, err := os.MkdirTemp(o.dir, "bench-imaging-")
	if err != nil {
		t.Fatal(err)
	}
	if !o.keep {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	r := newRig(ctx, t, o, dir, slices.Max(o.nodes))

	began := time.Now()
	raw := filepath.Join(dir, "raw.img")
	if r.rawSum, err = diskdata.Make(raw, o.size, o.mix); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.imageDir(), 0o750); err != nil {
		t.Fatal(err)
	}
	stored := ""
	for _, f := range imageFormats {
		path := filepath.Join(r.imageDir(), f.name+f.ext)
		size, err := f.store(raw, path)
		if err != nil {
			t.Fatalf("storing the image as %s: %v", f.format, err)
		}
		r.images[f.format] = storedImage{name: f.name, path: path, size: size}
		stored += fmt.Sprintf(", stored %s %.1f MiB (%.1f%%)", f.format, float64(size)/(1<<20), 100*float64(size)/float64(o.size))
	}
	// The raw data has served: the disks are checked by its sum.
	if err := os.Remove(raw); err != nil {
		t.Fatal(err)
	}
	r.startAppliance(ctx)

	fmt.Fprintf(out, "# Imaging N nodes at once: %d MiB image (%d%% random, %d%% zeros, seed %d)%s\n",
		o.size>>20, o.mix.RandomPct, o.mix.ZeroPct, o.mix.Seed, stored)
	fmt.Fprintf(out, "links: tc tbf %s each way; udp-sender --max-bitrate %s; node disks: %s in %s; %d CPUs, %s; made in %v; load average %s\n",
		o.rate, o.udpRate, fsType(dir), dir, runtime.NumCPU(), runtime.Version(), time.Since(began).Round(time.Second), benchproc.LoadAvg())

	var rs results
	for _, n := range o.nodes {
		prev := ""
		for _, m := range modes() {
			if (len(o.modes) > 0 && !slices.Contains(o.modes, m.name)) || (m.oneNode && n != 1) {
				continue
			}
			if m.delta && prev != m.format {
				// Fresh disks would make a reload a full load.
				fmt.Fprintf(os.Stderr, "%s, %d nodes: skipped: it reloads what a full load of the %s image just before it left\n", m.name, n, m.format)
				continue
			}
			prev = m.format
			res, err := measure(ctx, r, m, r.nodes[:n])
			if err != nil {
				t.Fatalf("%s, %d nodes: %v", m.name, n, err)
			}
			fmt.Fprintf(os.Stderr, "%-16s %2d nodes: %7.2fs, %8.1f MiB sent (%.2fx stored); load average %s\n",
				m.name, n, res.wall.Seconds(), float64(res.sent)/(1<<20), res.ratio(), benchproc.LoadAvg())
			rs = append(rs, res)
		}
	}
	printReport(out, rs, o.nodes)
}

// measure runs one mode's load onto nodes and checks their disks.
func measure(ctx context.Context, r *rig, m mode, nodes []*node) (result, error) {
	if !m.delta {
		if err := r.freshDisks(nodes); err != nil {
			return result{}, err
		}
	}
	// The writeback of the load before settles first: no load pays for
	// another's.
	syscall.Sync()
	select {
	case <-time.After(r.o.pause):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	before, err := r.sent(ctx)
	if err != nil {
		return result{}, err
	}
	wall, err := m.load(ctx, r, nodes)
	if err != nil {
		return result{}, err
	}
	after, err := r.sent(ctx)
	if err != nil {
		return result{}, err
	}
	if r.o.verify {
		if err := r.verify(nodes); err != nil {
			return result{}, err
		}
	}
	return result{mode: m.name, appliance: m.appliance, n: len(nodes), wall: wall, sent: after - before,
		stored: r.images[m.format].size, diskSize: r.o.size}, nil
}

// verify checks that every disk holds the image, a few at a time.
func (r *rig) verify(nodes []*node) error {
	errs := make([]error, len(nodes))
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			sum, err := diskdata.FileSum(n.disk)
			switch {
			case err != nil:
				errs[i] = err
			case !bytes.Equal(sum, r.rawSum):
				errs[i] = fmt.Errorf("%s's disk differs from the image", n.hrn)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fsType names the file system dir is on, for the header.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "?"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	}
	return fmt.Sprintf("fs 0x%x", st.Type)
}
