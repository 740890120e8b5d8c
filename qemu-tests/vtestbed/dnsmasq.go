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

// DnsmasqArgs returns dnsmasq's command line for a testbed: DHCP on the
// bridge for the nodes' reservations only (a static range), pxelinux.0 as
// the boot file, TFTP from root. With ipxe, also option 175.176 = 1 and
// router advertisements (fd99::/64, M=0, O=0, router lifetime 0), which
// end iPXE's ProxyDHCP and IPv6 waits as netbootd's ipxe_fast does.
func DnsmasqArgs(nodes []Node, root, state string, ipxe bool) []string {
	args := []string{
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=" + Bridge, "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=%s,static,%s,1h", Prefix.Addr(), prefixMask(Prefix)),
		"--dhcp-boot=pxelinux.0",
		"--enable-tftp", "--tftp-root=" + root,
		"--log-facility=-",
		"--dhcp-leasefile=" + filepath.Join(state, "dnsmasq.leases"),
		"--pid-file=" + filepath.Join(state, "dnsmasq.pid"),
	}
	for _, n := range nodes {
		args = append(args, fmt.Sprintf("--dhcp-host=%s,%s,%s", n.MAC, n.IP, n.Hostname))
	}
	if ipxe {
		args = append(args,
			"--dhcp-option-force=encap:175,176,1b",
			"--enable-ra", "--dhcp-range=::,constructor:"+Bridge+",ra-only",
			"--ra-param="+Bridge+",60,0")
	}
	return args
}

func prefixMask(p netip.Prefix) string {
	m := ^uint32(0) << (32 - p.Bits())
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
}

// startDnsmasq runs dnsmasq in the testbed's namespace and waits until it
// serves TFTP.
func startDnsmasq(tb *Testbed, ipxe bool) (*dnsmasq, error) {
	if ipxe { // the RA constructor needs an IPv6 prefix on the bridge
		if err := tb.Netns.IP("addr", "add", "fd99::1/64", "dev", Bridge); err != nil {
			return nil, err
		}
	}
	d := &dnsmasq{done: make(chan struct{})}
	d.cmd = tb.Netns.Command(context.Background(), "dnsmasq", DnsmasqArgs(tb.Nodes, tb.TFTPRoot, tb.Dir, ipxe)...)
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
			if strings.Contains(l.Text, "TFTP root is") {
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
