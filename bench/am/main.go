// Command am benchmarks netbootd's Aggregate Manager HTTP API.
//
// It builds nothing: give it a netbootd binary (go build -o bin/ ./cmd/...),
// and it runs that binary as a child process on 127.0.0.1 with a temporary
// state directory, TFTP root and a generated 400-node inventory, then
// measures
//
//   - the latency of one OMF setBootImageNS call naming all 400 nodes, and
//     checks that every call answers 200 and leaves 400 links in
//     pxelinux.cfg;
//   - single-node set/clear throughput and latency with many concurrent
//     clients, once through the JSON API (PUT/DELETE /api/v1/nodes/{hrn}/boot)
//     and once through the OMF calls (setBootImageNS/clearBootImageNS).
//
// It prints a markdown table with the targets and a PASS/MISS column, and
// exits non-zero only if a request failed or a check did not hold, never for
// a missed target.
//
//	go build -o bin/ ./cmd/netbootd && go run ./bench/am --netbootd bin/netbootd
package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
)

const (
	domain     = "grid"
	numNodes   = 400 // a 20x20 grid
	gridSide   = 20
	image      = "orbit-2.0.0"
	targetBulk = 50 * time.Millisecond // 400-node set, p99
	targetOne  = 5 * time.Millisecond  // single-node set at --clients clients, p99
)

func main() {
	os.Exit(run())
}

type options struct {
	netbootd string
	clients  int
	duration time.Duration
	runs     int
	warmup   int
	keep     bool
	quiet    bool
	tmpdir   string
	rate     float64 // set+clear calls per second per client in the paced phase
	// extraConfig is appended to netbootd's config.
	extraConfig string
}

func run() int {
	var o options
	flag.StringVar(&o.netbootd, "netbootd", "", "path of the netbootd binary to run (required; go build -o bin/ ./cmd/netbootd)")
	flag.IntVar(&o.clients, "clients", 50, "concurrent clients in the single-node phases (at most 400: one node each)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each single-node phase")
	flag.IntVar(&o.runs, "runs", 20, "measured runs of the 400-node set")
	flag.IntVar(&o.warmup, "warmup", 2, "unmeasured warm-up runs of the 400-node set")
	flag.Float64Var(&o.rate, "client-rate", 10, "calls per second of each client in the paced phase (0 skips it): 50 ECs calling now and then, not flat out")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (config, database, server log) for inspection")
	// Every client calls from 127.0.0.1, standing for as many ECs: as one
	// source, they would be over netbootd's per-source OMF limit.
	flag.StringVar(&o.extraConfig, "extra-config", "limits: { omf: { per_minute: 0 } }",
		"YAML appended to netbootd's config (the default turns off the per-source OMF limit; \"\" for a netbootd older than the limits)")
	flag.BoolVar(&o.quiet, "quiet", false, "no progress messages on stderr")
	flag.StringVar(&o.tmpdir, "tmpdir", "", "parent of the temporary directory holding tftp_root and state_dir (default: $TMPDIR or /tmp); e.g. /dev/shm to take the disk's file system out of the measurement")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		return usage("unexpected arguments: %q", flag.Args())
	case o.netbootd == "":
		return usage("--netbootd is required")
	case o.clients < 1 || o.clients > numNodes:
		return usage("--clients %d: want 1..%d", o.clients, numNodes)
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return usage("--duration %v: want a positive duration of at most 10m", o.duration)
	case o.runs < 1 || o.runs > 1000:
		return usage("--runs %d: want 1..1000", o.runs)
	case o.warmup < 0 || o.warmup > 100:
		return usage("--warmup %d: want 0..100", o.warmup)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opt: o}
	if !o.quiet {
		b.progress = os.Stderr
	} else {
		b.progress = io.Discard
	}
	err := b.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w)", err)
		}
		fmt.Fprintln(os.Stderr, "bench/am:", err)
		return 1
	}
	if b.failures() > 0 {
		fmt.Fprintf(os.Stderr, "bench/am: %d failed requests or checks\n", b.failures())
		return 1
	}
	return 0
}

func usage(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "bench/am: "+format+"\n", args...)
	flag.Usage()
	return 2
}

type bench struct {
	opt      options
	progress io.Writer
	srv      *server
	client   *http.Client
	nodes    []node

	bulk            bulkResult
	api, omf, paced loadResult
	serverGo        string
	startedAt       time.Time
}

type node struct {
	hrn, hostname, ip, mac, hex string
	x, y                        int
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench/am: "+format+"\n", args...)
}

func (b *bench) failures() int {
	return b.bulk.failures + b.api.errors + b.omf.errors + b.paced.errors
}

func (b *bench) run(ctx context.Context) (err error) {
	bin, err := filepath.Abs(b.opt.netbootd)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(bin); err != nil {
		return fmt.Errorf("--netbootd: %w", err)
	} else if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("--netbootd %s: not an executable file", bin)
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		b.serverGo = bi.GoVersion
	}
	b.nodes = makeNodes()

	dir, err := os.MkdirTemp(b.opt.tmpdir, "netboot-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if b.opt.keep {
			b.logf("kept %s", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()

	b.client = &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			// Only ever 127.0.0.1: no proxy from the environment.
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        4 * maxInt(b.opt.clients, 64),
			MaxIdleConnsPerHost: 2 * maxInt(b.opt.clients, 64),
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	defer b.client.CloseIdleConnections()

	b.srv, err = startServer(ctx, bin, dir, b.opt.extraConfig, b.nodes, b.client, b.logf)
	if err != nil {
		return err
	}
	defer func() {
		if serr := b.srv.stop(); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			b.srv.dumpLog(os.Stderr, 30)
		}
	}()

	b.startedAt = time.Now()
	b.logf("400-node set: %d warm-up + %d measured runs", b.opt.warmup, b.opt.runs)
	if b.bulk, err = b.runBulk(ctx); err != nil {
		return err
	}
	for _, v := range []*struct {
		name string
		res  *loadResult
		omf  bool
		pace time.Duration
	}{{"JSON API", &b.api, false, 0}, {"OMF", &b.omf, true, 0}, {"JSON API, paced", &b.paced, false, b.pace()}} {
		if v.res == &b.paced && v.pace == 0 {
			continue
		}
		b.logf("single-node set/clear via %s: %d clients for %v", v.name, b.opt.clients, b.opt.duration)
		if *v.res, err = b.runLoad(ctx, v.omf, v.pace); err != nil {
			return err
		}
	}
	b.report(os.Stdout)
	return nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// makeNodes is the generated grid: nodeX-Y.grid.orbit-lab.org, 10.10.X.Y.
func makeNodes() []node {
	nodes := make([]node, 0, numNodes)
	for i := 0; i < numNodes; i++ {
		x, y := i/gridSide+1, i%gridSide+1
		nodes = append(nodes, node{
			hrn:      fmt.Sprintf("node%d-%d.%s.orbit-lab.org", x, y, domain),
			hostname: fmt.Sprintf("node%d-%d", x, y),
			ip:       fmt.Sprintf("10.10.%d.%d", x, y),
			mac:      fmt.Sprintf("00:03:1d:0a:%02x:%02x", x, y),
			hex:      fmt.Sprintf("0A0A%02X%02X", x, y),
			x:        x,
			y:        y,
		})
	}
	return nodes
}

func inventoryYAML(nodes []node) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "images:\n  - { name: %s, description: ORBIT RAM image for imaging }\n", image)
	fmt.Fprintf(&b, "testbeds:\n  - domain: %s\n    nodes:\n", domain)
	for _, n := range nodes {
		fmt.Fprintf(&b, "      - { hrn: %s, hostname: %s, control_ip: %s, control_mac: \"%s\", x: %d, y: %d, disk: /dev/sda, pxe_image: %s }\n",
			n.hrn, n.hostname, n.ip, n.mac, n.x, n.y, image)
	}
	return b.Bytes()
}

// server is the netbootd child process.
type server struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
	logFile *os.File
	logPath string
	base    string // http://127.0.0.1:port
	cfgDir  string // <tftp_root>/pxelinux.cfg
	// tokenFile is the admin token netbootd makes at its first start;
	// token, read by waitReady, goes with every JSON API call.
	tokenFile string
	token     string
}

func startServer(ctx context.Context, bin, dir, extra string, nodes []node, client *http.Client, logf func(string, ...any)) (*server, error) {
	tftpRoot := filepath.Join(dir, "tftpboot")
	cfgDir := filepath.Join(tftpRoot, "pxelinux.cfg")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	pxe := "DEFAULT orbit\nLABEL orbit\n  KERNEL orbit-2.0.0/vmlinuz\n  APPEND initrd=orbit-2.0.0/initrd.img console=ttyS0,115200\n"
	if err := os.WriteFile(filepath.Join(cfgDir, image), []byte(pxe), 0o644); err != nil {
		return nil, err
	}
	seed := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(seed, inventoryYAML(nodes), 0o644); err != nil {
		return nil, err
	}
	// The port is free when we ask; another process could take it before
	// netbootd binds, so a bind failure is retried on a new port.
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf("state_dir: %q\ntftp_root: %q\nhttp: { listen: \"127.0.0.1:%d\" }\ntftp: { listen: \"\" }\ninventory: { seed: %q }\n",
			filepath.Join(dir, fmt.Sprintf("state%d", attempt)), tftpRoot, port, seed)
		cfg += extra + "\n"
		cfgPath := filepath.Join(dir, fmt.Sprintf("netbootd%d.yaml", attempt))
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		s, err := spawn(bin, cfgPath, filepath.Join(dir, fmt.Sprintf("netbootd%d.log", attempt)), port, cfgDir)
		if err != nil {
			return nil, err
		}
		s.tokenFile = filepath.Join(dir, fmt.Sprintf("state%d", attempt), "admin.token")
		logf("started %s (pid %d) on %s, log %s", bin, s.cmd.Process.Pid, s.base, s.logPath)
		lastErr = s.waitReady(ctx, client)
		if lastErr == nil {
			return s, nil
		}
		if serr := s.stop(); serr != nil {
			lastErr = errors.Join(lastErr, serr)
		}
		if !strings.Contains(s.tail(20), "address already in use") {
			s.dumpLog(os.Stderr, 30)
			return nil, lastErr
		}
		logf("port %d was taken, retrying", port)
	}
	return nil, lastErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func spawn(bin, cfgPath, logPath string, port int, cfgDir string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Own process group, so a ^C at the terminal reaches only us and we stop
	// the child ourselves.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{}), logFile: lf, logPath: logPath,
		base: fmt.Sprintf("http://127.0.0.1:%d", port), cfgDir: cfgDir}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// waitReady polls GET /api/v1/testbeds until the seeded grid shows up.
func (s *server) waitReady(ctx context.Context, client *http.Client) error {
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("netbootd exited before answering: %w", s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		tok, err := os.ReadFile(s.tokenFile)
		if err != nil {
			last = err.Error()
			continue
		}
		s.token = strings.TrimSpace(string(tok))
		status, body, _, err := do(ctx, client, s.token, http.MethodGet, s.base+"/api/v1/testbeds", nil)
		if err != nil {
			last = err.Error()
			continue
		}
		if status != http.StatusOK {
			last = fmt.Sprintf("HTTP %d: %s", status, snippet(body))
			continue
		}
		var tbs []struct {
			Domain string `json:"domain"`
			Nodes  int    `json:"nodes"`
		}
		if err := json.Unmarshal(body, &tbs); err != nil {
			return fmt.Errorf("GET /api/v1/testbeds: %w: %s", err, snippet(body))
		}
		for _, tb := range tbs {
			if tb.Domain == domain && tb.Nodes == numNodes {
				return nil
			}
		}
		return fmt.Errorf("GET /api/v1/testbeds: want domain %s with %d nodes, got %s", domain, numNodes, snippet(body))
	}
	return fmt.Errorf("netbootd did not answer GET /api/v1/testbeds within 20s (last: %s)", last)
}

// stop ends the child: SIGTERM, then SIGKILL if it lingers.
func (s *server) stop() error {
	defer s.logFile.Close()
	if _, killed := childproc.Stop(s.cmd.Process, syscall.SIGTERM, 10*time.Second, s.done); killed {
		return errors.New("netbootd did not stop within 10s of SIGTERM; killed")
	}
	return nil
}

func (s *server) tail(n int) string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *server) dumpLog(w io.Writer, n int) {
	if t := s.tail(n); t != "" {
		fmt.Fprintf(w, "--- last lines of the netbootd log (%s) ---\n%s\n---\n", s.logPath, t)
	}
}

// do sends one request, with token as its bearer unless "" (the OMF
// calls come from loopback, in omf.allow), and reads the whole answer;
// dur covers both.
func do(ctx context.Context, client *http.Client, token, method, u string, body []byte) (status int, respBody []byte, dur time.Duration, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	respBody, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, respBody, time.Since(start), err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// errLog counts failures and keeps the first few messages.
type errLog struct {
	mu      sync.Mutex
	n       int
	samples []string
}

func (e *errLog) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.samples) < 5 {
		e.samples = append(e.samples, fmt.Sprintf(format, args...))
	}
}

// --- phase (a): one set naming all 400 nodes ---

type bulkResult struct {
	lat      []time.Duration // measured runs
	cpu      cpuUse          // over the measured set requests only
	failures int
	samples  []string
	total    int // runs including warm-up
}

var hexRE = regexp.MustCompile(`^[0-9A-F]{8}$`)

func (b *bench) runBulk(ctx context.Context) (bulkResult, error) {
	hrns := make([]string, len(b.nodes))
	for i, n := range b.nodes {
		hrns[i] = n.hrn
	}
	q := "domain=" + url.QueryEscape(domain) + "&ns=" + url.QueryEscape(strings.Join(hrns, ","))
	setURL := b.srv.base + "/pxe/setBootImageNS?" + q
	clearURL := b.srv.base + "/pxe/clearBootImageNS?" + q

	res := bulkResult{cpu: cpuUse{ok: true}}
	var errs errLog
	for i := 0; i < b.opt.warmup+b.opt.runs; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.total++
		c0 := b.cpuNow()
		status, body, dur, err := do(ctx, b.client, "", http.MethodGet, setURL, nil)
		c1 := b.cpuNow()
		switch {
		case err != nil:
			errs.add("run %d: setBootImageNS: %v", i+1, err)
		case status != http.StatusOK:
			errs.add("run %d: setBootImageNS: HTTP %d: %s", i+1, status, snippet(body))
		case bytes.Count(body, []byte("<node ")) != numNodes:
			errs.add("run %d: setBootImageNS: answer lists %d nodes, want %d", i+1, bytes.Count(body, []byte("<node ")), numNodes)
		}
		if i >= b.opt.warmup {
			res.lat = append(res.lat, dur)
			res.cpu = res.cpu.add(c1.sub(c0))
		}
		if msg := b.checkLinks(true); msg != "" {
			errs.add("run %d: after set: %s", i+1, msg)
		}
		// Clear (not timed), so every run sets 400 links from none.
		status, body, _, err = do(ctx, b.client, "", http.MethodGet, clearURL, nil)
		switch {
		case err != nil:
			errs.add("run %d: clearBootImageNS: %v", i+1, err)
		case status != http.StatusOK:
			errs.add("run %d: clearBootImageNS: HTTP %d: %s", i+1, status, snippet(body))
		}
		if msg := b.checkLinks(false); msg != "" {
			errs.add("run %d: after clear: %s", i+1, msg)
		}
	}
	res.failures, res.samples = errs.n, errs.samples
	return res, nil
}

// checkLinks counts the hex-named entries in pxelinux.cfg and, when all
// should be set, checks each node's link points at the image. It returns
// what is wrong, or "".
func (b *bench) checkLinks(set bool) string {
	entries, err := os.ReadDir(b.srv.cfgDir)
	if err != nil {
		return err.Error()
	}
	count := 0
	for _, e := range entries {
		if hexRE.MatchString(e.Name()) {
			count++
		}
	}
	if !set {
		if count != 0 {
			return fmt.Sprintf("%d hex-named entries in pxelinux.cfg, want 0", count)
		}
		return ""
	}
	if count != numNodes {
		return fmt.Sprintf("%d hex-named entries in pxelinux.cfg, want %d", count, numNodes)
	}
	bad := 0
	for _, n := range b.nodes {
		if t, err := os.Readlink(filepath.Join(b.srv.cfgDir, n.hex)); err != nil || t != "./"+image {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Sprintf("%d of %d node links missing or not pointing at ./%s", bad, numNodes, image)
	}
	return ""
}

// --- phase (b): single-node set/clear under concurrency ---

type loadResult struct {
	set, clear []time.Duration
	elapsed    time.Duration
	cpu        cpuUse // over the timed part of the phase
	errors     int
	samples    []string
}

// pace is the gap between one paced client's calls.
func (b *bench) pace() time.Duration {
	if b.opt.rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / b.opt.rate)
}

// runLoad runs the clients flat out (pace 0: closed loop, so latency is
// clients/throughput), or each on a fixed schedule of one call per pace
// (latency at a given load; a late call goes at once, never skipped).
func (b *bench) runLoad(ctx context.Context, omf bool, pace time.Duration) (loadResult, error) {
	n := b.opt.clients
	var res loadResult
	var errs errLog
	type reqSpec struct {
		token       string
		method, url string
		body        []byte
		want        int
	}
	specs := func(nd node) (set, clear reqSpec) {
		if omf {
			q := "?domain=" + url.QueryEscape(domain) + "&ns=" + url.QueryEscape(nd.hrn)
			return reqSpec{"", http.MethodGet, b.srv.base + "/pxe/setBootImageNS" + q, nil, http.StatusOK},
				reqSpec{"", http.MethodGet, b.srv.base + "/pxe/clearBootImageNS" + q, nil, http.StatusOK}
		}
		u := b.srv.base + "/api/v1/nodes/" + url.PathEscape(nd.hrn) + "/boot"
		return reqSpec{b.srv.token, http.MethodPut, u, []byte(`{"image":"` + image + `"}`), http.StatusOK},
			reqSpec{b.srv.token, http.MethodDelete, u, nil, http.StatusNoContent}
	}
	call := func(r reqSpec, what string) time.Duration {
		status, body, dur, err := do(ctx, b.client, r.token, r.method, r.url, r.body)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				errs.add("%s %s: %v", r.method, what, err)
			}
		case status != r.want:
			errs.add("%s %s: HTTP %d, want %d: %s", r.method, what, status, r.want, snippet(body))
		}
		return dur
	}

	setLat := make([][]time.Duration, n)
	clearLat := make([][]time.Duration, n)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	var deadline time.Time
	for i := 0; i < n; i++ {
		ready.Add(1)
		done.Add(1)
		go func(i int) {
			defer done.Done()
			nd := b.nodes[i]
			set, clr := specs(nd)
			// One unmeasured pair opens this client's connection.
			call(set, nd.hrn)
			call(clr, nd.hrn)
			ready.Done()
			<-start
			sl := make([]time.Duration, 0, 4096)
			cl := make([]time.Duration, 0, 4096)
			// Spread the paced clients' schedules over one gap.
			next := time.Now().Add(pace * time.Duration(i) / time.Duration(n))
			wait := func() {
				if pace > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(pace)
				}
			}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				wait()
				sl = append(sl, call(set, nd.hrn))
				wait()
				cl = append(cl, call(clr, nd.hrn))
			}
			setLat[i], clearLat[i] = sl, cl
		}(i)
	}
	ready.Wait()
	c0 := b.cpuNow()
	t0 := time.Now()
	deadline = t0.Add(b.opt.duration)
	close(start)
	done.Wait()
	res.elapsed = time.Since(t0)
	res.cpu = b.cpuNow().sub(c0)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for i := 0; i < n; i++ {
		res.set = append(res.set, setLat[i]...)
		res.clear = append(res.clear, clearLat[i]...)
	}
	// Every client ended with a clear: no link may be left.
	if msg := b.checkLinks(false); msg != "" {
		errs.add("after the phase: %s", msg)
	}
	res.errors, res.samples = errs.n, errs.samples
	return res, nil
}

// --- CPU accounting ---

// cpuUse is CPU time (user+system) of netbootd and of this program.
type cpuUse struct {
	server, self time.Duration
	ok           bool
}

func (c cpuUse) sub(o cpuUse) cpuUse {
	return cpuUse{server: c.server - o.server, self: c.self - o.self, ok: c.ok && o.ok}
}

func (c cpuUse) add(o cpuUse) cpuUse {
	return cpuUse{server: c.server + o.server, self: c.self + o.self, ok: c.ok && o.ok}
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux.
const clockTick = 10 * time.Millisecond

// cpuNow reads netbootd's CPU time from /proc (10 ms resolution) and ours
// from getrusage; ok is false where either is unavailable.
func (b *bench) cpuNow() cpuUse {
	var c cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return c
	}
	c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.srv.cmd.Process.Pid))
	if err != nil {
		return c
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return c
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return c
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return c
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return c
	}
	c.server = time.Duration(ut+st) * clockTick
	c.ok = true
	return c
}

// --- statistics and report ---

// pct is the nearest-rank percentile of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	k = min(max(k, 0), len(sorted)-1)
	return sorted[k]
}

type stats struct {
	n                  int
	min, p50, p99, max time.Duration
	hasSamples         bool
}

func summarize(d []time.Duration) stats {
	s := slices.Clone(d)
	slices.Sort(s)
	st := stats{n: len(s), hasSamples: len(s) > 0}
	if len(s) == 0 {
		return st
	}
	st.min, st.p50, st.p99, st.max = s[0], pct(s, 50), pct(s, 99), s[len(s)-1]
	return st
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func verdict(ok, have bool) string {
	switch {
	case !have:
		return "n/a"
	case ok:
		return "PASS"
	}
	return "MISS"
}

func (b *bench) report(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	o := b.opt
	fmt.Fprintf(bw, "## netbootd AM benchmark\n\n")
	fmt.Fprintf(bw, "- machine: %s/%s, nproc %d%s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	sg := b.serverGo
	if sg == "" {
		sg = "unknown"
	}
	fmt.Fprintf(bw, "- Go: benchmark %s, netbootd built with %s\n", runtime.Version(), sg)
	fmt.Fprintf(bw, "- command: `%s`\n", commandLine())
	fmt.Fprintf(bw, "- setup: netbootd %s at %s, %d nodes in domain %s, image %s, tftp_root and state_dir under %s; client and server share the machine's CPUs\n",
		o.netbootd, b.srv.base, numNodes, domain, image, tmpParent(o.tmpdir))
	fmt.Fprintf(bw, "- 400-node set: `GET /pxe/setBootImageNS?domain=%s&ns=<%d hrns>`, %d runs after %d warm-up, links cleared (untimed) after each run\n",
		domain, numNodes, o.runs, o.warmup)
	fmt.Fprintf(bw, "- single-node: %d clients, one node each, alternating set and clear for %v per variant (after one unmeasured pair per client)\n\n",
		o.clients, o.duration)

	fmt.Fprintln(bw, "| Measurement | Requests | req/s | min ms | p50 ms | p99 ms | max ms | Errors | Target | Result |")
	fmt.Fprintln(bw, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
	bs := summarize(b.bulk.lat)
	fmt.Fprintf(bw, "| 400-node set, OMF setBootImageNS | %d | – | %s | %s | %s | %s | %d | p99 < %v | %s |\n",
		bs.n, ms(bs.min), ms(bs.p50), ms(bs.p99), ms(bs.max), b.bulk.failures, targetBulk,
		verdict(bs.p99 < targetBulk, bs.hasSamples))
	rows := []struct {
		name     string
		res      loadResult
		set, clr string
	}{
		{"JSON API, flat out", b.api, "PUT /api/v1/nodes/{hrn}/boot", "DELETE /api/v1/nodes/{hrn}/boot"},
		{"OMF, flat out", b.omf, "GET /pxe/setBootImageNS?ns=HRN", "GET /pxe/clearBootImageNS?ns=HRN"},
	}
	if b.pace() > 0 {
		rows = append(rows, struct {
			name     string
			res      loadResult
			set, clr string
		}{fmt.Sprintf("JSON API, paced at %g calls/s per client", o.rate), b.paced, "PUT /api/v1/nodes/{hrn}/boot", "DELETE /api/v1/nodes/{hrn}/boot"})
	}
	for _, v := range rows {
		secs := v.res.elapsed.Seconds()
		ss, cs := summarize(v.res.set), summarize(v.res.clear)
		fmt.Fprintf(bw, "| 1-node set, %s `%s`, %d clients | %d | %.0f | %s | %s | %s | %s | %d | p99 < %v | %s |\n",
			v.name, v.set, o.clients, ss.n, float64(ss.n)/secs, ms(ss.min), ms(ss.p50), ms(ss.p99), ms(ss.max),
			v.res.errors, targetOne, verdict(ss.p99 < targetOne, ss.hasSamples))
		fmt.Fprintf(bw, "| 1-node clear, %s `%s`, %d clients | %d | %.0f | %s | %s | %s | %s | (above) | – | – |\n",
			v.name, v.clr, o.clients, cs.n, float64(cs.n)/secs, ms(cs.min), ms(cs.p50), ms(cs.p99), ms(cs.max))
		fmt.Fprintf(bw, "| 1-node set+clear total, %s | %d | %.0f | | | | | | | |\n",
			v.name, ss.n+cs.n, float64(ss.n+cs.n)/secs)
	}
	fmt.Fprintln(bw)
	if c := b.bulk.cpu; c.ok && len(b.bulk.lat) > 0 {
		n := float64(len(b.bulk.lat))
		fmt.Fprintf(bw, "CPU per 400-node set: netbootd %.1f ms, benchmark %.1f ms (/proc and getrusage; 10 ms resolution for netbootd, summed over %d runs).\n",
			float64(c.server)/float64(time.Millisecond)/n, float64(c.self)/float64(time.Millisecond)/n, len(b.bulk.lat))
	}
	for _, v := range []struct {
		name string
		res  loadResult
	}{{"JSON API", b.api}, {"OMF", b.omf}, {"paced", b.paced}} {
		if c := v.res.cpu; c.ok && v.res.elapsed > 0 {
			reqs := float64(len(v.res.set) + len(v.res.clear))
			secs := v.res.elapsed.Seconds()
			fmt.Fprintf(bw, "CPU in the %s phase (%d cores available): netbootd %.2f cores, %.0f µs/request; benchmark %.2f cores, %.0f µs/request.\n",
				v.name, runtime.NumCPU(), c.server.Seconds()/secs, float64(c.server.Microseconds())/reqs,
				c.self.Seconds()/secs, float64(c.self.Microseconds())/reqs)
		}
	}
	fmt.Fprintf(bw, "Errors: %d (400-node runs and link checks: %d over %d runs incl. warm-up; JSON API: %d; OMF: %d; paced: %d). ",
		b.failures(), b.bulk.failures, b.bulk.total, b.api.errors, b.omf.errors, b.paced.errors)
	fmt.Fprintf(bw, "Targets: 400-node set p99 < %v; single-node set p99 < %v at %d clients (the target is for 50). A MISS does not fail the run.\n",
		targetBulk, targetOne, o.clients)
	fmt.Fprintf(bw, "Flat out, %d clients wait on each other (closed loop): latency is clients/throughput, so p99 < %v there would take over %.0f calls/s. The paced phase measures latency at a load an EC fleet makes.\n",
		o.clients, targetOne, float64(o.clients)/targetOne.Seconds())
	for _, s := range [][]string{b.bulk.samples, b.api.samples, b.omf.samples, b.paced.samples} {
		for _, m := range s {
			fmt.Fprintf(bw, "- error: %s\n", m)
		}
	}
	fmt.Fprintf(bw, "\nTotal benchmark time %.1fs (after server start).\n", time.Since(b.startedAt).Seconds())
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return ", " + strings.TrimSpace(v)
		}
	}
	return ""
}

// commandLine shows how we were run; under go run, argv[0] is a temporary
// binary, so only its name is shown.
func commandLine() string {
	args := []string{filepath.Base(os.Args[0])}
	if strings.Contains(os.Args[0], "go-build") {
		args[0] = "go run ./bench/am"
	}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t\"'`$\\|&;<>()*?[]{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

func tmpParent(dir string) string {
	if dir == "" {
		dir = os.TempDir()
	}
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return dir
	}
	names := map[int64]string{0xEF53: "ext2/3/4", 0x01021994: "tmpfs", 0x58465342: "xfs",
		0x9123683E: "btrfs", 0x794C7630: "overlayfs", 0x2FC12FC1: "zfs"}
	if n, ok := names[int64(st.Type)]; ok {
		return dir + " (" + n + ")"
	}
	return fmt.Sprintf("%s (fs type %#x)", dir, st.Type)
}
