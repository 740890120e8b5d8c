// Command tftp benchmarks netbootd's TFTP server (package tftpd) against
// tftpd-hpa on loopback, serving the same root to the same client: by
// default a lock-step client with one epoll event loop per CPU
// (client_linux.go, -client-threads); -client pin uses pin/tftp's client,
// a goroutine per client, which costs about as much CPU as the server it
// measures.
//
// Scenarios:
//
//	single:  one client fetches a 32 MiB file at blksize 1468
//	boot-N:  N clients at once each fetch an 8 MiB kernel, then a 20 MiB
//	         initramfs, at blksize 1468 (a rack booting)
//
// Each server runs as its own child process: netbootd's as this program
// re-run with -serve, tftpd-hpa as `in.tftpd -L -s ROOT -a 127.0.0.1:PORT
// -u root`. Memory is read from /proc: VmRSS sampled every 50 ms and VmHWM
// of the netbootd process; for tftpd-hpa, the sum of VmRSS over the
// listener and its forked children.
//
// Usage (as root, tftpd-hpa installed):
//
//	go run ./bench/tftp
//	go run ./bench/tftp -clients 50,200 -single-rounds 9 -rounds 3
//	taskset -c 0 go run ./bench/tftp -server-cpus 1   # client and servers on their own CPU
//	go run ./bench/tftp -servers netbootd,netbootd:1,tftpd-hpa   # also netbootd with GOMAXPROCS=1
//	go run ./bench/tftp -servers netbootd,netbootd+GOGC=off,tftpd-hpa   # runtime settings side by side
//	go run ./bench/tftp -client pin   # pin/tftp's client instead of the epoll one
//
// On a small shared machine the clients and the server compete for the
// same CPUs and the rounds vary a lot: the table gives median, min and
// max, and the servers take turns round by round so that a slow spell
// does not fall on one of them only. It also gives the client's CPU per
// GB: when the client uses as much as the servers, the machine is shared
// between them and the ratio understates the servers' difference.
//
// All traffic goes to 127.0.0.1. Every client has a per-packet timeout and
// retry bound, and the whole run is bounded by -timeout.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/orbit-lab/netboot/bench/internal/benchproc"
	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/tftpd"
)

type options struct {
	blksize    int
	single     int64
	kernel     int64
	initrd     int64
	clients    []int
	rounds     int // rounds of each boot scenario
	rounds1    int // rounds of the single-client scenario
	timeout    time.Duration
	pktTime    time.Duration
	tftpdPath  string
	servers    []string
	keepRoot   bool
	cpuProfile string
	serverCPUs string // taskset CPU list for the server processes
	client     string // "epoll" or "pin"
	// clientThreads is how many event loops (OS threads) the epoll
	// client splits the clients over.
	clientThreads int
}

func main() {
	benchproc.Child(serve)
	var o options
	var clients, servers string
	flag.IntVar(&o.blksize, "blksize", 1468, "block size the clients ask for")
	flag.Int64Var(&o.single, "single", 32<<20, "size of the file in the single-client scenario (bytes)")
	flag.Int64Var(&o.kernel, "kernel", 8<<20, "kernel size in the boot scenarios (bytes)")
	flag.Int64Var(&o.initrd, "initrd", 20<<20, "initramfs size in the boot scenarios (bytes)")
	flag.StringVar(&clients, "clients", "50,200", "parallel clients in the boot scenarios, comma-separated")
	flag.IntVar(&o.rounds1, "single-rounds", 9, "runs of the single-client scenario per server (it is the noisiest)")
	flag.IntVar(&o.rounds, "rounds", 3, "runs of each boot scenario per server")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.DurationVar(&o.pktTime, "packet-timeout", 2*time.Second, "client per-packet timeout (5 retries)")
	flag.StringVar(&o.tftpdPath, "in.tftpd", "in.tftpd", "tftpd-hpa server binary")
	flag.StringVar(&servers, "servers", "netbootd,tftpd-hpa", "servers to run, comma-separated: netbootd, netbootd:N (with GOMAXPROCS=N), netbootd+KEY=VALUE[+...] (with that environment, e.g. GOGC=400), tftpd-hpa")
	flag.BoolVar(&o.keepRoot, "keep", false, "keep the generated root directory")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of netbootd's server process here")
	flag.StringVar(&o.serverCPUs, "server-cpus", "", "run the servers under taskset -c LIST (run this program under taskset too, on other CPUs)")
	flag.IntVar(&o.clientThreads, "client-threads", runtime.NumCPU(), "event loops (threads) of the epoll client")
	flag.StringVar(&o.client, "client", "epoll", "client: epoll (event loops of raw system calls, see -client-threads) or pin (pin/tftp's client, a goroutine per client)")
	flag.Parse()
	for _, f := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bad -clients %q\n", clients)
			os.Exit(2)
		}
		o.clients = append(o.clients, n)
	}
	o.servers = strings.Split(servers, ",")
	if o.client != "epoll" && o.client != "pin" {
		fmt.Fprintf(os.Stderr, "bad -client %q (epoll, pin)\n", o.client)
		os.Exit(2)
	}

	benchproc.Run(o.timeout, func(ctx context.Context) error { return run(ctx, o, os.Stdout) })
}

// serve is the child process running netbootd's server: it prints its
// address and serves until stdin is closed or it is signalled.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	root := fs.String("root", "", "root directory")
	listen := fs.String("listen", "127.0.0.1:0", "address")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfile, err := benchproc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, cancel := benchproc.ChildContext()
	defer cancel()
	// Failures only: logging 400 successes per scenario would measure the
	// log, not the server.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := tftpd.New(tftpd.Config{Listen: *listen, Root: *root}, log, nil)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	if s.Addr() == nil {
		return <-done
	}
	fmt.Printf("ADDR %s\n", s.Addr())
	return <-done
}

type file struct {
	name string
	size int64
	crc  uint32
}

type result struct {
	server    string
	transfers int
	failed    int
	bytes     int64
	elapsed   time.Duration
	firstErr  error
	memPeak   int64         // bytes, sampled VmRSS (sum over processes for tftpd-hpa)
	memHWM    int64         // bytes, VmHWM of netbootd's process; 0 for tftpd-hpa
	processes int           // most server processes seen at once
	cpu       time.Duration // server CPU (user+system, children included)
	clientCPU time.Duration // this process: the clients
}

func (r result) mbps() float64 { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }

// summary is one scenario on one server over all rounds.
type summary struct {
	scenario, server  string
	rounds            int
	transfers, failed int // summed over rounds
	bytes             int64
	median, low, high float64 // MB/s
	memPeak, memHWM   int64   // largest over rounds
	processes         int
	cpuPerGB          float64 // server CPU seconds per 10^9 bytes served
	clientCPUPerGB    float64 // the same for the client process
	firstErr          error
}

func summarize(scenario, server string, runs []result) summary {
	s := summary{scenario: scenario, server: server, rounds: len(runs)}
	var rates []float64
	var cpu, clientCPU time.Duration
	for _, r := range runs {
		cpu += r.cpu
		clientCPU += r.clientCPU
		s.transfers += r.transfers
		s.failed += r.failed
		s.bytes += r.bytes
		rates = append(rates, r.mbps())
		s.memPeak = max(s.memPeak, r.memPeak)
		s.memHWM = max(s.memHWM, r.memHWM)
		s.processes = max(s.processes, r.processes)
		if s.firstErr == nil {
			s.firstErr = r.firstErr
		}
	}
	if s.bytes > 0 {
		s.cpuPerGB = cpu.Seconds() / (float64(s.bytes) / 1e9)
		s.clientCPUPerGB = clientCPU.Seconds() / (float64(s.bytes) / 1e9)
	}
	slices.Sort(rates)
	s.low, s.high = rates[0], rates[len(rates)-1]
	if n := len(rates); n%2 == 1 {
		s.median = rates[n/2]
	} else {
		s.median = (rates[n/2-1] + rates[n/2]) / 2
	}
	return s
}

func run(ctx context.Context, o options, out io.Writer) (err error) {
	root, err := os.MkdirTemp("", "tftp-bench-")
	if err != nil {
		return err
	}
	if !o.keepRoot {
		defer os.RemoveAll(root)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	single, err := makeFile(root, "single.img", o.single, 1)
	if err != nil {
		return err
	}
	kernel, err := makeFile(root, "vmlinuz", o.kernel, 2)
	if err != nil {
		return err
	}
	initrd, err := makeFile(root, "initrd.img", o.initrd, 3)
	if err != nil {
		return err
	}

	type scenario struct {
		name    string
		clients int
		files   []file
		rounds  int
	}
	scenarios := []scenario{{fmt.Sprintf("single %s@%d", size(o.single), o.blksize), 1, []file{single}, o.rounds1}}
	for _, n := range o.clients {
		scenarios = append(scenarios, scenario{fmt.Sprintf("boot %dx(%s+%s)@%d", n, size(o.kernel), size(o.initrd), o.blksize), n, []file{kernel, initrd}, o.rounds})
	}

	// Both servers run for the whole benchmark and take turns, round by
	// round, so that a noisy moment of the machine does not fall on one
	// server only. The table reports the median round.
	var servers []*server
	defer func() {
		for _, srv := range servers {
			if serr := srv.stop(); serr != nil && err == nil {
				err = fmt.Errorf("%s: %w", srv.name, serr)
			}
		}
	}()
	for _, name := range o.servers {
		srv, err := startServer(ctx, name, root, o)
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		servers = append(servers, srv)
	}
	var results []summary
	for _, sc := range scenarios {
		runs := make([][]result, len(servers))
		for round := range sc.rounds {
			for i, srv := range servers {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := runScenario(ctx, srv, sc.clients, sc.files, o)
				fmt.Fprintf(os.Stderr, "%-10s %-30s round %d: %d transfers, %d failed, %.1f MB/s in %v, peak RSS %.1f MiB\n",
					srv.name, sc.name, round+1, r.transfers, r.failed, r.mbps(), r.elapsed.Round(time.Millisecond), float64(r.memPeak)/(1<<20))
				runs[i] = append(runs[i], r)
			}
		}
		for i, srv := range servers {
			results = append(results, summarize(sc.name, srv.name, runs[i]))
		}
	}
	printTable(out, o, results)
	return nil
}

func size(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dB", n)
}

// makeFile writes size random bytes, world-readable (tftpd-hpa -s serves
// only those) and returns its CRC for checking downloads.
func makeFile(dir, name string, size int64, seed uint64) (file, error) {
	var key [32]byte
	key[0] = byte(seed)
	rng := rand.NewChaCha8(key)
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return file{}, err
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rng, size); err != nil {
		f.Close()
		return file{}, err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return file{}, err
	}
	if err := f.Close(); err != nil {
		return file{}, err
	}
	return file{name: name, size: size, crc: h.Sum32()}, nil
}

type server struct {
	name string
	addr string
	cmd  *exec.Cmd
	stop func() error // says whether the server exited cleanly
}

func startServer(ctx context.Context, name, root string, o options) (*server, error) {
	// command runs path with args, under taskset if the servers are pinned.
	command := func(path string, args ...string) *exec.Cmd {
		if o.serverCPUs != "" {
			return exec.CommandContext(ctx, "taskset", append([]string{"-c", o.serverCPUs, path}, args...)...)
		}
		return exec.CommandContext(ctx, path, args...)
	}
	// "netbootd:1+GOGC=400": the same server with GOMAXPROCS=1 and
	// GOGC=400 in its environment, to try runtime settings side by side.
	spec, envs, _ := strings.Cut(name, "+")
	base, procs, _ := strings.Cut(spec, ":")
	switch base {
	case "netbootd":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		args := []string{"-serve", "-root", root, "-listen", "127.0.0.1:0"}
		if o.cpuProfile != "" {
			args = append(args, "-cpuprofile", o.cpuProfile)
		}
		cmd := command(self, args...)
		cmd.Stderr = os.Stderr
		cmd.Env = os.Environ()
		if procs != "" {
			cmd.Env = append(cmd.Env, "GOMAXPROCS="+procs)
		}
		if envs != "" {
			for _, kv := range strings.Split(envs, "+") {
				if !strings.Contains(kv, "=") {
					return nil, fmt.Errorf("server %q: %q is not KEY=VALUE", name, kv)
				}
				cmd.Env = append(cmd.Env, kv)
			}
		}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
		if err != nil || !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait() // killed: its exit error says nothing
			if err == nil {
				err = errors.New("no ADDR line")
			}
			return nil, fmt.Errorf("child said %q: %w", line, err)
		}
		return &server{name: name, addr: addr, cmd: cmd, stop: func() error {
			stdin.Close() // the child's cue to end (benchproc.ChildContext)
			return stopChild(cmd)
		}}, nil
	case "tftpd-hpa":
		path, err := exec.LookPath(o.tftpdPath)
		if err != nil {
			return nil, fmt.Errorf("%w (apt-get install tftpd-hpa)", err)
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// -L: foreground; -s: chroot to root, as deployed; -u root: the
		// default user "nobody" may not reach a temporary directory.
		cmd := command(path, "-L", "-s", root, "-a", addr, "-u", "root")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		s := &server{name: name, addr: addr, cmd: cmd, stop: func() error { return stopChild(cmd) }}
		if err := waitServing(ctx, addr); err != nil {
			return nil, errors.Join(err, s.stop())
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown server %q (netbootd, tftpd-hpa)", name)
}

// stopChild ends a started server: SIGTERM, SIGKILL if it is still there
// 10 s later. It says whether the server exited cleanly: one that did not
// may have misbehaved while it was measured.
func stopChild(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	err, killed := childproc.Stop(cmd.Process, syscall.SIGTERM, 10*time.Second, done)
	if killed {
		return errors.New("still running 10s after SIGTERM; killed")
	}
	return err
}

func freePort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// waitServing asks for a missing file until the server answers (an error
// packet is an answer), for up to 5 s.
func waitServing(ctx context.Context, addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tftp.NewClient(addr)
		if err != nil {
			return err
		}
		c.SetTimeout(200 * time.Millisecond)
		c.SetRetries(1)
		_, err = c.Receive("no-such-file-probe", "octet")
		if err != nil && strings.Contains(err.Error(), "code") {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not answering: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runScenario starts clients at once; each fetches files in order.
func runScenario(ctx context.Context, srv *server, clients int, files []file, o options) result {
	r := result{server: srv.name, transfers: clients * len(files)}
	var (
		failed   atomic.Int64
		bytes    atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	samplerCtx, stopSampler := context.WithCancel(ctx)
	mem := make(chan [3]int64, 1)
	go func() { mem <- sampleMemory(samplerCtx, srv) }()

	busy0, self0 := systemBusy(), selfCPU()
	t0 := time.Now()
	if o.client == "epoll" {
		n, errs := runEpollClients(ctx, srv.addr, clients, files, o)
		bytes.Store(n)
		failed.Store(int64(len(errs)))
		if len(errs) > 0 {
			firstErr = errs[0]
		}
	} else {
		runPinClients(ctx, srv.addr, clients, files, o, &bytes, &failed, func(err error) {
			errOnce.Do(func() { firstErr = err })
		})
	}
	r.elapsed = time.Since(t0)
	// The server's CPU is the machine's busy time less this process (the
	// clients). tftpd-hpa's children are reaped without wait(), so their
	// time never reaches the listener's cutime: measure both servers the
	// same, indirect way.
	r.clientCPU = selfCPU() - self0
	r.cpu = (systemBusy() - busy0) - r.clientCPU
	stopSampler()
	m := <-mem
	r.memPeak, r.memHWM, r.processes = m[0], m[1], int(m[2])
	r.failed = int(failed.Load())
	r.bytes = bytes.Load()
	r.firstErr = firstErr
	return r
}

// runPinClients runs each client in its own goroutine with pin/tftp's
// client, all started at once.
func runPinClients(ctx context.Context, addr string, clients int, files []file, o options, bytes, failed *atomic.Int64, fail func(error)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, f := range files {
				n, err := fetch(ctx, addr, f, o)
				bytes.Add(n)
				if err != nil {
					failed.Add(1)
					fail(err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
}

// fetch downloads f and checks size and CRC. It returns the bytes received.
func fetch(ctx context.Context, addr string, f file, o options) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c, err := tftp.NewClient(addr)
	if err != nil {
		return 0, err
	}
	c.SetTimeout(o.pktTime)
	c.SetRetries(5)
	c.SetBlockSize(o.blksize)
	c.RequestTSize(true)
	wt, err := c.Receive(f.name, "octet")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.name, err)
	}
	if n, ok := wt.(tftp.IncomingTransfer).Size(); !ok || n != f.size {
		return 0, fmt.Errorf("%s: tsize %d (%v), want %d", f.name, n, ok, f.size)
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := wt.WriteTo(h)
	if err != nil {
		return n, fmt.Errorf("%s after %d bytes: %w", f.name, n, err)
	}
	if n != f.size || h.Sum32() != f.crc {
		return n, fmt.Errorf("%s: got %d bytes crc %08x, want %d crc %08x", f.name, n, h.Sum32(), f.size, f.crc)
	}
	return n, nil
}

// sampleMemory polls the server's processes every 50 ms until ctx is done
// and returns {peak summed VmRSS, VmHWM of the main process (netbootd
// only), most processes at once}, in bytes.
func sampleMemory(ctx context.Context, srv *server) [3]int64 {
	pid := srv.cmd.Process.Pid
	var peak, procs int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pids := append([]int{pid}, children(pid)...)
		var total int64
		for _, p := range pids {
			total += procStatus(p, "VmRSS")
		}
		peak = max(peak, total)
		procs = max(procs, int64(len(pids)))
		select {
		case <-ctx.Done():
			var hwm int64
			if strings.HasPrefix(srv.name, "netbootd") {
				hwm = procStatus(pid, "VmHWM")
			}
			return [3]int64{peak, hwm, procs}
		case <-tick.C:
		}
	}
}

// children lists the processes whose parent is pid (tftpd-hpa forks one
// per transfer). It reads the kernel's list of the main thread's children
// (tftpd-hpa forks from its only thread): the sampler runs every 50 ms in
// the client process, and scanning all of /proc instead costs that process
// CPU that the clients then lack. Without that file (a kernel without
// CONFIG_PROC_CHILDREN) it scans /proc.
func children(pid int) []int {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		var out []int
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				out = append(out, p)
			}
		}
		return out
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// systemBusy is the CPU time all CPUs spent not idle (user, nice, system,
// irq, softirq) since boot, from /proc/stat.
func systemBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq ...
	var ticks int64
	for _, k := range []int{1, 2, 3, 6, 7} {
		if k < len(f) {
			n, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}

// selfCPU is this process's user+system time: the clients.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatus reads a "Key: N kB" line of /proc/PID/status, in bytes.
func procStatus(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func printTable(out io.Writer, o options, results []summary) {
	pinned := ""
	if o.serverCPUs != "" {
		pinned = fmt.Sprintf(", servers on CPU(s) %s", o.serverCPUs)
	}
	client := "pin/tftp client, a goroutine per client"
	if o.client == "epoll" {
		client = fmt.Sprintf("epoll client on %d thread(s)", o.clientThreads)
	}
	fmt.Fprintf(out, "\nTFTP on 127.0.0.1, %s, blksize %d, client on %d CPU(s)%s, servers taking turns round by round; MB = 10^6 bytes\n\n",
		client, o.blksize, runtime.NumCPU(), pinned)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\trounds\ttransfers\tfailed\tMB/s median\tMB/s min-max\tnetbootd/tftpd-hpa\tserver CPU s/GB\tclient CPU s/GB\tpeak RSS MiB\tprocesses\t")
	for i, r := range results {
		ratio := ""
		if strings.HasPrefix(r.server, "netbootd") {
			for _, h := range results {
				if h.scenario == r.scenario && h.server == "tftpd-hpa" && h.median > 0 {
					ratio = fmt.Sprintf("%.2f", r.median/h.median)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f-%.1f\t%s\t%.1f\t%.1f\t%.1f\t%d\t\n",
			r.scenario, r.server, r.rounds, r.transfers, r.failed, r.median, r.low, r.high, ratio, r.cpuPerGB,
			r.clientCPUPerGB, float64(r.memPeak)/(1<<20), r.processes)
		if i+1 < len(results) && results[i+1].scenario != r.scenario {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t")
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "\nserver CPU: machine busy time (/proc/stat) less the client process's own (getrusage), per 10^9 bytes sent; client CPU: the client process's")
	fmt.Fprintln(out, "peak RSS: VmRSS sampled every 50 ms, summed over the server's processes (tftpd-hpa forks one per transfer)")
	for _, r := range results {
		if strings.HasPrefix(r.server, "netbootd") && r.memHWM > 0 {
			fmt.Fprintf(out, "%s VmHWM after %s: %.1f MiB (its own process, /proc/PID/status)\n", r.server, r.scenario, float64(r.memHWM)/(1<<20))
		}
	}
	for _, r := range results {
		if r.firstErr != nil {
			fmt.Fprintf(out, "first failure, %s, %s: %v\n", r.server, r.scenario, r.firstErr)
		}
	}
}
