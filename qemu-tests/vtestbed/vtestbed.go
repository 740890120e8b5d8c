// Package vtestbed is a virtual testbed for tests and benchmarks that boot
// real nodes: QEMU machines (TCG) netboot from a real netbootd, or from
// dnsmasq for comparison, on a bridge inside a network namespace of their
// own.
//
// New makes the namespace and, inside it only:
//
//	br0        the control network, 10.18.0.1/16 (the appliance's address)
//	vtbv0/1    a veth pair, one end in br0: the bridge has carrier (and so
//	           an IPv6 link-local address for the RA responder) before any
//	           machine runs
//	tapN       one tap per node, in br0
//
// and starts the server: netbootd (through internal/apptest) with DHCP on
// br0, TFTP on :69 and the AM on :5054, seeded with the nodes; or dnsmasq
// (DHCP and TFTP); or netbootd in DHCP proxy mode beside a site's dnsmasq,
// which runs on a second namespace (the site host, SiteIP) joined to br0. The TFTP root holds pxelinux.0, ldlinux.c32 and, when
// asked, an orbit-pxe image built with `nbctl image build` whose kernel
// command line names the AM (orbit.am=http://10.18.0.1:5054).
//
// Boot starts a node's machine paused (-S), connects to its QMP socket and
// powers it on with "cont"; or, with BootOptions.AMPower, leaves it paused
// for netbootd's power service (each node's inventory entry names its QMP
// socket: power: qemu:<socket>), which nbctl load and OMF's /cmc calls
// (tb.CMC) drive. Everything is torn down when the test ends,
// also when it fails: machines are stopped, the namespace is deleted. When
// the test failed, the serial logs of its machines, QEMU's own output, the
// server's log and the nodes' timelines are copied to the artifacts
// directory ($QEMU_ARTIFACTS/<test>, else <module root>/.cache/qemu-artifacts/<test>)
// and its path is logged.
//
// Requirements (Require skips the test without them): root,
// /dev/net/tun, ip, qemu-system-x86_64 with the iPXE ROMs (Debian:
// qemu-system-x86 ipxe-qemu), /usr/lib/PXELINUX/pxelinux.0 (pxelinux) and
// /usr/lib/syslinux/modules/bios/ldlinux.c32 (syslinux-common); dnsmasq
// for the dnsmasq server. The Debian kernel is fetched into
// <module root>/.cache/kernel (scripts/fetch-kernel.sh, as `make kernel`).
package vtestbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/internal/modroot"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// The control network inside the namespace.
var (
	Prefix   = netip.MustParsePrefix("10.18.0.0/16")
	ServerIP = netip.MustParseAddr("10.18.0.1")
	// SiteIP is the site host's address, with NetbootdProxy: its DHCP
	// server's, the nodes' router's.
	SiteIP = netip.MustParseAddr("10.18.0.2")
)

const (
	// AMPort is the AM's port inside the namespace.
	AMPort = 5054
	// Domain is the testbed domain of the nodes.
	Domain = "vtb"
	// Bridge is the control network's bridge.
	Bridge = "br0"

	// PXELinux is where Debian's pxelinux package puts pxelinux itself,
	// the first file the nodes fetch from the TFTP root.
	PXELinux = "/usr/lib/PXELINUX/pxelinux.0"
	// LDLinux is where Debian's syslinux-common package puts the module
	// pxelinux fetches next from the TFTP root.
	LDLinux = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// NIC is a QEMU network device model.
type NIC string

// The NICs the orbit-pxe image has drivers for.
const (
	E1000     NIC = "e1000"
	VirtioNet NIC = "virtio-net-pci"
)

// Node is a node of the testbed: its inventory entry and its machine.
type Node struct {
	HRN      string // node1-1.vtb.orbit-lab.org
	Hostname string // node1-1
	IP       netip.Addr
	MAC      string // 52:54:00:18:01:01
	NIC      NIC
	// DiskMarker, when set, makes the node's disk bootable: its boot
	// sector prints DiskMarker on the serial port and powers off; on a
	// UEFI machine (BootOptions.UEFI) its EFI system partition does the
	// same through shim and GRUB (ESPMarkerFiles). Without it the disk is
	// blank (SeaBIOS: "No bootable device.").
	DiskMarker string
	// Tap is the node's tap in the bridge (set by New).
	Tap string
}

// NewNode returns node i (1 to 250) of the testbed: node1-i, 10.18.1.i,
// MAC 52:54:00:18:01:<i>.
func NewNode(i int, nic NIC) Node {
	if i < 1 || i > 250 {
		panic(fmt.Sprintf("vtestbed: node %d: want 1 to 250", i))
	}
	host := fmt.Sprintf("node1-%d", i)
	return Node{
		HRN:      host + "." + Domain + ".orbit-lab.org",
		Hostname: host,
		IP:       netip.AddrFrom4([4]byte{10, 18, 1, byte(i)}),
		MAC:      fmt.Sprintf("52:54:00:18:01:%02x", i),
		NIC:      nic,
	}
}

// Hex is the node's address as pxelinux spells its config file name.
func (n Node) Hex() string {
	b := n.IP.As4()
	return fmt.Sprintf("%02X%02X%02X%02X", b[0], b[1], b[2], b[3])
}

// Server says what serves DHCP and TFTP.
type Server string

const (
	// Netbootd is netbootd with DHCP (ipxe_fast: option 175.176 and the RA
	// responder), TFTP and the AM.
	Netbootd Server = "netbootd"
	// Dnsmasq is dnsmasq --enable-tftp with a static reservation per node
	// and --dhcp-boot pxelinux.0, as a site would run it; no AM.
	Dnsmasq Server = "dnsmasq"
	// DnsmasqIPXE is Dnsmasq, plus what ends iPXE's waits (option 175.176 =
	// 1, and router advertisements with lifetime 0, M=0, O=0).
	DnsmasqIPXE Server = "dnsmasq-ipxe"
	// NetbootdProxy is netbootd with dhcp.mode: proxy (PXE boot information
	// only), TFTP and the AM, beside the site's own DHCP server: dnsmasq on
	// the site host (Testbed.Site, SiteIP on br0) hands out the nodes'
	// reservations with itself as router and DHCP server, and no boot
	// information (SiteDnsmasqArgs). The image (Options.Image) is built
	// without orbit.am=, as an operator builds it, so that the RC has to
	// find the appliance by itself.
	NetbootdProxy Server = "netbootd-proxy"
	// None starts no server: the test runs its own on the bridge (as an
	// operator installs it) and sets AMURL once it serves.
	None Server = "none"
)

// Options say what the testbed holds.
type Options struct {
	Nodes  []Node
	Server Server // default Netbootd
	// Image, when set, is built with `nbctl image build --name Image`
	// (once per test process: SharedImage) and copied into the TFTP root,
	// unless BuiltImage is given.
	Image string
	// ImageOptions are Image's build options.
	ImageOptions ImageOptions
	// BuiltImage is an image built before (BuildImage), copied into the
	// TFTP root instead of building one.
	BuiltImage *Image
	// Extra is more netbootd YAML (keys other than the ones New writes:
	// state_dir, tftp_root, http, tftp, dhcp, inventory).
	Extra string
	// AM, with a dnsmasq server, also runs netbootd as the AM only (no
	// DHCP, no TFTP), so that the nodes' RCs can enroll.
	AM bool
	// QMPDir is where the machines' QMP sockets go (QMPSocket); default
	// the testbed's directory. It must exist.
	QMPDir string
	// IPXEScript lets netbootd send iPXE clients (QEMU's NIC ROMs) their
	// per-node iPXE script (kernel and initramfs over HTTP) instead of
	// pxelinux.0; with dnsmasq, dnsmasq sends them the URL of the same
	// script on the site's HTTP server (DnsmasqBoot.IPXEScript).
	IPXEScript bool
}

// Testbed is a running virtual testbed.
type Testbed struct {
	t        testing.TB
	Root     string // the Go module's root
	Netns    *Netns
	Site     *Netns // the site host, with NetbootdProxy
	Dir      string // machines' files: disks, serial logs, QMP sockets (short path)
	TFTPRoot string
	Nodes    []Node
	Server   Server
	QMPDir   string             // the machines' QMP sockets
	Image    *Image             // the image in the TFTP root, if any
	App      *apptest.Appliance // netbootd, for Netbootd
	AMURL    string             // http://10.18.0.1:5054, for Netbootd
	HTTP     *http.Client       // connects inside the namespace
	// Token is the API token the testbed's own calls send; "" for App's
	// admin token.
	Token   string
	started time.Time

	dnsmasq *dnsmasq
	http    *siteHTTP // beside dnsmasq, for the files iPXE and UEFI HTTP Boot fetch

	mu  sync.Mutex
	vms []*VM
}

// Require skips t, with one line saying why, unless everything a testbed
// with server needs is here; under CI=true it fails t instead.
func Require(t testing.TB, server Server) {
	t.Helper()
	if err := Missing(server); err != nil {
		testenv.Missing(t, "%v", err)
	}
}

// Missing says what a testbed with server lacks on this machine, or nil.
func Missing(server Server) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespace, bridge, taps)")
	}
	if err := haveTun(); err != nil {
		return fmt.Errorf("needs /dev/net/tun: %w", err)
	}
	tools := []string{"ip", "qemu-system-x86_64"}
	switch server {
	case Dnsmasq, DnsmasqIPXE:
		tools = append(tools, "dnsmasq", "busybox") // busybox httpd: the HTTP server beside dnsmasq
	case NetbootdProxy:
		tools = append(tools, "dnsmasq")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (apt-get install qemu-system-x86 ipxe-qemu pxelinux syslinux-common dnsmasq-base busybox)", tool)
		}
	}
	for _, f := range []string{PXELinux, LDLinux} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("needs %s (apt-get install pxelinux syslinux-common)", f)
		}
	}
	return nil
}

var kernelMu sync.Mutex

// KernelDir fetches the Debian kernel package into <root>/.cache/kernel
// if it is not there yet (scripts/fetch-kernel.sh, as `make kernel`) and
// returns its unpacked directory.
func KernelDir(root string) (string, error) {
	kernelMu.Lock()
	defer kernelMu.Unlock()
	cmd := exec.Command(filepath.Join(root, "scripts", "fetch-kernel.sh"), filepath.Join(root, ".cache", "kernel"))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/fetch-kernel.sh: %w\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("scripts/fetch-kernel.sh printed no directory")
	}
	return dir, nil
}

// New makes and starts a testbed; t's cleanup tears it down.
func New(t testing.TB, o Options) *Testbed {
	t.Helper()
	if o.Server == "" {
		o.Server = Netbootd
	}
	Require(t, o.Server)
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	tb := &Testbed{t: t, Root: root, Server: o.Server, started: time.Now()}
	resetArtifacts(t, root)

	// A short directory: a unix socket path must fit in 108 bytes.
	tb.Dir, err = os.MkdirTemp("", "vtb-")
	if err != nil {
		t.Fatal(err)
	}
	tb.Netns, err = NewNetns("vtb")
	if err != nil {
		os.RemoveAll(tb.Dir)
		t.Fatal(err)
	}
	// Runs last: after the machines' and the server's cleanups.
	t.Cleanup(func() {
		tb.stopAll()
		if tb.dnsmasq != nil {
			tb.dnsmasq.stop()
		}
		if tb.http != nil {
			tb.http.stop()
		}
		if err := tb.Netns.Delete(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if tb.Site != nil {
			if err := tb.Site.Delete(); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
		os.RemoveAll(tb.Dir)
	})
	tb.HTTP = tb.Netns.HTTPClient()
	tb.QMPDir = o.QMPDir
	if tb.QMPDir == "" {
		tb.QMPDir = tb.Dir
	}

	for i, n := range o.Nodes {
		if n.NIC == "" {
			n.NIC = VirtioNet
		}
		n.Tap = fmt.Sprintf("tap%d", i)
		tb.Nodes = append(tb.Nodes, n)
	}
	if err := tb.network(); err != nil {
		t.Fatal(err)
	}

	switch o.Server {
	case Netbootd:
		tb.AMURL = fmt.Sprintf("http://%s:%d", ServerIP, AMPort)
		tb.newAppliance(o, true)
		tb.installBootFiles(o)
		tb.App.Start()
		t.Cleanup(tb.saveServerArtifacts) // runs before netbootd is stopped
	case NetbootdProxy:
		if err := tb.siteHost(); err != nil {
			t.Fatal(err)
		}
		tb.dnsmasq, err = startDnsmasq(tb.Site, SiteDnsmasqArgs(tb.Nodes, siteIf, tb.Dir), "DHCP, static leases only")
		if err != nil {
			t.Fatal(err)
		}
		tb.AMURL = fmt.Sprintf("http://%s:%d", ServerIP, AMPort)
		tb.newAppliance(o, true)
		tb.installBootFiles(o)
		tb.App.Start()
		t.Cleanup(tb.saveServerArtifacts)
	case Dnsmasq, DnsmasqIPXE:
		tb.TFTPRoot = filepath.Join(tb.Dir, "tftpboot")
		if err := os.MkdirAll(filepath.Join(tb.TFTPRoot, "pxelinux.cfg"), 0o755); err != nil {
			t.Fatal(err)
		}
		tb.installBootFiles(o)
		b := DnsmasqBoot{Root: tb.TFTPRoot, State: tb.Dir, IPXEFast: o.Server == DnsmasqIPXE, IPXEScript: o.IPXEScript}
		if tb.Image != nil {
			if err := tb.linkDnsmasqConfigs(o.IPXEScript); err != nil {
				t.Fatal(err)
			}
			b.HTTPBoot = tb.Image.EFIImg
		}
		if b.IPXEFast { // the RA constructor needs an IPv6 prefix on the bridge
			if err := tb.Netns.IP("addr", "add", "fd99::1/64", "dev", Bridge); err != nil {
				t.Fatal(err)
			}
		}
		if b.IPXEScript || b.HTTPBoot != "" {
			if tb.http, err = startSiteHTTP(tb.Netns, tb.TFTPRoot, tb.Dir); err != nil {
				t.Fatal(err)
			}
		}
		tb.dnsmasq, err = startDnsmasq(tb.Netns, DnsmasqArgs(tb.Nodes, b), "TFTP root is")
		if err != nil {
			t.Fatal(err)
		}
		if o.AM {
			tb.AMURL = fmt.Sprintf("http://%s:%d", ServerIP, AMPort)
			tb.newAppliance(o, false)
			tb.App.Start()
		}
		t.Cleanup(tb.saveServerArtifacts)
	case None:
	default:
		t.Fatalf("vtestbed: unknown server %q", o.Server)
	}
	t.Logf("testbed %s (%s) ready in %v", tb.Netns.Name, tb.Server, time.Since(tb.started).Round(time.Millisecond))
	return tb
}

// network makes the bridge, the veth pair that gives it carrier, and the
// nodes' taps.
func (tb *Testbed) network() error {
	ns := tb.Netns
	steps := [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"link", "add", "vtbv0", "type", "veth", "peer", "name", "vtbv1"},
		{"link", "set", "vtbv0", "master", Bridge},
		{"addr", "add", netip.PrefixFrom(ServerIP, Prefix.Bits()).String(), "dev", Bridge},
	}
	for _, n := range tb.Nodes {
		steps = append(steps,
			[]string{"tuntap", "add", n.Tap, "mode", "tap"},
			[]string{"link", "set", n.Tap, "master", Bridge},
			[]string{"link", "set", n.Tap, "up"})
	}
	for _, s := range steps {
		if err := ns.IP(s...); err != nil {
			return err
		}
	}
	// The RA responder can then bind to the bridge's link-local address at
	// once instead of after duplicate address detection (1-2 s).
	if err := ns.Sysctl("net.ipv6.conf."+Bridge+".accept_dad", "0"); err != nil {
		return err
	}
	for _, l := range []string{"vtbv0", "vtbv1", Bridge} {
		if err := ns.IP("link", "set", l, "up"); err != nil {
			return err
		}
	}
	return nil
}

// siteIf is the site host's interface on the control network.
const siteIf = "site0"

// siteHost makes the site host: a namespace of its own whose interface
// (siteIf, SiteIP) is a veth into br0, as another machine on the segment.
func (tb *Testbed) siteHost() error {
	site, err := NewNetns("vtbsite")
	if err != nil {
		return err
	}
	tb.Site = site
	steps := [][]string{
		{"link", "add", "vtbs0", "type", "veth", "peer", "name", siteIf, "netns", site.Name},
		{"link", "set", "vtbs0", "master", Bridge},
		{"link", "set", "vtbs0", "up"},
	}
	for _, st := range steps {
		if err := tb.Netns.IP(st...); err != nil {
			return err
		}
	}
	if err := site.IP("addr", "add", netip.PrefixFrom(SiteIP, Prefix.Bits()).String(), "dev", siteIf); err != nil {
		return err
	}
	return site.IP("link", "set", siteIf, "up")
}

// newAppliance writes netbootd's config: the AM on :5054 of every address
// in the namespace and, with boot, TFTP on :69 and DHCP on the bridge.
func (tb *Testbed) newAppliance(o Options, boot bool) {
	var inv strings.Builder
	if o.Image != "" || o.BuiltImage != nil {
		name := o.Image
		if o.BuiltImage != nil {
			name = o.BuiltImage.Name
		}
		fmt.Fprintf(&inv, "images:\n  - { name: %s, description: orbit-pxe RAM image (vtestbed) }\n", name)
	}
	fmt.Fprintf(&inv, "testbeds:\n  - domain: %s\n    nodes:\n", Domain)
	for i, n := range tb.Nodes {
		fmt.Fprintf(&inv, "      - { hrn: %s, hostname: %s, control_ip: %s, control_mac: %q, x: 1, y: %d, disk: /dev/sda, power: %q }\n",
			n.HRN, n.Hostname, n.IP, n.MAC, i+1, "qemu:"+tb.QMPSocket(n))
	}
	a := apptest.New(tb.t, apptest.Options{Netns: tb.Netns.Name, Inventory: inv.String()})
	// apptest binds the AM to 127.0.0.1 and has no TFTP on :69; the nodes
	// need both on the bridge. The config is rewritten whole (yaml.v3
	// refuses a key given twice, so Options.Extra cannot override).
	tftp, dhcp := `""`, "dhcp: { enabled: false }\n"
	if boot {
		tftp = `":69"`
		d := apptest.DHCP{Interface: Bridge, Server: ServerIP, Subnet: Prefix, IPXEScript: o.IPXEScript}
		if tb.Server == NetbootdProxy {
			d.Mode = "proxy"
		}
		dhcp = d.YAML()
	}
	// The testbed's OMF calls come from the server's own address, as an
	// EC's on the appliance host would: omf.allow names it.
	omf := fmt.Sprintf("omf: { allow: [127.0.0.0/8, %s/32] }\n", ServerIP)
	if strings.Contains(o.Extra, "omf:") {
		omf = ""
	}
	cfg := fmt.Sprintf("state_dir: %s\ntftp_root: %s\nhttp: { listen: \":%d\" }\ntftp: { listen: %s }\n%sinventory: { seed: %s }\n%s%s",
		filepath.Join(a.Dir, "state"), a.TFTPRoot, AMPort, tftp, dhcp, filepath.Join(a.Dir, "inventory.yaml"), omf, o.Extra)
	if err := os.WriteFile(a.Config, []byte(cfg), 0o644); err != nil {
		tb.t.Fatal(err)
	}
	a.URL = tb.AMURL
	a.Addr = strings.TrimPrefix(tb.AMURL, "http://")
	a.TFTPAddr = ""
	if boot {
		a.TFTPAddr = fmt.Sprintf("%s:69", ServerIP)
		tb.TFTPRoot = a.TFTPRoot
	}
	tb.App = a
}

// installBootFiles puts pxelinux and the image into the TFTP root (UEFI
// loaders: InstallUEFILoaders).
func (tb *Testbed) installBootFiles(o Options) {
	t := tb.t
	for _, f := range []string{PXELinux, LDLinux} {
		if err := copyFile(f, filepath.Join(tb.TFTPRoot, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	switch {
	case o.BuiltImage != nil:
		img, err := o.BuiltImage.CopyTo(tb.TFTPRoot)
		if err != nil {
			t.Fatal(err)
		}
		tb.Image = &img
	case o.Image != "":
		amURL := fmt.Sprintf("http://%s:%d", ServerIP, AMPort)
		if tb.Server == NetbootdProxy {
			amURL = "" // the RC finds the appliance by itself
		}
		built, err := SharedImage(t, o.Image, amURL, o.ImageOptions)
		if err != nil {
			t.Fatal(err)
		}
		img, err := built.CopyTo(tb.TFTPRoot)
		if err != nil {
			t.Fatal(err)
		}
		tb.Image = &img
	}
}

// linkDnsmasqConfigs does for dnsmasq what the AM does for netbootd: each
// node's pxelinux.cfg/<hex IP> and grub/grub.cfg-<hex IP> point at the
// image's configs, GRUB gets netbootd's grub/grub.cfg (which makes it look
// for the per-node file) and, with ipxe, ipxe/<hex IP> is the script
// netbootd would render for the node, its files on the site's HTTP server.
func (tb *Testbed) linkDnsmasqConfigs(ipxe bool) error {
	img := tb.Image
	if err := os.MkdirAll(filepath.Join(tb.TFTPRoot, imagename.GrubDir), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tb.TFTPRoot, imagename.GrubDir, "grub.cfg"), []byte(pxelink.GrubRootConfig), 0o644); err != nil {
		return err
	}
	var entry []byte
	if ipxe {
		var err error
		if entry, err = os.ReadFile(filepath.Join(tb.TFTPRoot, filepath.FromSlash(img.IPXE))); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(tb.TFTPRoot, "ipxe"), 0o755); err != nil {
			return err
		}
	}
	for _, n := range tb.Nodes {
		if err := os.Symlink("./"+img.Name, filepath.Join(tb.TFTPRoot, "pxelinux.cfg", n.Hex())); err != nil {
			return err
		}
		if err := os.Symlink(path.Base(img.Grub), filepath.Join(tb.TFTPRoot, imagename.GrubDir, "grub.cfg-"+n.Hex())); err != nil {
			return err
		}
		if ipxe {
			script := fmt.Sprintf("#!ipxe\nset base %s\nset appliance %s\n%s", SiteHTTPURL, ServerIP, entry)
			if err := os.WriteFile(filepath.Join(tb.TFTPRoot, "ipxe", n.Hex()), []byte(script), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// QMPSocket is where a node's machine serves QMP: the vtestbed's own
// client uses it, and netbootd's qemu power driver (the node's inventory
// power: entry).
func (tb *Testbed) QMPSocket(n Node) string { return filepath.Join(tb.QMPDir, n.Hostname+".qmp") }

// Node returns the node named hrn or host name.
func (tb *Testbed) Node(name string) Node {
	tb.t.Helper()
	n, ok := tb.node(name)
	if !ok {
		tb.t.Fatalf("vtestbed: no node %q", name)
	}
	return n
}

func (tb *Testbed) node(name string) (Node, bool) {
	for _, n := range tb.Nodes {
		if n.HRN == name || n.Hostname == name {
			return n, true
		}
	}
	return Node{}, false
}

// get does a GET on the AM and returns the status and body.
func (tb *Testbed) get(ctx context.Context, path string) (int, []byte, error) {
	if tb.AMURL == "" {
		return 0, nil, fmt.Errorf("GET %s: the testbed's server (%s) has no AM", path, tb.Server)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tb.AMURL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	// The API wants a token; the OMF calls come, as an EC's on the
	// appliance would, from an address in omf.allow.
	if tok := tb.apiToken(); tok != "" && strings.HasPrefix(path, "/api/") {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := tb.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, body, err
}

// apiToken is Token, else the admin token of the testbed's netbootd.
func (tb *Testbed) apiToken() string {
	if tb.Token == "" && tb.App != nil {
		return tb.App.Token
	}
	return tb.Token
}

// omfOK matches OMF's success reply.
var omfOK = regexp.MustCompile(`^<response status='OK'>`)

// SetBootImageNS is the OMF call an Experiment Controller makes
// (GET /pxe/setBootImageNS?domain=vtb&ns=HRN,HRN&imgName=IMAGE) for the
// nodes; it returns the XML reply and fails unless it says OK.
func (tb *Testbed) SetBootImageNS(ctx context.Context, image string, nodes ...Node) (string, error) {
	var hrns []string
	for _, n := range nodes {
		hrns = append(hrns, n.HRN)
	}
	q := url.Values{"domain": {Domain}, "ns": {strings.Join(hrns, ",")}}
	if image != "" {
		q.Set("imgName", image)
	}
	status, body, err := tb.get(ctx, "/pxe/setBootImageNS?"+q.Encode())
	if err != nil {
		return "", fmt.Errorf("setBootImageNS: %w", err)
	}
	if status != http.StatusOK || !omfOK.Match(body) {
		return string(body), fmt.Errorf("setBootImageNS: HTTP %d: %s", status, body)
	}
	return string(body), nil
}

// CMC is the OMF power call an Experiment Controller makes
// (GET /cmc/<action>?hrn=HRN&domain=vtb: on, offHard, offSoft, reboot,
// reset) for a node whose machine was booted with AMPower; netbootd's qemu
// driver carries it out over the machine's QMP socket.
func (tb *Testbed) CMC(ctx context.Context, action string, n Node) error {
	q := url.Values{"hrn": {n.HRN}, "domain": {Domain}}
	status, body, err := tb.get(ctx, "/cmc/"+url.PathEscape(action)+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("cmc %s %s: %w", action, n.Hostname, err)
	}
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "OK" {
		return fmt.Errorf("cmc %s %s: HTTP %d: %s", action, n.Hostname, status, body)
	}
	return nil
}

// Event is a step on a node's timeline (GET /api/v1/nodes/{hrn}/events).
type Event struct {
	At     time.Time `json:"at"`
	Source string    `json:"source"` // dhcp, tftp, am, rc, ...
	What   string    `json:"what"`
	Detail string    `json:"detail"`
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s %s", e.At.Local().Format("15:04:05.000"), e.Source, e.What, e.Detail)
}

// Events returns a node's timeline, oldest first.
func (tb *Testbed) Events(ctx context.Context, hrn string) ([]Event, error) {
	status, body, err := tb.get(ctx, "/api/v1/nodes/"+url.PathEscape(hrn)+"/events")
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", hrn, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("events of %s: HTTP %d: %s", hrn, status, body)
	}
	var evs []Event
	if err := json.Unmarshal(body, &evs); err != nil {
		return nil, fmt.Errorf("events of %s: %w", hrn, err)
	}
	return evs, nil
}

// RCStatus is what the AM knows of a node's Resource Controller
// (GET /api/v1/nodes/{hrn}/rc).
type RCStatus struct {
	HRN        string     `json:"hrn"`
	Enrolled   bool       `json:"enrolled"`
	Online     bool       `json:"online"`
	EnrolledAt *time.Time `json:"enrolled_at"`
	Image      string     `json:"image"`
	Hostname   string     `json:"hostname"`
	Firmware   string     `json:"firmware"`    // bios, uefi; "" unknown
	SecureBoot *bool      `json:"secure_boot"` // nil unknown
}

// RCStatus returns the state of a node's RC.
func (tb *Testbed) RCStatus(ctx context.Context, hrn string) (RCStatus, error) {
	status, body, err := tb.get(ctx, "/api/v1/nodes/"+url.PathEscape(hrn)+"/rc")
	if err != nil {
		return RCStatus{}, fmt.Errorf("rc of %s: %w", hrn, err)
	}
	if status != http.StatusOK {
		return RCStatus{}, fmt.Errorf("rc of %s: HTTP %d: %s", hrn, status, body)
	}
	var st RCStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return RCStatus{}, fmt.Errorf("rc of %s: %w", hrn, err)
	}
	return st, nil
}

// WaitEnrolled polls the node's RC status every 100 ms until it is
// enrolled, and returns it with the time the poll saw it. The AM answers
// 200 for a node whose RC has not enrolled yet, so any error (a missing
// route, an unknown node) fails at once rather than after ctx's deadline.
func (tb *Testbed) WaitEnrolled(ctx context.Context, hrn string) (RCStatus, time.Time, error) {
	for {
		st, err := tb.RCStatus(ctx, hrn)
		if err != nil {
			return st, time.Time{}, err
		}
		if st.Enrolled {
			return st, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return st, time.Time{}, fmt.Errorf("rc of %s not enrolled: %w", hrn, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ServerLog returns the servers' logs so far: dnsmasq's, each line with
// the time it was read, then netbootd's.
func (tb *Testbed) ServerLog() string {
	var b strings.Builder
	if tb.dnsmasq != nil {
		for _, l := range tb.dnsmasq.lines() {
			fmt.Fprintf(&b, "%s %s\n", l.At.Format("15:04:05.000"), l.Text)
		}
	}
	if tb.App != nil && tb.App.Log != nil {
		b.WriteString(tb.App.Log.String())
	}
	return b.String()
}

// DnsmasqLines returns dnsmasq's log lines, each with the time it was read.
func (tb *Testbed) DnsmasqLines() []Line {
	if tb.dnsmasq == nil {
		return nil
	}
	return tb.dnsmasq.lines()
}

// saveServerArtifacts keeps the server's log and the nodes' timelines when
// the test failed.
func (tb *Testbed) saveServerArtifacts() {
	if !keepArtifacts(tb.t) {
		return
	}
	dir, err := artifactsDir(tb.t, tb.Root)
	if err != nil {
		tb.t.Logf("artifacts: %v", err)
		return
	}
	writeArtifact(tb.t, filepath.Join(dir, string(tb.Server)+".log"), []byte(tb.ServerLog()))
	if tb.App != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range tb.Nodes {
			evs, err := tb.Events(ctx, n.HRN)
			var b strings.Builder
			for _, e := range evs {
				fmt.Fprintln(&b, e)
			}
			if err != nil {
				fmt.Fprintln(&b, "error:", err)
			}
			writeArtifact(tb.t, filepath.Join(dir, n.Hostname+".timeline.txt"), []byte(b.String()))
		}
	}
	tb.t.Logf("artifacts (server log, timelines): %s", dir)
}

func (tb *Testbed) stopAll() {
	tb.mu.Lock()
	vms := tb.vms
	tb.mu.Unlock()
	for _, vm := range vms {
		vm.Stop()
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}
