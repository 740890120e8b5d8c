// Command dhcp benchmarks netbootd's DHCP server (package dhcpd) against
// dnsmasq and Kea (kea-dhcp4, memfile lease database), each serving the
// same reservations (default 1000 MACs, each with its own address, the
// same router, DNS, domain, next-server and boot file), in one run.
//
// Servers (-servers): netbootd; dnsmasq and kea as packaged, the targets'
// yardsticks; and two references: dnsmasq-ro (no lease file, no ping: the
// bottleneck of dnsmasq is rewriting its whole lease file on every change)
// and kea-mt (Kea's multi-threading on; Kea 2.2 has it off by default).
// Each trial runs every server in turn, each from an empty state
// directory; the report takes each server's median trial, and counts lost
// and wrong exchanges over all trials.
//
// The network is two namespaces the program creates and deletes
// (nbb-<random>-srv and -cli) joined by a veth pair. The server runs in
// srv: netbootd's as this program re-run with -serve (a real SQLite store
// holding the reservations as inventory nodes, boot events written), the
// others as their own daemons. The load generator runs in this process on
// a socket made inside cli: W workers each run full DORA exchanges
// (DISCOVER, OFFER, REQUEST, ACK) one after another over the MACs, with
// the packets of a PXE client (insomniacslk/dhcp client packets plus the
// options QEMU's iPXE sends) and the broadcast flag set, so every server
// answers by broadcast. An exchange that misses a reply within -timeout is
// lost (no retries); one whose address is not the reservation is wrong.
//
// Usage (as root; dnsmasq-base and kea-dhcp4-server installed):
//
//	go run ./bench/dhcp
//	go run ./bench/dhcp -trials 5 -rounds 20 -workers 64 -servers netbootd,kea
//
// The whole run is bounded by -limit; each warm-up and trial of a server
// by -server-limit (a slow server is measured over what it completed).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/bench/internal/benchproc"
	"github.com/orbit-lab/netboot/dhcpd"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/store"
)

const (
	serverIP = "10.60.0.1"
	prefix   = "10.60.0.0/16"
	srvIf    = "srv0"
	cliIf    = "cli0"
	bootfile = "pxelinux.0"
	domain   = "orbit-lab.org"
)

type options struct {
	macs        int
	rounds      int
	trials      int
	workers     int
	timeout     time.Duration
	serverLimit time.Duration
	limit       time.Duration
	servers     []string
	cpuProfile  string
	verbose     bool
}

func main() {
	benchproc.Child(serve)
	var o options
	var servers string
	flag.IntVar(&o.macs, "macs", 1000, "reservations (and client MACs)")
	flag.IntVar(&o.rounds, "rounds", 10, "DORA exchanges per MAC per server and trial (after one warm-up pass)")
	flag.IntVar(&o.trials, "trials", 3, "trials; the servers take turns in each, and the median trial counts")
	flag.IntVar(&o.workers, "workers", 32, "exchanges in flight at once")
	flag.DurationVar(&o.timeout, "timeout", time.Second, "wait for each reply; a miss loses the exchange")
	flag.DurationVar(&o.serverLimit, "server-limit", 20*time.Second, "bound on each measurement of one server (warm-up, trial)")
	flag.DurationVar(&o.limit, "limit", 5*time.Minute, "bound on the whole run")
	flag.StringVar(&servers, "servers", "netbootd,dnsmasq,kea,dnsmasq-ro,kea-mt", "servers to run, comma-separated (netbootd, dnsmasq, kea; dnsmasq-ro and kea-mt are references)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of netbootd's server process here")
	flag.BoolVar(&o.verbose, "v", false, "print the servers' output")
	flag.Parse()
	o.servers = strings.Split(servers, ",")
	if o.macs < 1 || o.macs > 60000 || o.workers < 1 || o.workers > o.macs {
		fmt.Fprintln(os.Stderr, "bench: want 1 <= -workers <= -macs <= 60000")
		os.Exit(2)
	}
	benchproc.Run(o.limit, func(ctx context.Context) error { return run(ctx, o, os.Stdout) })
}

// host is one reservation.
type host struct {
	mac  net.HardwareAddr
	ip   netip.Addr
	name string
}

func hosts(n int) []host {
	out := make([]host, n)
	for i := range out {
		out[i] = host{
			mac:  net.HardwareAddr{0x02, 0x00, 0x0a, 0x3c, byte(i >> 8), byte(i)},
			ip:   netip.AddrFrom4([4]byte{10, 60, byte(1 + i/250), byte(1 + i%250)}),
			name: fmt.Sprintf("node-%05d", i),
		}
	}
	return out
}

// result is one server's measurement.
type result struct {
	server    string
	exchanges int // completed
	lost      int
	wrong     int
	elapsed   time.Duration
	lat       []time.Duration // completed exchanges, DISCOVER sent to ACK received
	note      string
}

func (r result) rate() float64 { return float64(r.exchanges) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

func run(ctx context.Context, o options, w io.Writer) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, port 67)")
	}
	for _, s := range o.servers {
		switch s {
		case "netbootd":
		case "dnsmasq", "dnsmasq-ro":
			if _, err := exec.LookPath("dnsmasq"); err != nil {
				return errors.New("dnsmasq not installed (Debian package dnsmasq-base)")
			}
		case "kea", "kea-mt":
			if _, err := exec.LookPath("kea-dhcp4"); err != nil {
				return errors.New("kea-dhcp4 not installed (Debian package kea-dhcp4-server)")
			}
		default:
			return fmt.Errorf("unknown server %q (want netbootd, dnsmasq, dnsmasq-ro, kea, kea-mt)", s)
		}
	}
	n, err := newNet(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := n.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	hs := hosts(o.macs)
	dir, err := os.MkdirTemp("", "bench-dhcp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	gen, err := newGenerator(ctx, n.cli, o.timeout)
	if err != nil {
		return err
	}
	defer gen.close()

	fmt.Fprintf(w, "DHCP: %d reservations, %d trials of %d DORA exchanges per server (servers take turns), %d in flight, %v reply timeout, broadcast replies over a veth, %d CPUs\n\n",
		o.macs, o.trials, o.rounds*o.macs, o.workers, o.timeout, runtime.NumCPU())
	fmt.Fprintf(w, "load average at start: %s\n", loadavg())
	trials := map[string][]result{} // by server, in trial order
	for trial := range o.trials {
		// Each trial starts with another server, so that none is always
		// measured right after the same one.
		order := append(slices.Clone(o.servers[trial%len(o.servers):]), o.servers[:trial%len(o.servers)]...)
		for _, name := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A fresh state directory each trial: every server starts
			// from an empty lease database.
			sdir := filepath.Join(dir, fmt.Sprintf("%s-%d", name, trial))
			if err := os.MkdirAll(sdir, 0o755); err != nil {
				return err
			}
			srv, note, err := startServer(ctx, name, n.srv, sdir, hs, o)
			if err != nil {
				return err
			}
			r, err := measure(ctx, gen, srv, hs, o)
			if serr := srv.stop(); serr != nil && err == nil {
				err = fmt.Errorf("stopping: %w", serr)
			}
			if o.verbose || err != nil {
				fmt.Fprintf(w, "--- %s output:\n%s\n", name, srv.out.String())
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			r.server, r.note = name, note
			fmt.Fprintf(w, "trial %d %-9s %6.0f exchanges/s, p99 %v, lost %d\n", trial+1, name, r.rate(), r.pct(99).Round(10*time.Microsecond), r.lost)
			trials[name] = append(trials[name], r)
		}
	}
	fmt.Fprintf(w, "load average at end: %s\n\n", loadavg())
	var results []result
	for _, name := range o.servers {
		rs := slices.Clone(trials[name])
		slices.SortFunc(rs, func(a, b result) int { return cmpFloat(a.rate(), b.rate()) })
		med := rs[len(rs)/2]
		med.lost, med.wrong = 0, 0
		for _, r := range rs { // lost and wrong count over all trials
			med.lost += r.lost
			med.wrong += r.wrong
		}
		results = append(results, med)
	}
	report(w, results, trials)
	return nil
}

// loadavg is /proc/loadavg's first three fields: the benchmark shares the
// machine's CPUs with whatever else runs.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// measure warms srv up with one pass over the MACs, then runs the
// measured exchanges.
func measure(ctx context.Context, gen *generator, srv *daemon, hs []host, o options) (result, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := gen.dora(ctx, hs[0]); err == nil {
			break
		} else if time.Now().After(deadline) {
			return result{}, fmt.Errorf("not answering after 15 s: %w", err)
		}
		if srv.exited() {
			return result{}, errors.New("exited")
		}
	}
	gen.load(ctx, hs, len(hs), o.workers, o.serverLimit)
	r := gen.load(ctx, hs, len(hs)*o.rounds, o.workers, o.serverLimit)
	return r, nil
}

func report(w io.Writer, rs []result, trials map[string][]result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "median trial of each server (lost and wrong: all trials):")
	fmt.Fprintln(tw, "server\texchanges\tseconds\texch/s\tp50\tp99\tmax\tlost\twrong\t")
	byName := map[string]result{}
	for _, r := range rs {
		byName[r.server] = r
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%v\t%v\t%v\t%d\t%d\t\n", r.server, r.exchanges, r.elapsed.Seconds(), r.rate(),
			r.pct(50).Round(10*time.Microsecond), r.pct(99).Round(10*time.Microsecond), r.pct(100).Round(10*time.Microsecond), r.lost, r.wrong)
	}
	tw.Flush()
	for _, r := range rs {
		if r.note != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.server, r.note)
		}
	}
	nb, ok := byName["netbootd"]
	if !ok {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "ratios of exchanges per second, taken within each trial (the servers of a trial run minutes apart at most), median over trials:")
	for _, t := range []struct {
		other  string
		target float64 // 0: a reference, no target
	}{{"dnsmasq", 1.5}, {"kea", 1.0}, {"dnsmasq-ro", 0}, {"kea-mt", 0}} {
		or, ok := byName[t.other]
		if !ok || or.rate() == 0 {
			continue
		}
		var ratios []float64
		for i, r := range trials["netbootd"] {
			if i < len(trials[t.other]) && trials[t.other][i].rate() > 0 {
				ratios = append(ratios, r.rate()/trials[t.other][i].rate())
			}
		}
		var each []string
		for _, r := range ratios {
			each = append(each, fmt.Sprintf("%.2f", r))
		}
		slices.Sort(ratios)
		ratio := ratios[len(ratios)/2]
		verdict := "reference"
		switch {
		case t.target > 0 && ratio >= t.target:
			verdict = fmt.Sprintf("target >= %.1fx: met", t.target)
		case t.target > 0:
			verdict = fmt.Sprintf("target >= %.1fx: MISSED", t.target)
		}
		fmt.Fprintf(w, "netbootd / %s: %.2fx (%s; trials %s); p99 of the median trials %v vs %v\n",
			t.other, ratio, verdict, strings.Join(each, " "), nb.pct(99).Round(10*time.Microsecond), or.pct(99).Round(10*time.Microsecond))
	}
	lost := "met"
	if nb.lost > 0 || nb.wrong > 0 {
		lost = "MISSED"
	}
	fmt.Fprintf(w, "netbootd lost %d and got %d wrong (target 0: %s)\n", nb.lost, nb.wrong, lost)
}

// --- network -------------------------------------------------------------

type netw struct {
	srv, cli string
}

func newNet(ctx context.Context) (*netw, error) {
	b := make([]byte, 3)
	rand.Read(b)
	p := "nbb-" + hex.EncodeToString(b)
	n := &netw{srv: p + "-srv", cli: p + "-cli"}
	steps := [][]string{
		{"netns", "add", n.srv},
		{"netns", "add", n.cli},
		{"-n", n.srv, "link", "set", "lo", "up"},
		{"-n", n.cli, "link", "set", "lo", "up"},
		{"-n", n.srv, "link", "add", srvIf, "type", "veth", "peer", "name", cliIf, "netns", n.cli},
		{"-n", n.srv, "addr", "add", serverIP + "/16", "dev", srvIf},
		{"-n", n.srv, "link", "set", srvIf, "up"},
		{"-n", n.cli, "link", "set", cliIf, "up"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, "ip", s...).CombinedOutput(); err != nil {
			return nil, errors.Join(fmt.Errorf("ip %s: %w: %s", strings.Join(s, " "), err, out), n.close())
		}
	}
	return n, nil
}

// close deletes the namespaces (and so the veth pair).
func (n *netw) close() error {
	return errors.Join(netns.Delete(n.srv), netns.Delete(n.cli))
}

// --- servers -------------------------------------------------------------

type daemon struct {
	cmd     *exec.Cmd
	out     *apptest.SyncBuffer
	done    chan struct{} // closed once the server has exited; then exitErr is set
	exitErr error
	in      io.WriteCloser
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop ends the server and says whether it exited cleanly: one that did
// not may have misbehaved while it was measured.
func (d *daemon) stop() error {
	if d.in != nil {
		d.in.Close()
	}
	if _, killed := childproc.Stop(d.cmd.Process, syscall.SIGTERM, 10*time.Second, d.done); killed {
		return errors.New("still running 10s after SIGTERM; killed")
	}
	return d.exitErr
}

func startDaemon(ns string, env []string, argv ...string) (*daemon, error) {
	d := &daemon{out: &apptest.SyncBuffer{Max: 1 << 20}, done: make(chan struct{})}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	in, err := d.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	d.in = in
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// startServer writes name's configuration for the reservations into dir
// and starts it in ns. The note says how it was configured.
func startServer(_ context.Context, name, ns, dir string, hs []host, o options) (*daemon, string, error) {
	switch name {
	case "netbootd":
		self, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		args := []string{self, "-serve", "-state", dir, "-macs", fmt.Sprint(len(hs))}
		if o.cpuProfile != "" {
			args = append(args, "-cpuprofile", o.cpuProfile)
		}
		d, err := startDaemon(ns, nil, args...)
		return d, "dhcpd package, SQLite store (WAL), a boot event per exchange, 8 workers", err

	case "dnsmasq", "dnsmasq-ro":
		var b strings.Builder
		for _, h := range hs {
			fmt.Fprintf(&b, "%s,%s,%s\n", h.mac, h.ip, h.name)
		}
		hostsFile := filepath.Join(dir, "hosts")
		if err := os.WriteFile(hostsFile, []byte(b.String()), 0o644); err != nil {
			return nil, "", err
		}
		args := []string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
			"--interface=" + srvIf, "--bind-interfaces", "--dhcp-authoritative", "--quiet-dhcp", "--log-facility=-",
			"--dhcp-range=10.60.0.0,static,255.255.0.0,1h", "--dhcp-hostsfile=" + hostsFile,
			"--dhcp-option=option:router," + serverIP, "--dhcp-option=option:dns-server," + serverIP,
			"--dhcp-option=option:domain-name," + domain, "--dhcp-boot=" + bootfile + ",," + serverIP}
		note := "dnsmasq 2.90, dhcp-hostsfile reservations, lease file, --quiet-dhcp"
		if name == "dnsmasq-ro" {
			// dnsmasq without its lease file (--leasefile-ro: it rewrites
			// the whole file on every change otherwise) and without the
			// ping before a first offer: its upper bound, for reference.
			args = append(args, "--leasefile-ro", "--no-ping")
			note = "dnsmasq 2.90 as dnsmasq, but --leasefile-ro (no lease persistence) and --no-ping"
		} else {
			args = append(args, "--dhcp-leasefile="+filepath.Join(dir, "leases"))
		}
		d, err := startDaemon(ns, nil, append(args, "--pid-file="+filepath.Join(dir, "pid"))...)
		return d, note, err

	case "kea", "kea-mt":
		mt := name == "kea-mt"
		type res struct {
			HW       string `json:"hw-address"`
			IP       string `json:"ip-address"`
			Hostname string `json:"hostname"`
		}
		var rs []res
		for _, h := range hs {
			rs = append(rs, res{h.mac.String(), h.ip.String(), h.name})
		}
		cfg := map[string]any{"Dhcp4": map[string]any{
			"interfaces-config": map[string]any{"interfaces": []string{srvIf}, "dhcp-socket-type": "raw"},
			"lease-database":    map[string]any{"type": "memfile", "persist": true, "name": filepath.Join(dir, "kea-leases4.csv"), "lfc-interval": 0},
			"valid-lifetime":    3600, "renew-timer": 1800, "rebind-timer": 3150,
			"authoritative":                true,
			"host-reservation-identifiers": []string{"hw-address"},
			"multi-threading":              map[string]any{"enable-multi-threading": mt},
			"subnet4": []any{map[string]any{
				"id": 1, "subnet": prefix,
				"next-server": serverIP, "boot-file-name": bootfile,
				"option-data": []any{
					map[string]any{"name": "routers", "data": serverIP},
					map[string]any{"name": "domain-name-servers", "data": serverIP},
					map[string]any{"name": "domain-name", "data": domain},
				},
				"reservations": rs,
			}},
			"loggers": []any{map[string]any{"name": "kea-dhcp4", "severity": "WARN",
				"output_options": []any{map[string]any{"output": "stdout"}}}},
		}}
		data, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, "", err
		}
		path := filepath.Join(dir, "kea-dhcp4.conf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, "", err
		}
		env := []string{"KEA_PIDFILE_DIR=" + dir, "KEA_LOCKFILE_DIR=" + dir, "KEA_LOGGER_DESTINATION=stdout"}
		d, err := startDaemon(ns, env, "kea-dhcp4", "-c", path)
		note := "kea-dhcp4 " + keaVersion() + ", memfile (persist), raw socket, reservations in the subnet, multi-threading off (Kea 2.2's default)"
		if mt {
			note = "kea as kea, but with multi-threading on (threads: one per CPU)"
		}
		return d, note, err
	}
	return nil, "", fmt.Errorf("unknown server %q", name)
}

func keaVersion() string {
	out, err := exec.Command("kea-dhcp4", "-v").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// serve runs netbootd's DHCP server in the benchmark's namespace: a fresh
// store holding the reservations as nodes, until stdin closes or a signal.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	state := fs.String("state", "", "state directory")
	macs := fs.Int("macs", 1000, "reservations")
	cpuProfile := fs.String("cpuprofile", "", "CPU profile file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := benchproc.ChildContext()
	defer cancel()
	st, err := store.Open(ctx, *state)
	if err != nil {
		return err
	}
	defer st.Close()
	tb := inventory.Testbed{Domain: "bench"}
	for _, h := range hosts(*macs) {
		tb.Nodes = append(tb.Nodes, inventory.Node{HRN: h.name + ".bench." + domain, Hostname: h.name,
			ControlIP: h.ip.String(), ControlMAC: h.mac.String()})
	}
	if err := st.Import(ctx, inventory.File{Testbeds: []inventory.Testbed{tb}}); err != nil {
		return err
	}
	// Info level, as netbootd runs: nothing is logged per exchange.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := dhcpd.Config{
		Interface: srvIf,
		ServerIP:  netip.MustParseAddr(serverIP),
		Subnet:    dhcpd.Subnet{Prefix: netip.MustParsePrefix(prefix), Router: netip.MustParseAddr(serverIP)},
		DNS:       []netip.Addr{netip.MustParseAddr(serverIP)},
		Domain:    domain, LeaseTime: time.Hour, Bootfile: bootfile, BootfileEFI: "syslinux.efi",
		IPXEFast: true, Mode: dhcpd.ModeServer,
	}
	// As netbootd does: the inventory lookup through a NodeFinder.
	nodes, err := st.NewNodeFinder(ctx)
	if err != nil {
		return err
	}
	defer nodes.Close()
	s, err := dhcpd.New(cfg, dhcpd.Backend{Nodes: nodes, Leases: st, Discovered: st, Events: st}, log)
	if err != nil {
		return err
	}
	stopProfile, err := benchproc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	err = s.Serve(ctx)
	fmt.Fprintf(os.Stderr, "stats: %+v\n", s.Stats())
	if n, _ := st.NodeCount(context.Background()); n > 0 {
		if ev, err := st.Events(context.Background(), hosts(1)[0].name+".bench."+domain); err == nil {
			fmt.Fprintf(os.Stderr, "events of the first node: %d\n", len(ev))
		}
	}
	return err
}

// --- load generator ------------------------------------------------------

// generator sends from one UDP socket (0.0.0.0:68 on cli0, made inside
// the client namespace) and hands each reply to the exchange waiting for
// its transaction id.
type generator struct {
	conn    *net.UDPConn
	timeout time.Duration
	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	done    chan struct{}
}

func newGenerator(ctx context.Context, ns string, timeout time.Duration) (*generator, error) {
	g := &generator{timeout: timeout, waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}, done: make(chan struct{})}
	err := netns.Do(ns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				if serr = unix.BindToDevice(int(fd), cliIf); serr == nil {
					// Room for a burst of replies: lost packets here would
					// be charged to the server.
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
				}
			}); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(ctx, "udp4", "0.0.0.0:68")
		if err != nil {
			return err
		}
		g.conn = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	go g.receive()
	return g, nil
}

func (g *generator) close() {
	g.conn.Close()
	<-g.done
}

func (g *generator) receive() {
	defer close(g.done)
	buf := make([]byte, 2048)
	for {
		n, _, err := g.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || r.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		g.mu.Lock()
		ch := g.waiting[r.TransactionID]
		g.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default:
			}
		}
	}
}

var bcast67 = netip.MustParseAddrPort("255.255.255.255:67")

// pxeMods are the options QEMU's iPXE sends (architecture, UNDI, vendor
// class, user class, max message size, UUID), and the broadcast flag.
func pxeMods(mac net.HardwareAddr) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")),
		dhcpv4.WithGeneric(dhcpv4.OptionMaximumDHCPMessageSize, []byte{0x05, 0xc0}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, make([]byte, 17)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, append([]byte{1}, mac...)),
	}
}

// send sends req and waits for the reply of type want.
func (g *generator) send(ctx context.Context, req *dhcpv4.DHCPv4, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	g.mu.Lock()
	g.waiting[req.TransactionID] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.waiting, req.TransactionID)
		g.mu.Unlock()
	}()
	if _, err := g.conn.WriteToUDPAddrPort(req.ToBytes(), bcast67); err != nil {
		return nil, err
	}
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	for {
		select {
		case r := <-ch:
			if r.MessageType() == want {
				return r, nil
			}
		case <-t.C:
			return nil, fmt.Errorf("no %s within %v", want, g.timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

var errWrong = errors.New("wrong address")

// dora runs one exchange for h and returns its duration.
func (g *generator) dora(ctx context.Context, h host) (time.Duration, error) {
	start := time.Now()
	disc, err := dhcpv4.NewDiscovery(h.mac, pxeMods(h.mac)...)
	if err != nil {
		return 0, err
	}
	offer, err := g.send(ctx, disc, dhcpv4.MessageTypeOffer)
	if err != nil {
		return 0, err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, pxeMods(h.mac)...)
	if err != nil {
		return 0, err
	}
	ack, err := g.send(ctx, req, dhcpv4.MessageTypeAck)
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	if ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4()); !ok || ip != h.ip || ack.BootFileName != bootfile {
		return d, fmt.Errorf("%w: %s got %s file %q", errWrong, h.mac, ack.YourIPAddr, ack.BootFileName)
	}
	return d, nil
}

// load runs total exchanges over hs with workers in flight, bounded by
// limit, and measures them.
func (g *generator) load(ctx context.Context, hs []host, total, workers int, limit time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var r result
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var lat []time.Duration
			var lost, wrong int
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				d, err := g.dora(ctx, hs[i%len(hs)])
				switch {
				case errors.Is(err, errWrong):
					wrong++
				case err != nil && ctx.Err() == nil:
					lost++
				case err == nil:
					lat = append(lat, d)
				}
			}
			mu.Lock()
			r.lat = append(r.lat, lat...)
			r.lost += lost
			r.wrong += wrong
			mu.Unlock()
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.exchanges = len(r.lat)
	slices.Sort(r.lat)
	return r
}
