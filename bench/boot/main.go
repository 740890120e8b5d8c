// Command boot measures how long a QEMU node (TCG) takes from power-on to
// a running orbit-pxe RAM image whose Resource Controller has enrolled with
// the appliance, netbooting from netbootd, beside the same node booting the
// same kernel and initramfs from dnsmasq configured by hand for the same
// paths, in the same run, for four boot paths (-modes):
//
//	bios-tftp       SeaBIOS, QEMU's iPXE ROM as the PXE client: pxelinux.0,
//	                its config, kernel and initramfs over TFTP.
//	                netbootd: DHCP (ipxe_fast), TFTP, the AM;
//	                dnsmasq: --enable-tftp, --dhcp-boot pxelinux.0, a
//	                reservation for the node, as a site runs it;
//	                dnsmasq-ipxe: the same plus option 175.176 = 1 and router
//	                advertisements (lifetime 0, M=0, O=0), what ends iPXE's
//	                waits, configured by hand: tuned dnsmasq
//	bios-ipxe-http  the same ROM gets its per-node iPXE script and fetches
//	                kernel and initramfs over HTTP.
//	                netbootd: dhcp.ipxe_script, the script rendered from the
//	                node's link, the files from http_boot;
//	                dnsmasq-ipxe: tuned dnsmasq sends iPXE (option 175) the
//	                node's script URL on an HTTP server beside it, BusyBox's
//	                httpd (the small static server a site has at hand;
//	                sendfile, like netbootd), which serves the TFTP root
//	                with the script netbootd would render (ipxe/<HEX>)
//	uefi-pxe        OVMF with Secure Boot enforced, the firmware's own PXE:
//	                shimx64.efi, Debian's signed grubx64.efi, grub/grub.cfg,
//	                grub/grub.cfg-<HEX>, the signed kernel and the initramfs,
//	                all over TFTP (signed GRUB has no HTTP).
//	                netbootd: as is; dnsmasq: option 93 = 7, 9 ->
//	                --dhcp-boot shimx64.efi, the same files and per-node
//	                GRUB config in its TFTP root
//	uefi-http       OVMF with Secure Boot enforced, PXE off: UEFI HTTP Boot
//	                of the image's RAM-disk image (efi/<image>.img, from
//	                nbctl image build --efi-img).
//	                netbootd: its URL in DHCP while the node has a link,
//	                the file from http_boot; dnsmasq: option 93 = 16 -> the
//	                URL on busybox httpd, option 60 HTTPClient
//
// With dnsmasq, netbootd runs beside it as the AM only (no DHCP, no TFTP),
// so that the RC can enroll there too and every server has the same end
// point. Runs take turns (each mode, each server, then again) so that a
// slow spell of the machine does not fall on one server only.
//
// Phases, in seconds after power-on (QMP "cont"), from a packet capture on
// the node's tap (the same measure whatever the server: vtestbed.Capture),
// the serial log and the AM's timeline:
//
//	DHCP offer      the first offer sent to the node
//	first file      its first boot-file request (TFTP RRQ, HTTP request)
//	kernel asked    its request for the kernel
//	kernel, initramfs, image   the last payload the server sent of that
//	                file (uefi-http: the RAM-disk image holds both)
//	init runs, RC started   the serial log (polled every 20 ms)
//	enrolled        the appliance's timeline ("rc enrolled")
//
// The fetch phase is first file -> initramfs (or image) done: every boot
// file the node fetched; kernel+initramfs is kernel asked -> initramfs done.
//
// Usage (as root, with qemu-system-x86 ipxe-qemu pxelinux syslinux-common
// dnsmasq-base busybox ovmf shim-signed grub-efi-amd64-signed installed;
// the kernel is fetched into .cache/kernel):
//
//	go run ./bench/boot
//	go run ./bench/boot -runs 5 -modes bios-tftp,bios-ipxe-http -servers netbootd,dnsmasq-ipxe
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
	"path"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/orbit-lab/netboot/bench/internal/benchproc"

	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// imageName is the image the node boots.
const imageName = "orbit-2.0.0"

// uefiNIC is the UEFI node's NIC: virtio-net without QEMU's iPXE ROM, so
// that OVMF's own PXE and HTTP Boot run.
const uefiNIC = vtestbed.NIC("virtio-net-pci,romfile=")

// mode is a boot path.
type mode string

const (
	biosTFTP mode = "bios-tftp"
	biosIPXE mode = "bios-ipxe-http"
	uefiPXE  mode = "uefi-pxe"
	uefiHTTP mode = "uefi-http"
)

var allModes = []mode{biosTFTP, biosIPXE, uefiPXE, uefiHTTP}

func (m mode) uefi() bool { return m == uefiPXE || m == uefiHTTP }

// servers are who serves mode, netbootd first: the dnsmasq set-ups
// configured for the same path.
func (m mode) servers() []vtestbed.Server {
	switch m {
	case biosTFTP:
		return []vtestbed.Server{vtestbed.Netbootd, vtestbed.Dnsmasq, vtestbed.DnsmasqIPXE}
	case biosIPXE: // tuned dnsmasq: without 175.176 iPXE waits for ProxyDHCP
		return []vtestbed.Server{vtestbed.Netbootd, vtestbed.DnsmasqIPXE}
	}
	return []vtestbed.Server{vtestbed.Netbootd, vtestbed.Dnsmasq} // OVMF runs no iPXE
}

// label names a server in mode's results: dnsmasq's HTTP server too.
func label(m mode, s vtestbed.Server) string {
	if s != vtestbed.Netbootd && (m == biosIPXE || m == uefiHTTP) {
		return string(s) + "+httpd"
	}
	return string(s)
}

// The phases, in order (the package comment says where each comes from).
const (
	phOffer     = "DHCP offer"
	phFirst     = "first file"
	phKernelAsk = "kernel asked"
	phKernel    = "kernel"
	phInitrd    = "initramfs"
	phImage     = "image"
	phInit      = "init runs"
	phRC        = "RC started"
	phEnrolled  = "enrolled"
)

var phases = []string{phOffer, phFirst, phKernelAsk, phKernel, phInitrd, phImage, phInit, phRC, phEnrolled}

// Targets: the first of the boot path that was, then issue 14's.
const (
	enrollTarget     = 12 * time.Second // BIOS TFTP, netbootd: power-on -> enrolled
	httpFetchSpeedup = 5.0              // BIOS kernel+initramfs over HTTP vs TFTP
	ipxeEnrollRatio  = 0.75             // BIOS enrolled over iPXE-HTTP vs tuned dnsmasq over TFTP: 25% less time
)

type run struct {
	mode   mode
	server vtestbed.Server
	n      int
	at     map[string]time.Duration // phase -> after power-on
	files  []string                 // boot files in the order asked
	err    error
	load   string // 1-minute load average before the run
}

type options struct {
	runs    int
	modes   []mode
	servers []vtestbed.Server
	nic     vtestbed.NIC
	timeout time.Duration
	verbose bool
	qemu    []string
}

func main() {
	var o options
	var modes, servers, nic string
	flag.IntVar(&o.runs, "runs", 3, "runs per mode and server")
	flag.StringVar(&modes, "modes", "all", "boot paths: bios-tftp, bios-ipxe-http, uefi-pxe, uefi-http, or all")
	flag.StringVar(&servers, "servers", "netbootd,dnsmasq,dnsmasq-ipxe", "servers to compare (each mode takes those that serve it): netbootd, dnsmasq, dnsmasq-ipxe")
	flag.StringVar(&nic, "nic", string(vtestbed.VirtioNet), "the BIOS node's NIC: virtio-net-pci or e1000 (UEFI nodes: virtio-net-pci, without option ROM)")
	flag.DurationVar(&o.timeout, "timeout", 4*time.Minute, "longest wait for one boot")
	flag.BoolVar(&o.verbose, "v", false, "log each run's set-up")
	qemuArgs := flag.String("qemu-args", "", "more QEMU arguments, space-separated (e.g. \"-cpu max\")")
	flag.Parse()
	o.qemu = strings.Fields(*qemuArgs)
	if modes == "all" {
		o.modes = allModes
	} else {
		for _, m := range strings.Split(modes, ",") {
			m := mode(strings.TrimSpace(m))
			if !slices.Contains(allModes, m) {
				fmt.Fprintf(os.Stderr, "boot: -modes: unknown mode %q\n", m)
				os.Exit(2)
			}
			o.modes = append(o.modes, m)
		}
	}
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

// serversOf are the servers of mode that -servers asked for.
func (o options) serversOf(m mode) []vtestbed.Server {
	var out []vtestbed.Server
	for _, s := range m.servers() {
		if slices.Contains(o.servers, s) {
			out = append(out, s)
		}
	}
	return out
}

func bench(o options) error {
	for _, m := range o.modes {
		for _, s := range o.serversOf(m) {
			if err := vtestbed.Missing(s); err != nil {
				return fmt.Errorf("%s, %s: %w", m, s, err)
			}
		}
		if m.uefi() {
			for _, f := range append([]string{vtestbed.OVMFCode, vtestbed.OVMFVarsMS}, vtestbed.UEFILoaders...) {
				if _, err := os.Stat(f); err != nil {
					return fmt.Errorf("%s: needs Debian's ovmf, shim-signed, grub-efi-amd64-signed: %w", m, err)
				}
			}
		}
	}
	printSetup(o)

	// One image for every run: the same kernel and initramfs bytes.
	img, skipped, err := buildImage(o)
	if err != nil {
		return err
	}
	defer os.RemoveAll(img.Dir)
	fmt.Printf("image %s: %s, %s", img.Name, img.Kernel, img.Initrd)
	if img.EFIImg != "" {
		fmt.Printf(", %s", img.EFIImg)
	}
	fmt.Printf(" (built in %v)\n\n", img.Took.Round(time.Millisecond))
	modes := slices.DeleteFunc(slices.Clone(o.modes), func(m mode) bool { return skipped[m] != nil })

	var runs []run
	for i := 1; i <= o.runs; i++ {
		for _, m := range modes {
			for _, s := range o.serversOf(m) {
				r := boot(o, m, s, i, img)
				runs = append(runs, r)
				name := fmt.Sprintf("%-14s %-18s run %d:", m, label(m, s), i)
				if r.err != nil {
					fmt.Printf("%s FAILED (load %s): %v\n", name, r.load, r.err)
				} else {
					fmt.Printf("%s enrolled %.2fs after power-on (load average before the run: %s)\n", name, r.at[phEnrolled].Seconds(), r.load)
				}
			}
		}
	}
	fmt.Println()
	meds := medians(o, modes, runs)
	for _, m := range modes {
		report(os.Stdout, o, m, runs, meds[m])
	}
	targets(os.Stdout, meds)
	var errs []error
	for m, err := range skipped {
		errs = append(errs, fmt.Errorf("%s not run: %w", m, err))
	}
	for _, r := range runs {
		if r.err != nil {
			errs = append(errs, errors.New("some runs failed"))
			break
		}
	}
	return errors.Join(errs...)
}

// errNoEFIImg: this tree's nbctl cannot build the RAM-disk image.
var errNoEFIImg = errors.New("needs `nbctl image build --efi-img` (the UEFI HTTP Boot RAM-disk image), which this tree's nbctl lacks")

// buildImage builds the image all runs boot, with its UEFI HTTP Boot
// RAM-disk image when uefi-http is asked for. Without nbctl's --efi-img
// that mode is skipped (and said so), the others run.
func buildImage(o options) (vtestbed.Image, map[mode]error, error) {
	skipped := map[mode]error{}
	imgOpts := vtestbed.ImageOptions{EFIImg: slices.Contains(o.modes, uefiHTTP)}
	for {
		var img vtestbed.Image
		var out bytes.Buffer
		var buildErr error
		err := vtestbed.RunProgram("bench-boot/image", &out, func(t testing.TB) {
			dir, err := os.MkdirTemp("", "vtb-bench-image-")
			if err != nil {
				t.Fatal(err)
			}
			img, buildErr = vtestbed.BuildImage(t, imageName, fmt.Sprintf("http://%s:%d", vtestbed.ServerIP, vtestbed.AMPort), dir, imgOpts)
			if buildErr != nil {
				os.RemoveAll(dir)
			}
		})
		switch {
		case err != nil:
			return img, nil, fmt.Errorf("image build: %w\n%s", err, out.String())
		case buildErr != nil && imgOpts.EFIImg && strings.Contains(buildErr.Error(), "flag provided but not defined: -efi-img"):
			skipped[uefiHTTP] = errNoEFIImg
			fmt.Printf("uefi-http: SKIPPED: %v\n", errNoEFIImg)
			imgOpts.EFIImg = false
			continue
		case buildErr != nil:
			return img, nil, fmt.Errorf("image build: %w\n%s", buildErr, out.String())
		}
		return img, skipped, nil
	}
}

func printSetup(o options) {
	qemu, _ := exec.Command("qemu-system-x86_64", "--version").Output()
	fmt.Printf("machine: %d CPUs, %s; QEMU: %s; TCG; BIOS nodes: SeaBIOS, 256 MiB, %s with QEMU's iPXE ROM; UEFI nodes: OVMF Secure Boot, 512 MiB, virtio-net-pci without ROM\n",
		runtime.NumCPU(), runtime.GOARCH, strings.SplitN(strings.TrimSpace(string(qemu)), "\n", 2)[0], o.nic)
	fmt.Printf("command: go run ./bench/boot %s\n", strings.Join(os.Args[1:], " "))
}

var (
	reInit = regexp.MustCompile(`Run /init as init process`)
	reRC   = regexp.MustCompile(`orbit-init: .*msg="rc: started"`)
)

// boot makes a testbed with one node, powers it on and times the phases.
func boot(o options, m mode, server vtestbed.Server, n int, img vtestbed.Image) run {
	r := run{mode: m, server: server, n: n, at: map[string]time.Duration{}, load: benchproc.LoadAvg()}
	var out bytes.Buffer
	var w io.Writer = &out
	if o.verbose {
		w = io.MultiWriter(&out, os.Stderr)
	}
	err := vtestbed.RunProgram(fmt.Sprintf("bench-boot/%s/%s/%d", m, server, n), w, func(t testing.TB) {
		nic, bo := o.nic, vtestbed.BootOptions{Order: "n", Extra: o.qemu}
		if m.uefi() { // the firmware's own network stack, not QEMU's iPXE ROM
			nic, bo.Memory = uefiNIC, 512
			bo.UEFI = &vtestbed.UEFI{SecureBoot: true, HTTPBoot: m == uefiHTTP}
		}
		node := vtestbed.NewNode(1, nic)
		tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Server: server, BuiltImage: &img, AM: true, IPXEScript: m == biosIPXE})
		if m == uefiPXE {
			if err := tb.InstallUEFILoaders(); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		defer cancel()
		if server == vtestbed.Netbootd {
			if _, err := tb.SetBootImageNS(ctx, img.Name, node); err != nil {
				t.Fatal(err)
			}
		}
		capture, err := tb.Capture(node)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = capture.Stop() }() // when the boot failed; its packets are not needed then
		vm := tb.Boot(t, node, bo)
		since := vm.Since
		for _, w := range []struct {
			phase string
			re    *regexp.Regexp
		}{{phInit, reInit}, {phRC, reRC}} {
			l, err := vm.Wait(ctx, w.re)
			if err != nil {
				t.Fatalf("%s: %v\nserial:\n%s", w.phase, err, vm.Console.Text())
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
				setOnce(r.at, phEnrolled, since(e.At))
			}
		}
		pkts, err := capture.Stop()
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if at := vtestbed.FirstDHCP(pkts, vtestbed.DHCPOffer); !at.IsZero() {
			r.at[phOffer] = since(at)
		}
		r.files = filePhases(r.at, pkts, img, since)
		for _, p := range wantPhases(m) {
			if _, ok := r.at[p]; !ok {
				t.Errorf("phase %q not seen; files asked: %q", p, r.files)
			}
		}
	})
	if err != nil {
		r.err = fmt.Errorf("%w\n%s", err, out.String())
	}
	return r
}

// filePhases sets the boot-file phases from the capture and returns the
// files in the order the node asked for them. Only requests before the
// kernel ran count: the RC's own HTTP requests come later.
func filePhases(at map[string]time.Duration, pkts []vtestbed.Packet, img vtestbed.Image, since func(time.Time) time.Duration) []string {
	fetches, order := vtestbed.Fetches(pkts)
	base := func(f string) string { return path.Base(strings.TrimPrefix(f, "/")) }
	var files []string
	for i, name := range order {
		f := fetches[name]
		if d, ok := at[phInit]; ok && since(f.Requested) > d {
			break
		}
		files = append(files, name)
		if i == 0 {
			at[phFirst] = since(f.Requested)
		}
		if f.Done.IsZero() {
			continue
		}
		switch base(name) {
		case path.Base(img.Kernel):
			at[phKernelAsk] = since(f.Requested)
			at[phKernel] = since(f.Done)
		case path.Base(img.Initrd):
			at[phInitrd] = since(f.Done)
		case path.Base(img.EFIImg):
			at[phImage] = since(f.Done)
		}
	}
	return files
}

// wantPhases are the phases a run of mode must have.
func wantPhases(m mode) []string {
	if m == uefiHTTP {
		return []string{phOffer, phFirst, phImage, phInit, phRC, phEnrolled}
	}
	return []string{phOffer, phFirst, phKernelAsk, phKernel, phInitrd, phInit, phRC, phEnrolled}
}

func setOnce(m map[string]time.Duration, k string, d time.Duration) {
	if _, ok := m[k]; !ok {
		m[k] = d
	}
}

// Derived durations, per run and as medians.
const (
	dFetch   = "fetch"            // first file asked -> initramfs (image) done
	dKI      = "kernel+initramfs" // kernel asked -> initramfs done
	dEnroled = phEnrolled         // power-on -> enrolled
)

// derived are the durations the targets are about.
func derived(at map[string]time.Duration) map[string]time.Duration {
	d := map[string]time.Duration{}
	if e, ok := at[phEnrolled]; ok {
		d[dEnroled] = e
	}
	end, ok := at[phInitrd]
	if !ok {
		end, ok = at[phImage]
	}
	if f, has := at[phFirst]; ok && has {
		d[dFetch] = end - f
	}
	if k, has := at[phKernelAsk]; has {
		if i, has := at[phInitrd]; has {
			d[dKI] = i - k
		}
	}
	return d
}

// medians are, per mode and server, the median of each phase and derived
// duration over the runs that succeeded.
func medians(o options, modes []mode, runs []run) map[mode]map[vtestbed.Server]map[string]time.Duration {
	out := map[mode]map[vtestbed.Server]map[string]time.Duration{}
	for _, m := range modes {
		out[m] = map[vtestbed.Server]map[string]time.Duration{}
		for _, s := range o.serversOf(m) {
			all := map[string][]time.Duration{}
			for _, r := range runs {
				if r.mode != m || r.server != s || r.err != nil {
					continue
				}
				for k, d := range r.at {
					all[k] = append(all[k], d)
				}
				for k, d := range derived(r.at) {
					all["="+k] = append(all["="+k], d)
				}
			}
			med := map[string]time.Duration{}
			for k, ds := range all {
				med[k] = median(ds)
			}
			out[m][s] = med
		}
	}
	return out
}

// report prints mode's runs and medians, then its comparison.
func report(w io.Writer, o options, m mode, runs []run, meds map[vtestbed.Server]map[string]time.Duration) {
	fmt.Fprintf(w, "== %s\n", m)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintf(tw, "server\trun\t%s\t%s\t%s\t\n", strings.Join(phases, "\t"), dFetch, dKI)
	row := func(server, lbl string, at func(p string) (time.Duration, bool)) {
		cells := []string{server, lbl}
		for _, p := range append(slices.Clone(phases), "="+dFetch, "="+dKI) {
			if d, ok := at(p); ok {
				cells = append(cells, fmt.Sprintf("%.2f", d.Seconds()))
			} else {
				cells = append(cells, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	for _, r := range runs {
		if r.mode != m || r.err != nil {
			continue
		}
		d := derived(r.at)
		row(label(m, r.server), fmt.Sprint(r.n), func(p string) (time.Duration, bool) {
			if k, ok := strings.CutPrefix(p, "="); ok {
				v, has := d[k]
				return v, has
			}
			v, has := r.at[p]
			return v, has
		})
	}
	for _, s := range o.serversOf(m) {
		row(label(m, s), "median", func(p string) (time.Duration, bool) {
			v, ok := meds[s][p]
			return v, ok
		})
	}
	tw.Flush()
	for _, r := range runs {
		if r.mode == m && r.err == nil && r.n == 1 {
			fmt.Fprintf(w, "files asked (%s): %s\n", label(m, r.server), strings.Join(r.files, " "))
		}
	}
	ref := meds[vtestbed.Netbootd]
	for _, k := range []string{dEnroled, dFetch, dKI} {
		fmt.Fprintf(w, "%s (median of %d):", map[string]string{dEnroled: "power-on to enrolled", dFetch: "fetch phase", dKI: "kernel+initramfs"}[k], o.runs)
		seen := false
		for _, s := range o.serversOf(m) {
			d, has := meds[s]["="+k]
			if !has {
				continue
			}
			seen = true
			fmt.Fprintf(w, "  %s %.2fs", label(m, s), d.Seconds())
			if r, hasRef := ref["="+k]; hasRef && s != vtestbed.Netbootd {
				fmt.Fprintf(w, " (netbootd/%s %.2f)", s, r.Seconds()/d.Seconds())
			}
		}
		if !seen {
			fmt.Fprint(w, "  -")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// targets prints issue 14's targets, each with what it compares and the
// verdict, when the modes it needs were run.
func targets(w io.Writer, meds map[mode]map[vtestbed.Server]map[string]time.Duration) {
	get := func(m mode, s vtestbed.Server, k string) (time.Duration, bool) {
		d, ok := meds[m][s]["="+k]
		return d, ok && d > 0
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintln(w, "targets (medians; a ratio is netbootd's time over the other's):")
	if d, ok := get(biosTFTP, vtestbed.Netbootd, dEnroled); ok {
		fmt.Fprintf(w, "  BIOS TFTP, netbootd enrolled within %v of power-on: %s (%.2fs)\n", enrollTarget, verdict(d <= enrollTarget), d.Seconds())
	}
	// 1. HTTP vs TFTP for the big files, against the faster TFTP server.
	if http, ok := get(biosIPXE, vtestbed.Netbootd, dKI); ok {
		var best time.Duration
		var bestS vtestbed.Server
		for _, s := range []vtestbed.Server{vtestbed.Netbootd, vtestbed.Dnsmasq, vtestbed.DnsmasqIPXE} {
			if d, ok := get(biosTFTP, s, dKI); ok && (best == 0 || d < best) {
				best, bestS = d, s
			}
		}
		if best > 0 {
			x := best.Seconds() / http.Seconds()
			fmt.Fprintf(w, "  BIOS kernel+initramfs, netbootd HTTP %.2fs vs TFTP (fastest: %s) %.2fs: %.1fx faster, want >= %.0fx: %s\n",
				http.Seconds(), bestS, best.Seconds(), x, httpFetchSpeedup, verdict(x >= httpFetchSpeedup))
		}
	} else if meds[biosTFTP] != nil || meds[biosIPXE] != nil {
		fmt.Fprintln(w, "  BIOS kernel+initramfs HTTP vs TFTP: needs bios-tftp and bios-ipxe-http")
	}
	// 2. power-on -> enrolled, netbootd iPXE-HTTP vs tuned dnsmasq TFTP.
	http, ok1 := get(biosIPXE, vtestbed.Netbootd, dEnroled)
	tuned, ok2 := get(biosTFTP, vtestbed.DnsmasqIPXE, dEnroled)
	if ok1 && ok2 {
		r := http.Seconds() / tuned.Seconds()
		fmt.Fprintf(w, "  BIOS power-on to enrolled, netbootd iPXE-HTTP %.2fs vs dnsmasq-ipxe TFTP %.2fs: ratio %.2f, want <= %.2f (25%% less time): %s\n",
			http.Seconds(), tuned.Seconds(), r, ipxeEnrollRatio, verdict(r <= ipxeEnrollRatio))
	} else if meds[biosTFTP] != nil || meds[biosIPXE] != nil {
		fmt.Fprintln(w, "  BIOS power-on to enrolled iPXE-HTTP vs tuned dnsmasq TFTP: needs bios-tftp (with dnsmasq-ipxe) and bios-ipxe-http")
	}
	// 3. UEFI: no slower than dnsmasq serving the same signed chain.
	for _, m := range []mode{uefiPXE, uefiHTTP} {
		if meds[m] == nil {
			continue // not run
		}
		for _, k := range []string{dEnroled, dFetch} {
			nb, ok1 := get(m, vtestbed.Netbootd, k)
			dm, ok2 := get(m, vtestbed.Dnsmasq, k)
			if !ok1 || !ok2 {
				fmt.Fprintf(w, "  %s %s: needs both servers' runs of %s\n", m, k, m)
				continue
			}
			r := nb.Seconds() / dm.Seconds()
			fmt.Fprintf(w, "  %s %s, netbootd %.2fs vs %s %.2fs: ratio %.3f, want <= 1.000: %s\n",
				m, k, nb.Seconds(), label(m, vtestbed.Dnsmasq), dm.Seconds(), r, verdict(r <= 1))
		}
	}
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
