package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/iprange"
	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/store"
)

var labNodes = []inventory.Node{
	{HRN: "node1-2.sb8.orbit-lab.org", Domain: "sb8", Hostname: "node1-2", ControlIP: "10.18.1.2", ControlMAC: "00:03:1d:0c:01:02"},
	{HRN: "node1-3.sb8.orbit-lab.org", Domain: "sb8", Hostname: "node1-3", ControlIP: "10.18.1.3", ControlMAC: "00:03:1d:0c:01:03"},
	{HRN: "relnode.grid.orbit-lab.org", Domain: "grid", Hostname: "relnode", ControlIP: "10.19.1.5", ControlMAC: "00:03:1d:0c:02:05"},
	// Holds the first pool address: pool clients must skip it.
	{HRN: "poolres.sb8.orbit-lab.org", Domain: "sb8", Hostname: "poolres", ControlIP: "10.18.200.10", ControlMAC: "00:03:1d:0c:09:09"},
}

func labConfig(iface string) Config {
	return Config{
		Interface: iface,
		ServerIP:  netip.MustParseAddr("10.18.0.1"),
		Subnet:    Subnet{Prefix: netip.MustParsePrefix("10.18.0.0/16"), Router: netip.MustParseAddr("10.18.0.1")},
		DNS:       []netip.Addr{netip.MustParseAddr("10.18.0.1")},
		Domain:    "orbit-lab.org",
		LeaseTime: time.Hour,
		Bootfile:  "pxelinux.0", BootfileEFI: "syslinux.efi",
		IPXEFast: true,
		Workers:  4,
	}
}

// TestInteropDirect: busybox udhcpc against netbootd on a bridge that
// has no carrier when the server starts (no IPv6 link-local address yet:
// the RA responder must wait, not fail). A known MAC gets its reservation
// and boot info; a MAC on another interface of the server's namespace gets
// nothing; a router solicitation is answered at once with an empty RA; an
// unknown MAC gets nothing, then a pool address once the pool is on, the
// same one after a restart, never a reservation; boot events and the
// discovered MAC are in the database.
func TestInteropDirect(t *testing.T) {
	l := newLab(t)
	srv, cli, other := l.netns("srv"), l.netns("cli"), l.netns("other")
	// The bridge's one port is a veth whose far end is down, as a tap is
	// before its VM starts: no carrier, so no IPv6 link-local address.
	l.ip("-n", srv, "link", "add", "br0", "type", "bridge")
	l.veth(srv, "srvp", cli, "cli0")
	l.ip("-n", cli, "link", "set", "cli0", "down")
	l.ip("-n", srv, "link", "set", "srvp", "master", "br0")
	l.ip("-n", srv, "link", "set", "br0", "up")
	l.addr(srv, "br0", "10.18.0.1/16")
	l.veth(srv, "other0", other, "oth0") // an interface the server must not serve
	l.addr(srv, "other0", "10.77.0.1/16")
	l.ip("-n", other, "link", "set", "oth0", "address", "00:03:1d:0c:01:03")
	// Without it the client's link-local address is only slower to come.
	if out, err := exec.Command("ip", "netns", "exec", cli, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0").CombinedOutput(); err != nil {
		t.Logf("sysctl accept_dad=0 in %s: %v: %s", cli, err, out)
	}

	state := t.TempDir()
	p := l.server(srv, labConfig("br0"), state, labNodes...)
	p.waitFor(t, "waiting for an IPv6 link-local address", 5*time.Second)

	// Now the far end comes up: the bridge gets carrier.
	l.ip("-n", cli, "link", "set", "cli0", "address", "00:03:1d:0c:01:02")
	l.ip("-n", cli, "link", "set", "cli0", "up")

	got := l.udhcpc(cli, "cli0")
	want := labLease("10.18.1.2", "10.18.0.1", "node1-2", "sb8.orbit-lab.org")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("known MAC: udhcpc got (-want +got):\n%s", diff)
	}

	if got := l.udhcpcNone(other, "oth0"); got != nil {
		t.Errorf("answered on an interface other than dhcp.interface: %v", got)
	}
	if strings.Contains(p.out.String(), "00:03:1d:0c:01:03") {
		t.Errorf("the server saw a request from another interface:\n%s", p.out)
	}

	start := time.Now()
	adv, err := routerSolicit(cli, "cli0", 10*time.Second)
	if err != nil {
		t.Fatalf("router solicitation: %v\n%s", err, p.out)
	}
	t.Logf("RA %v after the client's link-local address was usable", time.Since(start).Round(time.Millisecond))
	if adv.ManagedConfiguration || adv.OtherConfiguration || adv.RouterLifetime != 0 || len(adv.Options) != 0 {
		t.Errorf("RA = %+v, want M=0 O=0 lifetime 0 and no options", adv)
	}

	l.ip("-n", cli, "link", "set", "cli0", "address", "52:54:00:99:00:32")
	if got := l.udhcpcNone(cli, "cli0"); got != nil {
		t.Errorf("unknown MAC without a pool got %v", got)
	}
	p.waitFor(t, "52:54:00:99:00:32", 30*time.Second) // seen and ignored, not missed
	p.stop(t)

	cfg := labConfig("br0")
	cfg.Subnet.Pool = iprange.Range{First: netip.MustParseAddr("10.18.200.10"), Last: netip.MustParseAddr("10.18.200.12")}
	p = l.server(srv, cfg, state)
	got = l.udhcpc(cli, "cli0")
	if got["ip"] != "10.18.200.11" || got["boot_file"] != "pxelinux.0" || got["hostname"] != "" {
		t.Errorf("unknown MAC with the pool got %v, want 10.18.200.11 (10.18.200.10 is a reservation)", got)
	}
	p.stop(t)
	p = l.server(srv, cfg, state)
	if got := l.udhcpc(cli, "cli0"); got["ip"] != "10.18.200.11" {
		t.Errorf("after a restart the pool client got %v, want its lease 10.18.200.11", got)
	}
	l.ip("-n", cli, "link", "set", "cli0", "address", "52:54:00:99:00:33")
	if got := l.udhcpc(cli, "cli0"); got["ip"] != "10.18.200.12" {
		t.Errorf("second pool client got %v, want 10.18.200.12", got)
	}
	p.stop(t)

	st, err := store.Open(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events, err := st.Events(context.Background(), "node1-2.sb8.orbit-lab.org")
	if err != nil {
		t.Fatal(err)
	}
	var whats []string
	for _, e := range events {
		whats = append(whats, e.What+" "+strings.Fields(e.Detail)[0])
	}
	if diff := cmp.Diff([]string{"DHCPOFFER ip=10.18.1.2", "DHCPACK state=selecting"}, whats); diff != "" {
		t.Errorf("node1-2 timeline (-want +got):\n%s", diff)
	}
	disc, err := st.Discovered(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var macs []string
	for _, d := range disc {
		macs = append(macs, d.MAC+" "+d.LastIP)
	}
	if diff := cmp.Diff([]string{"52:54:00:99:00:33 10.18.200.12", "52:54:00:99:00:32 10.18.200.11"}, macs); diff != "" {
		t.Errorf("discovered (-want +got):\n%s", diff)
	}
}

// TestInteropRelay: the client is behind ISC dhcrelay (adding option 82);
// the server answers the relay from the relay's subnet.
func TestInteropRelay(t *testing.T) {
	dhcrelay := needBinary(t, "dhcrelay", "isc-dhcp-relay")
	l := newLab(t)
	srv, relay, cli := l.netns("srv"), l.netns("relay"), l.netns("cli")
	l.veth(srv, "srv0", relay, "rsrv")
	l.addr(srv, "srv0", "10.18.0.1/16")
	l.addr(relay, "rsrv", "10.18.0.2/16")
	l.veth(relay, "rcli", cli, "cli0")
	l.addr(relay, "rcli", "10.19.0.1/16")
	l.ip("-n", srv, "route", "add", "10.19.0.0/16", "via", "10.18.0.2")

	cfg := labConfig("srv0")
	cfg.IPXEFast = false
	cfg.Subnets = []Subnet{{Prefix: netip.MustParsePrefix("10.19.0.0/16"), Router: netip.MustParseAddr("10.19.0.1"),
		Pool: iprange.Range{First: netip.MustParseAddr("10.19.9.1"), Last: netip.MustParseAddr("10.19.9.3")}}}
	state := t.TempDir()
	p := l.server(srv, cfg, state, labNodes...)
	r := l.start(relay, nil, dhcrelay, "-d", "-4", "-a", "-pf", filepath.Join(t.TempDir(), "dhcrelay.pid"),
		"-iu", "rsrv", "-id", "rcli", "10.18.0.1")
	r.waitFor(t, "Sending on", 5*time.Second)

	l.ip("-n", cli, "link", "set", "cli0", "address", "00:03:1d:0c:02:05")
	got := l.udhcpc(cli, "cli0")
	want := labLease("10.19.1.5", "10.19.0.1", "relnode", "grid.orbit-lab.org")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relayed known MAC: udhcpc got (-want +got):\n%s", diff)
	}
	l.ip("-n", cli, "link", "set", "cli0", "address", "52:54:00:99:00:40")
	if got := l.udhcpc(cli, "cli0"); got["ip"] != "10.19.9.1" || got["router"] != "10.19.0.1" {
		t.Errorf("relayed unknown MAC got %v, want 10.19.9.1 from the relay's pool", got)
	}
	p.stop(t)
	if !strings.Contains(p.out.String(), "relay=10.19.0.1") {
		t.Errorf("server log does not show the relay:\n%s", p.out)
	}
}

// TestInteropProxy: dnsmasq hands out addresses on a LAN and the server,
// in proxy mode beside it, only boot info. An ordinary client (udhcpc)
// gets its address from dnsmasq and no proxy answer; a PXE client sees
// both offers, takes dnsmasq's address, and gets its boot file from the
// proxy's port 4011.
func TestInteropProxy(t *testing.T) {
	dnsmasq := needBinary(t, "dnsmasq", "dnsmasq-base")
	l := newLab(t)
	lan, prx, dns, cli := l.netns("lan"), l.netns("prx"), l.netns("dns"), l.netns("cli")
	l.ip("-n", lan, "link", "add", "br0", "type", "bridge")
	l.ip("-n", lan, "link", "set", "br0", "up")
	for _, p := range []struct{ ns, in, out string }{{prx, "prx0", "lprx"}, {dns, "dns0", "ldns"}, {cli, "cli0", "lcli"}} {
		l.veth(p.ns, p.in, lan, p.out)
		l.ip("-n", lan, "link", "set", p.out, "master", "br0")
	}
	l.addr(prx, "prx0", "10.18.0.1/16")
	l.addr(dns, "dns0", "10.18.0.254/16")
	dir := t.TempDir()
	d := l.start(dns, nil, dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root", "--no-ping",
		"--interface=dns0", "--bind-interfaces", "--dhcp-range=10.18.100.10,10.18.100.50,255.255.0.0,10m",
		"--dhcp-option=3,10.18.0.254", "--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"))
	d.waitFor(t, "DHCP, IP range", 5*time.Second)

	cfg := labConfig("prx0")
	cfg.Mode = ModeProxy
	p := l.server(prx, cfg, "", labNodes...)
	mac := "00:03:1d:0c:01:02"
	l.ip("-n", cli, "link", "set", "cli0", "address", mac)

	got := l.udhcpc(cli, "cli0")
	if got["serverid"] != "10.18.0.254" || !strings.HasPrefix(got["ip"], "10.18.100.") || got["boot_file"] != "" {
		t.Errorf("ordinary client beside the proxy got %v, want a dnsmasq address and no boot file", got)
	}

	// The PXE client, as iPXE (so the proxy sends its script, as the
	// address server would): DISCOVER, collect offers.
	const ipxeScript = "http://10.18.0.1:5054/ipxe/0A120102"
	var offers []*dhcpv4.DHCPv4
	var ack, boot *dhcpv4.DHCPv4
	err := netns.Do(cli, func() error {
		c, err := clientConn("cli0")
		if err != nil {
			return err
		}
		defer c.Close()
		// The broadcast flag, as many PXE ROMs set it: this socket cannot
		// receive dnsmasq's unicast to an address it does not have yet.
		disc := pxeRequest(dhcpv4.MessageTypeDiscover, mac, withBroadcast())
		if offers, err = exchange4(c, disc, "255.255.255.255:67", replyWait, 2); err != nil {
			return err
		}
		var fromDnsmasq *dhcpv4.DHCPv4
		for _, o := range offers {
			if addr4(o.ServerIdentifier()).String() == "10.18.0.254" {
				fromDnsmasq = o
			}
		}
		if fromDnsmasq == nil {
			return fmt.Errorf("no offer from dnsmasq among %d", len(offers))
		}
		req := pxeRequest(dhcpv4.MessageTypeRequest, mac, withServerID("10.18.0.254"), withRequested(fromDnsmasq.YourIPAddr.String()), withBroadcast())
		acks, err := exchange4(c, req, "255.255.255.255:67", replyWait, 1)
		if err != nil {
			return err
		}
		ack = acks[0]
		// Configure the address, then ask the proxy's boot port.
		if out, err := exec.Command("ip", "addr", "add", ack.YourIPAddr.String()+"/16", "dev", "cli0").CombinedOutput(); err != nil {
			return fmt.Errorf("ip addr add: %w: %s", err, out)
		}
		bootReq := pxeRequest(dhcpv4.MessageTypeRequest, mac, withCiaddr(ack.YourIPAddr.String()))
		boots, err := exchange4(c, bootReq, "10.18.0.1:4011", replyWait, 1)
		if err != nil {
			return err
		}
		boot = boots[0]
		return nil
	})
	if err != nil {
		t.Fatalf("PXE client: %v\nproxy:\n%s\ndnsmasq:\n%s", err, p.out, d.out)
	}
	if len(offers) != 2 {
		t.Fatalf("PXE client saw %d offers, want 2 (dnsmasq and the proxy)", len(offers))
	}
	for _, o := range offers {
		switch addr4(o.ServerIdentifier()).String() {
		case "10.18.0.254":
			if !strings.HasPrefix(o.YourIPAddr.String(), "10.18.100.") {
				t.Errorf("dnsmasq offer: %s", o.Summary())
			}
		case "10.18.0.1":
			if !o.YourIPAddr.IsUnspecified() || o.BootFileName != ipxeScript || o.ServerIPAddr.String() != "10.18.0.1" ||
				o.ClassIdentifier() != "PXEClient" {
				t.Errorf("proxy offer: %s", o.Summary())
			}
		default:
			t.Errorf("offer from %s", o.ServerIdentifier())
		}
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || addr4(ack.ServerIdentifier()).String() != "10.18.0.254" {
		t.Errorf("dnsmasq ACK: %s", ack.Summary())
	}
	if boot.MessageType() != dhcpv4.MessageTypeAck || !boot.YourIPAddr.IsUnspecified() || boot.BootFileName != ipxeScript ||
		boot.ServerIPAddr.String() != "10.18.0.1" {
		t.Errorf("proxy boot-port ACK: %s", boot.Summary())
	}
}

// labLease is what udhcpc reports of a lease from the lab's server at
// 10.18.0.1 (a /16, pxelinux.0, an hour) for a node with these values.
func labLease(ip, router, hostname, domain string) map[string]string {
	return map[string]string{"ip": ip, "subnet": "255.255.0.0", "router": router, "dns": "10.18.0.1",
		"serverid": "10.18.0.1", "siaddr": "10.18.0.1", "boot_file": "pxelinux.0", "bootfile": "pxelinux.0", "tftp": "10.18.0.1",
		"hostname": hostname, "domain": domain, "lease": "3600"}
}

// clientConn is a DHCP client socket on ifname: 0.0.0.0:68, bound to the
// interface, broadcast allowed. Call it inside the client's namespace.
func clientConn(ifname string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), ifname) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// exchange4 sends req to dst and collects the replies to its xid for wait,
// returning early once it has want of them.
// replyWait bounds the wait for a server's replies: exchange4 returns as
// soon as all the replies it wants came, so this only means "no answer".
const replyWait = 30 * time.Second

func exchange4(c *net.UDPConn, req *dhcpv4.DHCPv4, dst string, wait time.Duration, want int) ([]*dhcpv4.DHCPv4, error) {
	if _, err := c.WriteToUDPAddrPort(req.ToBytes(), netip.MustParseAddrPort(dst)); err != nil {
		return nil, err
	}
	var out []*dhcpv4.DHCPv4
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for len(out) < want {
		if err := c.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil { // the deadline
			break
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || r.TransactionID != req.TransactionID || r.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no reply to %s sent to %s within %v", req.MessageType(), dst, wait)
	}
	return out, nil
}

// routerSolicit sends router solicitations from ifname in ns until an RA
// comes back or timeout passes.
func routerSolicit(ns, ifname string, timeout time.Duration) (*ndp.RouterAdvertisement, error) {
	var adv *ndp.RouterAdvertisement
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(timeout)
		var c *ndp.Conn
		for {
			c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no usable link-local address on %s: %w", ifname, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		defer c.Close()
		for time.Now().Before(deadline) {
			if err := c.WriteTo(&ndp.RouterSolicitation{}, nil, netip.MustParseAddr("ff02::2")); err != nil {
				return err
			}
			if err := c.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
				return err
			}
			for {
				m, _, _, err := c.ReadFrom()
				if err != nil {
					break
				}
				if a, ok := m.(*ndp.RouterAdvertisement); ok {
					adv = a
					return nil
				}
			}
		}
		return errors.New("no router advertisement")
	})
	return adv, err
}
