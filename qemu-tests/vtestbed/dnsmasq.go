package vtestbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
)

// dnsmasq is the comparison server: DHCP and TFTP for the same nodes.
type dnsmasq struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     []Line
	done    chan struct{} // closed once dnsmasq has exited; then exitErr is set
	exitErr error
}

// DnsmasqBoot is what a dnsmasq site serves its nodes, configured by
// hand for the same paths netbootd takes by itself.
type DnsmasqBoot struct {
	Root, State string // the TFTP root; where the lease and pid files go
	// IPXEFast sends option 175.176 = 1 and router advertisements
	// (fd99::/64, M=0, O=0, router lifetime 0), which end iPXE's ProxyDHCP
	// and IPv6 waits as netbootd's ipxe_fast does.
	IPXEFast bool
	// IPXEScript sends iPXE clients (QEMU's NIC ROMs) the URL of their
	// per-node script on the site's HTTP server (IPXEScriptURL) instead of
	// pxelinux.0.
	IPXEScript bool
	// HTTPBoot is the file of Root UEFI HTTP Boot clients are sent to on
	// the site's HTTP server, with option 60 HTTPClient; "" sends them
	// nothing.
	HTTPBoot string
}

// SiteHTTPURL is the site's HTTP server beside dnsmasq (SiteHTTP), which
// serves the TFTP root.
var SiteHTTPURL = "http://" + ServerIP.String() + "/"

// IPXEScriptURL is where a dnsmasq site's iPXE clients find their script:
// the site's HTTP server, ipxe/<HEX> (written by hand or a script of the
// site's, from the image's iPXE entry).
func IPXEScriptURL(n Node) string { return SiteHTTPURL + "ipxe/" + n.Hex() }

// DnsmasqArgs returns dnsmasq's command line for a testbed: DHCP on the
// bridge for the nodes' reservations only (a static range), TFTP from
// b.Root, and the boot file by client as netbootd chooses it: BIOS ->
// pxelinux.0; UEFI x86-64 PXE (option 93 = 7, 9) -> shimx64.efi (dhcp-boot
// sets the BOOTP file field, the only one shim reads); with b.HTTPBoot,
// UEFI HTTP Boot (93 = 16) -> its URL and option 60 HTTPClient; with
// b.IPXEScript, iPXE (it sends option 175) -> the node's script URL.
func DnsmasqArgs(nodes []Node, b DnsmasqBoot) []string {
	args := []string{
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=" + Bridge, "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=%s,static,%s,1h", Prefix.Addr(), prefixMask(Prefix)),
		"--dhcp-match=set:efi64,option:client-arch,7",
		"--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-match=set:efihttp,option:client-arch,16",
		"--dhcp-match=set:ipxe,175",
		"--dhcp-boot=tag:efi64,tag:!efihttp,shimx64.efi",
		"--enable-tftp", "--tftp-root=" + b.Root,
		"--log-facility=-",
		"--dhcp-leasefile=" + filepath.Join(b.State, "dnsmasq.leases"),
		"--pid-file=" + filepath.Join(b.State, "dnsmasq.pid"),
	}
	// Exclusive tags: which of several matching dhcp-boot lines dnsmasq
	// takes is not something to rely on.
	if b.IPXEScript {
		args = append(args, "--dhcp-boot=tag:!efi64,tag:!efihttp,tag:!ipxe,pxelinux.0")
	} else {
		args = append(args, "--dhcp-boot=tag:!efi64,tag:!efihttp,pxelinux.0")
	}
	if b.HTTPBoot != "" {
		args = append(args, "--dhcp-option-force=tag:efihttp,60,HTTPClient",
			"--dhcp-boot=tag:efihttp,"+SiteHTTPURL+b.HTTPBoot)
	}
	for _, n := range nodes {
		args = append(args, fmt.Sprintf("--dhcp-host=%s,set:%s,%s,%s", n.MAC, n.Hostname, n.IP, n.Hostname))
		if b.IPXEScript {
			args = append(args, fmt.Sprintf("--dhcp-boot=tag:ipxe,tag:!efi64,tag:!efihttp,tag:%s,%s", n.Hostname, IPXEScriptURL(n)))
		}
	}
	if b.IPXEFast {
		args = append(args,
			"--dhcp-option-force=encap:175,176,1b",
			"--enable-ra", "--dhcp-range=::,constructor:"+Bridge+",ra-only",
			"--ra-param="+Bridge+",60,0")
	}
	return args
}

// SiteDnsmasqArgs returns the command line of a site's own DHCP server,
// beside a netbootd in proxy mode: dnsmasq on the site host's interface
// iface (at SiteIP) hands out the nodes' reservations (a static range)
// with itself as router and DNS server, and says nothing about booting (no
// boot file, no TFTP): that is the proxy's part.
func SiteDnsmasqArgs(nodes []Node, iface, state string) []string {
	args := []string{
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root", "--no-ping",
		"--interface=" + iface, "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=%s,static,%s,1h", Prefix.Addr(), prefixMask(Prefix)),
		"--dhcp-option=option:router," + SiteIP.String(),
		"--dhcp-option=option:dns-server," + SiteIP.String(),
		"--log-facility=-", "--log-dhcp",
		"--dhcp-leasefile=" + filepath.Join(state, "site-dnsmasq.leases"),
		"--pid-file=" + filepath.Join(state, "site-dnsmasq.pid"),
	}
	for _, n := range nodes {
		args = append(args, fmt.Sprintf("--dhcp-host=%s,%s,%s", n.MAC, n.IP, n.Hostname))
	}
	return args
}

func prefixMask(p netip.Prefix) string {
	m := ^uint32(0) << (32 - p.Bits())
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

// startDnsmasq runs dnsmasq with args in the namespace ns and waits
// until it has logged a line containing readyText.
func startDnsmasq(ns *Netns, args []string, readyText string) (*dnsmasq, error) {
	d := &dnsmasq{done: make(chan struct{})}
	d.cmd = ns.Command(context.Background(), "dnsmasq", args...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	waited, err := childproc.StartLocked(d.cmd)
	if err != nil {
		return nil, fmt.Errorf("dnsmasq: %w", err)
	}
	ready := make(chan struct{})
	var readyOnce sync.Once
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := Line{At: time.Now(), Text: sc.Text()}
			d.mu.Lock()
			d.log = append(d.log, l)
			d.mu.Unlock()
			if strings.Contains(l.Text, readyText) {
				readyOnce.Do(func() { close(ready) })
			}
		}
	}()
	go func() {
		d.exitErr = <-waited
		_ = pw.Close() // an io.Pipe's Close never fails
		close(d.done)
	}()
	select {
	case <-ready:
		return d, nil
	case <-d.done:
		err := d.exitErr
		if err == nil {
			err = errors.New("exit status 0")
		}
		return nil, fmt.Errorf("dnsmasq exited at start (%w):\n%s", err, d.text())
	case <-time.After(10 * time.Second):
		d.stop()
		return nil, fmt.Errorf("dnsmasq not ready within 10s:\n%s", d.text())
	}
}

func (d *dnsmasq) lines() []Line {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Line(nil), d.log...)
}

func (d *dnsmasq) text() string {
	var b strings.Builder
	for _, l := range d.lines() {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

func (d *dnsmasq) stop() {
	childproc.Stop(d.cmd.Process, syscall.SIGTERM, 5*time.Second, d.done)
}
