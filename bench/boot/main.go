// Command boot measures how long a QEMU node (TCG) takes from power-on to
// a running orbit-pxe RAM image whose Resource Controller has enrolled with
// the appliance, netbooting from netbootd, beside the same node booting the
// same kernel and initramfs from dnsmasq (DHCP and TFTP), in the same run.
//
// Each run makes a fresh virtual testbed (package qemu-tests/vtestbed: a
// network namespace with a bridge, one tap, the server) and boots one
// machine in it, powered on over QMP. The servers:
//
//	netbootd      DHCP (ipxe_fast: option 175.176 and RAs), TFTP and the AM;
//	              the node is pointed at the image with OMF setBootImageNS
//	dnsmasq       dnsmasq --enable-tftp --dhcp-boot pxelinux.0 with a
//	              reservation for the node, as a site would run it; the
//	              node's pxelinux.cfg/<hex IP> links to the same image config
//	dnsmasq-ipxe  the same plus option 175.176 = 1 and router
//	              advertisements (lifetime 0, M=0, O=0): what ends iPXE's
//	              waits, configured by hand
//
// With dnsmasq, netbootd runs beside it as the AM only (no DHCP, no TFTP),
// so that the RC can enroll there too and every server has the same end
// point. Runs take turns (netbootd, dnsmasq, dnsmasq-ipxe, netbootd, ...)
// so that a slow spell of the machine does not fall on one server only.
//
// Phases, in seconds after power-on (QMP "cont"):
//
//	DHCP offer, pxelinux.0, kernel, initramfs   the server saw it: netbootd's
//	        timeline (a TFTP event is written when the transfer ends), or
//	        dnsmasq's log (time the line was read)
//	init runs, image printed, init's DHCP lease, RC started   the serial log
//	        (time the line appeared in the file, polled every 20 ms)
//	enrolled    the appliance's timeline ("rc enrolled")
//
// Usage (as root, with qemu-system-x86 ipxe-qemu pxelinux syslinux-common
// dnsmasq-base installed; the kernel is fetched into .cache/kernel):
//
//	go run ./bench/boot
//	go run ./bench/boot -runs 5 -nic e1000 -servers netbootd,dnsmasq
//
// Nothing leaves the namespaces; failed runs keep their serial logs in
// .cache/qemu-artifacts/bench-boot/ ($QEMU_ARTIFACTS).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// imageName is the image the node boots.
const imageName = "orbit-2.0.0"

// target is how long power-on to enrolled may take under TCG.
const target = 12 * time.Second

var phases = []string{"DHCP offer", "pxelinux.0", "kernel", "initramfs", "init runs", "image printed", "init DHCP lease", "RC started", "enrolled"}

type run struct {
	server vtestbed.Server
	n      int
	at     map[string]time.Duration // phase -> after power-on
	err    error
	load   string // 1-minute load average before the run
}

type options struct {
	runs    int
	servers []vtestbed.Server
	nic     vtestbed.NIC
	timeout time.Duration
	verbose bool
	qemu    []string
}

func main() {
	var o options
	var servers, nic string
	flag.IntVar(&o.runs, "runs", 3, "runs per server")
	flag.StringVar(&servers, "servers", "netbootd,dnsmasq,dnsmasq-ipxe", "servers to compare: netbootd, dnsmasq, dnsmasq-ipxe")
	flag.StringVar(&nic, "nic", string(vtestbed.VirtioNet), "the node's NIC: virtio-net-pci or e1000")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "longest wait for one boot")
	flag.BoolVar(&o.verbose, "v", false, "log each run's set-up")
	qemuArgs := flag.String("qemu-args", "", "more QEMU arguments, space-separated (e.g. \"-cpu max\")")
	flag.Parse()
	o.qemu = strings.Fields(*qemuArgs)
	for _, s := range strings.Split(servers, ",") {
		switch sv := vtestbed.Server(strings.TrimSpace(s)); sv {
		case vtestbed.Netbootd, vtestbed.Dnsmasq, vtestbed.DnsmasqIPXE:
			o.servers = append(o.servers, sv)
		default:
			fmt.Fprintf(os.Stderr, "boot: -servers: unknown server %q\n", s)
			os.Exit(2)
		}
	}
	o.nic = vtestbed.NIC(nic)
	if o.nic != vtestbed.VirtioNet && o.nic != vtestbed.E1000 {
		fmt.Fprintf(os.Stderr, "boot: -nic: %q: want virtio-net-pci or e1000\n", nic)
		os.Exit(2)
	}
	if o.runs < 1 {
		fmt.Fprintln(os.Stderr, "boot: -runs must be at least 1")
		os.Exit(2)
	}
	if err := bench(o); err != nil {
		fmt.Fprintln(os.Stderr, "boot:", err)
		os.Exit(1)
	}
}

func bench(o options) error {
	for _, s := range o.servers {
		if err := vtestbed.Missing(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	printSetup(o)

	// One image for every run: the same kernel and initramfs bytes.
	var img vtestbed.Image
	var out bytes.Buffer
	err := vtestbed.RunProgram("bench-boot/image", &out, func(t testing.TB) {
		dir, err := os.MkdirTemp("", "vtb-bench-image-")
		if err != nil {
			t.Fatal(err)
		}
		img, err = vtestbed.BuildImage(t, imageName, fmt.Sprintf("http://%s:%d", vtestbed.ServerIP, vtestbed.AMPort), dir, vtestbed.ImageOptions{})
		if err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
	})
	if err != nil {
		return fmt.Errorf("image build: %w\n%s", err, out.String())
	}
	defer os.RemoveAll(img.Dir)
	fmt.Printf("image %s: %s, %s (built in %v)\n\n", img.Name, img.Kernel, img.Initrd, img.Took.Round(time.Millisecond))

	var runs []run
	for i := 1; i <= o.runs; i++ {
		for _, s := range o.servers {
			r := boot(o, s, i, img)
			runs = append(runs, r)
			if r.err != nil {
				fmt.Printf("%-13s run %d: FAILED (load %s): %v\n", s, i, r.load, r.err)
			} else {
				fmt.Printf("%-13s run %d: enrolled %.2fs after power-on (load average before the run: %s)\n", s, i, r.at["enrolled"].Seconds(), r.load)
			}
		}
	}
	fmt.Println()
	report(os.Stdout, o, runs)
	for _, r := range runs {
		if r.err != nil {
			return errors.New("some runs failed")
		}
	}
	return nil
}

func printSetup(o options) {
	qemu, _ := exec.Command("qemu-system-x86_64", "--version").Output()
	fmt.Printf("machine: %d CPUs, %s; QEMU: %s; TCG, 256 MiB, %s\n", runtime.NumCPU(), runtime.GOARCH,
		strings.SplitN(strings.TrimSpace(string(qemu)), "\n", 2)[0], o.nic)
	fmt.Printf("command: go run ./bench/boot %s\n", strings.Join(os.Args[1:], " "))
}

var (
	reInit    = regexp.MustCompile(`Run /init as init process`)
	reImage   = regexp.MustCompile(`^\s*` + regexp.QuoteMeta(imageName) + `\s*$`)
	reLease   = regexp.MustCompile(`orbit-init: .*msg="dhcp lease"`)
	reRC      = regexp.MustCompile(`orbit-init: .*msg="rc: started"`)
	reOffer   = regexp.MustCompile(`DHCPOFFER\(`)
	reTFTPLog = regexp.MustCompile(`dnsmasq-tftp\[?\d*\]?: sent (\S+) to `)
)

// boot makes a testbed with one node, powers it on and times the phases.
func boot(o options, server vtestbed.Server, n int, img vtestbed.Image) run {
	r := run{server: server, n: n, at: map[string]time.Duration{}, load: loadAvg()}
	var out bytes.Buffer
	var w io.Writer = &out
	if o.verbose {
		w = io.MultiWriter(&out, os.Stderr)
	}
	err := vtestbed.RunProgram(fmt.Sprintf("bench-boot/%s/%d", server, n), w, func(t testing.TB) {
		node := vtestbed.NewNode(1, o.nic)
		tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Server: server, BuiltImage: &img, AM: true})
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		defer cancel()
		if server == vtestbed.Netbootd {
			if _, err := tb.SetBootImageNS(ctx, img.Name, node); err != nil {
				t.Fatal(err)
			}
		}
		vm := tb.Boot(t, node, vtestbed.BootOptions{Order: "n", Extra: o.qemu})
		since := vm.Since
		for _, w := range []struct {
			phase string
			re    *regexp.Regexp
		}{{"init runs", reInit}, {"image printed", reImage}, {"init DHCP lease", reLease}, {"RC started", reRC}} {
			l, err := vm.Wait(ctx, w.re)
			if err != nil {
				t.Fatalf("%s: %v", w.phase, err)
			}
			r.at[w.phase] = since(l.At)
		}
		if _, _, err := tb.WaitEnrolled(ctx, node.HRN); err != nil {
			t.Fatalf("enrolled: %v", err)
		}
		evs, err := tb.Events(ctx, node.HRN)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Source == "rc" && e.What == "enrolled" {
				setOnce(r.at, "enrolled", since(e.At))
			}
		}
		if server == vtestbed.Netbootd {
			for _, e := range evs {
				switch {
				case e.Source == "dhcp" && e.What == "DHCPOFFER":
					setOnce(r.at, "DHCP offer", since(e.At))
				case e.Source == "tftp" && strings.HasPrefix(e.Detail, "failed"):
				case e.Source == "tftp":
					setFile(r.at, e.What, img, since(e.At))
				}
			}
		} else {
			for _, l := range tb.DnsmasqLines() {
				if reOffer.MatchString(l.Text) && strings.Contains(l.Text, node.MAC) {
					setOnce(r.at, "DHCP offer", since(l.At))
				}
				if m := reTFTPLog.FindStringSubmatch(l.Text); m != nil {
					setFile(r.at, strings.TrimPrefix(m[1], tb.TFTPRoot+"/"), img, since(l.At))
				}
			}
		}
		for _, p := range phases {
			if _, ok := r.at[p]; !ok {
				t.Errorf("phase %q not seen", p)
			}
		}
	})
	if err != nil {
		r.err = fmt.Errorf("%w\n%s", err, out.String())
	}
	return r
}

func setOnce(m map[string]time.Duration, k string, d time.Duration) {
	if _, ok := m[k]; !ok {
		m[k] = d
	}
}

func setFile(m map[string]time.Duration, file string, img vtestbed.Image, d time.Duration) {
	switch file {
	case "pxelinux.0":
		setOnce(m, "pxelinux.0", d)
	case img.Kernel:
		setOnce(m, "kernel", d)
	case img.Initrd:
		setOnce(m, "initramfs", d)
	}
}

// report prints every run, then the median of each phase per server, then
// the comparison.
func report(w io.Writer, o options, runs []run) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintf(tw, "server\trun\t%s\t\n", strings.Join(phases, "\t"))
	row := func(server, label string, at func(p string) (time.Duration, bool)) {
		cells := []string{server, label}
		for _, p := range phases {
			if d, ok := at(p); ok {
				cells = append(cells, fmt.Sprintf("%.2f", d.Seconds()))
			} else {
				cells = append(cells, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	for _, r := range runs {
		if r.err != nil {
			continue
		}
		row(string(r.server), fmt.Sprint(r.n), func(p string) (time.Duration, bool) { d, ok := r.at[p]; return d, ok })
	}
	medians := map[vtestbed.Server]map[string]time.Duration{}
	for _, s := range o.servers {
		medians[s] = map[string]time.Duration{}
		for _, p := range phases {
			var ds []time.Duration
			for _, r := range runs {
				if d, ok := r.at[p]; ok && r.server == s && r.err == nil {
					ds = append(ds, d)
				}
			}
			if len(ds) > 0 {
				medians[s][p] = median(ds)
			}
		}
		row(string(s), "median", func(p string) (time.Duration, bool) { d, ok := medians[s][p]; return d, ok })
	}
	tw.Flush()
	fmt.Fprintln(w, "seconds after power-on. DHCP offer, pxelinux.0 (the first TFTP transfer), kernel, initramfs: when the")
	fmt.Fprintln(w, "server logged them (transfers when they ended); init runs (kernel: Run /init), image printed, init DHCP")
	fmt.Fprintln(w, "lease, RC started: the serial log; enrolled: the appliance's timeline (rc enrolled).")
	fmt.Fprintln(w)

	ref, ok := medians[vtestbed.Netbootd]
	for _, end := range []string{"image printed", "enrolled"} {
		fmt.Fprintf(w, "power-on to %s (median of %d):", end, o.runs)
		for _, s := range o.servers {
			d, has := medians[s][end]
			if !has {
				fmt.Fprintf(w, "  %s -", s)
				continue
			}
			fmt.Fprintf(w, "  %s %.2fs", s, d.Seconds())
			if r, hasRef := ref[end]; ok && hasRef && s != vtestbed.Netbootd {
				fmt.Fprintf(w, " (%.2fx netbootd's)", d.Seconds()/r.Seconds())
			}
		}
		fmt.Fprintln(w)
	}
	if d, has := ref["enrolled"]; ok && has {
		verdict := "met"
		if d > target {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "target: netbootd enrolled within %v of power-on: %s (%.2fs)\n", target, verdict, d.Seconds())
	}
}

// loadAvg is the 1-minute load average: other work on the machine slows
// TCG down.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// median of ds (sorted in place): the middle one, or the mean of the two
// middle ones.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}
