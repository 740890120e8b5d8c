package orbitinit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/u-root/u-root/pkg/libinit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/initramfs/layout"
)

// Rootfs is what the init mounts first, in order: u-root libinit's
// namespace cut down to what a RAM image that runs one RC needs (no
// cgroups, securityfs, efivarfs, debugfs, /dev/shm or Go toolchain dirs).
// The root itself is the initramfs (rootfs, writable).
var Rootfs = []libinit.Creator{
	libinit.Dir{Name: "/proc", Mode: 0o555},
	libinit.Mount{Source: "proc", Target: "/proc", FSType: "proc", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	libinit.Dir{Name: "/sys", Mode: 0o555},
	libinit.Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	libinit.Dir{Name: "/dev", Mode: 0o755},
	libinit.Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Opts: "mode=0755"},
	libinit.Dir{Name: "/dev/pts", Mode: 0o755},
	libinit.Mount{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Opts: "newinstance,ptmxmode=0666,gid=5,mode=0620"},
	// With a newinstance devpts, /dev/ptmx must point into it.
	libinit.Symlink{NewPath: "/dev/ptmx", Target: "pts/ptmx"},
	libinit.Dir{Name: "/tmp", Mode: 0o777},
	libinit.Mount{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Opts: "mode=1777"},
	libinit.Dir{Name: "/run", Mode: 0o755},
	libinit.Mount{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Opts: "mode=0755"},
}

// CmdlineEnv names the environment variable that, when set in the init's
// environment, is used instead of /proc/cmdline (for tests that run the init in namespaces on a host).
const CmdlineEnv = "ORBIT_INIT_CMDLINE"

// Steps returns the init's table: the Rootfs creators, then the node's
// steps. Each is small; see the methods for what they do.
func (n *Node) Steps() []Step {
	var steps []Step
	for _, c := range Rootfs {
		steps = append(steps, Step{Name: c.String(), Run: create(c)})
	}
	return append(steps,
		Step{"command line", n.readCmdline},
		Step{"image name", n.announceImage},
		// In the background, at the lowest priority: nothing waits for it.
		Step{"entropy wait started", n.startEntropy},
		Step{"kernel modules", n.loadModules},
		Step{"efivarfs", n.mountEFIVars}, // after its module
		Step{"links up", n.linksUp},
		Step{"control interface", n.chooseControl},
		// Before DHCP, which may retry for ever: the debug shell is
		// reachable on the IPv6 link-local address meanwhile.
		Step{"ssh debug shell", n.startSSHD},
		Step{"dhcp", n.dhcp},
		Step{"hostname", n.setHostname},
		Step{"rc environment", n.writeRCEnv},
	)
}

func create(c libinit.Creator) func(context.Context) error {
	return func(context.Context) error {
		old := unix.Umask(0) // modes as written, e.g. for ptmx
		defer unix.Umask(old)
		return c.Create()
	}
}

// readCmdline reads the kernel command line.
func (n *Node) readCmdline(context.Context) error {
	if s, ok := os.LookupEnv(CmdlineEnv); ok {
		n.Cmdline = ParseCmdline(s)
	} else {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return err
		}
		n.Cmdline = ParseCmdline(string(b))
	}
	n.Log.Info("kernel command line", "cmdline", n.Cmdline.Raw)
	return nil
}

// announceImage prints /.orbit_image on the console, as the old rcS did
// (cat /.orbit_image), and copies it to /.omf_imageid.
func (n *Node) announceImage(context.Context) error {
	b, err := os.ReadFile(layout.ImageName)
	if err != nil {
		return err
	}
	n.Image = strings.TrimSpace(string(b))
	n.Console(n.Image)
	return os.WriteFile(layout.ImageID, b, 0o644)
}

// loadModules loads the modules of /lib/modules/load.order in its order,
// one after the other: drivers then probe in that order, which names the
// NICs (eth0 the first found). A module already loaded (EEXIST) or without
// a device (ENODEV) is fine; the others' errors are joined. A NIC is set up
// as soon as its driver has made it (nicsUp): its link state then settles
// while the other modules (disks) load.
func (n *Node) loadModules(context.Context) error {
	b, err := os.ReadFile(layout.ModulesLoadOrder)
	if errors.Is(err, fs.ErrNotExist) {
		n.Log.Info("no modules to load", "file", layout.ModulesLoadOrder)
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range parseLoadOrder(string(b)) {
		errs = append(errs, n.loadModule(p))
	}
	return errors.Join(errs...)
}

// loadModule loads one module, logs it and sets up the NICs it made. A
// module whose init finds no device (ENODEV) is not an error.
func (n *Node) loadModule(p string) error {
	start := time.Now()
	err := loadModule(p)
	switch {
	case errors.Is(err, unix.EEXIST):
		n.Log.Info("module already loaded", "module", filepath.Base(p))
	case errors.Is(err, unix.ENODEV):
		// Its init found nothing to drive: efivarfs on a BIOS node.
		n.Log.Info("module not loaded: no such device", "module", filepath.Base(p))
	case err != nil:
		return fmt.Errorf("module %s: %w", p, err)
	default:
		n.Log.Info("module loaded", "module", filepath.Base(p), "took", time.Since(start).Round(time.Millisecond))
		if up := nicsUp(); len(up) > 0 {
			n.Log.Info("nics up", "nics", strings.Join(up, " "))
		}
	}
	return nil
}

// mountEFIVars mounts efivarfs where the RC reads the SecureBoot
// variable, on a UEFI node.
func (n *Node) mountEFIVars(context.Context) error {
	ok, err := mountEFIVars(EFIDir, func(target string) error {
		err := unix.Mount("efivarfs", target, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if errors.Is(err, unix.EBUSY) { // mounted already
			return nil
		}
		return err
	})
	if err == nil && !ok {
		n.Log.Info("no UEFI: efivarfs not mounted", "dir", EFIDir)
	}
	return err
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return kmodule.FileInit(f, "", 0) // finit_module(2); decompresses .gz/.xz
}

// linkWait is how long the init waits for a NIC to appear or get carrier:
// orbit.linkwait= on the command line, default 5s.
func (n *Node) linkWait() time.Duration {
	if v, ok := n.Cmdline.Get("orbit.linkwait"); ok {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
		n.Log.Warn("bad orbit.linkwait, using 5s", "value", v)
	}
	return 5 * time.Second
}

// linksUp sets every link up: lo, eth0 and eth1 as the old rcS did, and
// every other NIC. When there is no NIC yet it waits up to linkWait for one.
func (n *Node) linksUp(ctx context.Context) error {
	deadline := time.Now().Add(n.linkWait())
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Name < links[j].Attrs().Name })
		var errs []error
		var nics []string
		for _, l := range links {
			a := l.Attrs()
			if err := netlink.LinkSetUp(l); err != nil {
				errs = append(errs, fmt.Errorf("interface %q: set up: %w", a.Name, err))
				continue
			}
			if a.EncapType == "ether" && len(a.HardwareAddr) > 0 {
				nics = append(nics, a.Name+"="+a.HardwareAddr.String())
			}
		}
		if len(nics) > 0 || time.Now().After(deadline) {
			n.Log.Info("links up", "nics", strings.Join(nics, " "))
			if len(nics) == 0 {
				errs = append(errs, errors.New("no network interface besides lo"))
			}
			return errors.Join(errs...)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// nicsUp sets every Ethernet interface that is down up and returns their
// names; errors are left for linksUp to report.
func nicsUp() []string {
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	var up []string
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType != "ether" || len(a.HardwareAddr) == 0 || a.Flags&net.FlagUp != 0 {
			continue
		}
		if netlink.LinkSetUp(l) == nil {
			up = append(up, a.Name)
		}
	}
	return up
}

// LinksDown takes every Ethernet interface down, as an orderly shutdown
// does before reboot(2): the kernel then resets the NICs with their
// receive polling stopped. Left up, a virtio NIC busy at the reset was
// seen to lock a node's only CPU in virtio_net's poll loop (a soft lockup
// instead of the reboot, under TCG on a loaded host).
func LinksDown(log *slog.Logger) {
	links, err := netlink.LinkList()
	if err != nil {
		log.Warn("shutdown: list links", "err", err)
		return
	}
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType != "ether" || len(a.HardwareAddr) == 0 {
			continue
		}
		if err := netlink.LinkSetDown(l); err != nil {
			log.Warn("shutdown: set link down", "link", a.Name, "err", err)
		}
	}
}

// nics lists the Ethernet interfaces with their carrier state.
func nics() ([]NIC, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []NIC
	for _, l := range links {
		a := l.Attrs()
		if a.EncapType != "ether" || len(a.HardwareAddr) == 0 {
			continue // lo, tunnels
		}
		out = append(out, NIC{
			Name:    a.Name,
			MAC:     a.HardwareAddr,
			Carrier: a.RawFlags&unix.IFF_RUNNING != 0 || carrier(a.Name),
		})
	}
	return out, nil
}

// carrier reads the NIC's carrier from sysfs: the driver's own state, at
// once, where IFF_RUNNING (the operational state) follows it only when the
// kernel's link watch runs, at most once a second. A NIC that is down has
// none.
func carrier(name string) bool {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "carrier"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// waitCarrier sets the interface up and waits up to d for its carrier,
// without which no DHCP answer can come. Up and with carrier, the NIC sends
// at once: the kernel starts its queues when it goes up with carrier or,
// carrier coming later, with that link event, which it handles at once;
// only the operational state (IFF_RUNNING) comes later.
func waitCarrier(ctx context.Context, ifname string, d time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(d)
	for {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", ifname, err)
		}
		a := link.Attrs()
		if a.Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(link); err != nil {
				return nil, fmt.Errorf("interface %q: set up: %w", ifname, err)
			}
		} else if a.RawFlags&unix.IFF_RUNNING != 0 || carrier(ifname) {
			return link, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("interface %q: no carrier after %v", ifname, d)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// chooseControl picks the control interface (ChooseControl). When only the
// carrier rule can decide, it waits up to linkWait for a NIC with carrier.
func (n *Node) chooseControl(ctx context.Context) error {
	deadline := time.Now().Add(n.linkWait())
	for {
		list, err := nics()
		if err != nil {
			return err
		}
		c, err := ChooseControl(n.Cmdline, list)
		if err == nil {
			n.Control = c
			n.Log.Info("control interface", "if", c.NIC.Name, "mac", c.NIC.MAC.String(), "reason", c.Reason)
			return nil
		}
		if len(list) == 0 || time.Now().After(deadline) { // no NIC: links up has waited already
			return err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// startEntropy waits on getrandom(2) in the background until the kernel's
// random pool is ready, and logs when it is. On a CPU without RDRAND (QEMU's
// TCG, older nodes) the kernel fills the pool only while someone waits
// (jitter entropy, a bit a timer tick: a second or more), in the waiter's
// time; at the lowest priority that is the CPU time the boot leaves idle.
// Nothing in the boot waits for it (lease makes its own transaction IDs);
// what needs the pool later (sshd's host key, TLS) finds it ready sooner.
func (n *Node) startEntropy(context.Context) error {
	start := time.Now()
	go func() {
		// The thread ends with the goroutine (locked, never unlocked),
		// and its priority with it.
		runtime.LockOSThread()
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19); err != nil {
			n.Log.Warn("entropy: lower priority", "err", err)
		}
		if err := getrandomReady(); err != nil {
			n.Log.Error("entropy: getrandom", "err", err)
			return
		}
		n.Log.Info("random pool ready", "waited", time.Since(start).Round(time.Millisecond))
	}()
	return nil
}

// getrandomReady blocks once on getrandom(2) until the pool is ready.
func getrandomReady() error {
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// dhcp gets a DHCPv4 lease on the control interface (lease) and configures
// it (address, routes, /etc/resolv.conf), retrying with
// doubling back-off until it works (or DHCP.Attempts attempts).
func (n *Node) dhcp(ctx context.Context) error {
	ifname := n.Control.NIC.Name
	if ifname == "" {
		return errors.New("no control interface: no DHCP")
	}
	cfg := n.DHCP
	if cfg.Timeout == 0 {
		cfg.Timeout = DHCPDefaults.Timeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DHCPDefaults.Retries
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DHCPDefaults.MaxBackoff
	}
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		l, err := n.lease(ctx, ifname, cfg)
		if err == nil {
			n.Lease = l
			n.Log.Info("dhcp lease", "if", ifname, "ip", l.IP.String(), "gw", ipString(l.Gateway),
				"server", ipString(l.Server), "next_server", ipString(l.NextServer), "hostname", l.Hostname, "attempt", attempt)
			return nil
		}
		if cfg.Attempts > 0 && attempt >= cfg.Attempts {
			return fmt.Errorf("interface %q: no lease after %d attempts: %w", ifname, attempt, err)
		}
		n.Log.Warn("dhcp failed, retrying", "if", ifname, "attempt", attempt, "retry_in", backoff, "err", err)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// lease gets a lease on ifname (DISCOVER, OFFER, REQUEST, ACK with
// nclient4's timeout and retries) and configures the interface with it
// (u-root's dhclient: address, routes, /etc/resolv.conf).
//
// The two requests are made here rather than with dhcpv4.NewDiscovery and
// NewRequestFromOffer, whose transaction ID comes from the kernel's random
// pool, ready only about a second after the init starts on a CPU without
// RDRAND (QEMU's TCG, older nodes): the DHCP exchange, and so the RC,
// would wait for it. A transaction ID only needs to be unlikely to be
// another client's (RFC 2131 4.4.1); the runtime's generator, seeded by the
// kernel at exec (AT_RANDOM), is good for that.
func (n *Node) lease(ctx context.Context, ifname string, cfg DHCPConfig) (*Lease, error) {
	link, err := waitCarrier(ctx, ifname, 30*time.Second)
	if err != nil {
		return nil, err
	}
	c, err := nclient4.New(ifname, nclient4.WithTimeout(cfg.Timeout), nclient4.WithRetry(cfg.Retries))
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", ifname, err)
	}
	defer c.Close()
	mac := link.Attrs().HardwareAddr
	offer, err := c.SendAndRead(ctx, c.RemoteAddr(), newDiscover(mac), nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return nil, fmt.Errorf("interface %q: no offer: %w", ifname, err)
	}
	m, err := c.SendAndRead(ctx, c.RemoteAddr(), newRequest(offer, mac), nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return nil, fmt.Errorf("interface %q: no answer to the request: %w", ifname, err)
	}
	if m.MessageType() == dhcpv4.MessageTypeNak {
		return nil, fmt.Errorf("interface %q: request refused (NAK): %s", ifname, m.Message())
	}
	if err := dhclient.NewPacket4(link, m).Configure(); err != nil {
		return nil, fmt.Errorf("interface %q: configure %s: %w", ifname, m.YourIPAddr, err)
	}
	l := &Lease{
		IP:         net4(m),
		Server:     m.ServerIdentifier(),
		NextServer: m.ServerIPAddr,
		Hostname:   m.HostName(),
		Domain:     m.DomainName(),
		DNS:        m.DNS(),
	}
	if gw := m.Router(); len(gw) > 0 {
		l.Gateway = gw[0]
	}
	return l, nil
}

// setHostname sets the host name (from DHCP, else from the MAC) and writes
// /etc/hostname and /etc/hosts.
func (n *Node) setHostname(context.Context) error {
	n.Hostname = hostnameFor(n.Lease, n.Control.NIC.MAC)
	if err := unix.Sethostname([]byte(n.Hostname)); err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile("/etc/hostname", []byte(n.Hostname+"\n"), 0o644),
		os.WriteFile("/etc/hosts", []byte(hostsFile(n.Hostname, n.Lease)), 0o644),
	)
}

// writeRCEnv writes the RC's environment to /run/orbit/env and logs it.
func (n *Node) writeRCEnv(context.Context) error {
	env := n.RCEnv()
	if err := os.MkdirAll(filepath.Dir(layout.RCEnv), 0o755); err != nil {
		return err
	}
	return os.WriteFile(layout.RCEnv, []byte(strings.Join(env, "\n")+"\n"), 0o644)
}

// net4 is the leased address with the subnet mask (option 1; /32 without).
func net4(m *dhcpv4.DHCPv4) net.IPNet {
	mask := m.SubnetMask()
	if mask == nil {
		mask = net.CIDRMask(32, 32)
	}
	return net.IPNet{IP: m.YourIPAddr, Mask: mask}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
