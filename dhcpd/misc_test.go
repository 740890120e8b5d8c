package dhcpd

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/config"
	"github.com/orbit-lab/netboot/internal/inventory"
)

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func importFile(nodes ...inventory.Node) inventory.File {
	byDomain := map[string][]inventory.Node{}
	var order []string
	for _, n := range nodes {
		if _, ok := byDomain[n.Domain]; !ok {
			order = append(order, n.Domain)
		}
		byDomain[n.Domain] = append(byDomain[n.Domain], n)
	}
	var f inventory.File
	for _, d := range order {
		f.Testbeds = append(f.Testbeds, inventory.Testbed{Domain: d, Nodes: byDomain[d]})
	}
	return f
}

func TestReplyDestination(t *testing.T) {
	p := ports{server: 67, client: 68}
	req := func(opts ...reqOpt) *dhcpv4.DHCPv4 { return pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, opts...) }
	tests := []struct {
		name  string
		req   *dhcpv4.DHCPv4
		mt    dhcpv4.MessageType
		src   string
		local int
		want  string
	}{
		{"relayed goes to giaddr:67", req(withGiaddr("10.19.0.2")), dhcpv4.MessageTypeOffer, "10.19.0.2:67", 67, "10.19.0.2:67"},
		{"relayed NAK goes to giaddr too", req(withGiaddr("10.19.0.2"), withCiaddr("10.19.1.1")), dhcpv4.MessageTypeNak, "10.19.0.2:67", 67, "10.19.0.2:67"},
		{"NAK is broadcast even with ciaddr", req(withCiaddr("10.18.1.2")), dhcpv4.MessageTypeNak, "10.18.1.2:68", 67, "255.255.255.255:68"},
		{"ciaddr: unicast to it", req(withCiaddr("10.18.1.2")), dhcpv4.MessageTypeAck, "10.18.1.2:68", 67, "10.18.1.2:68"},
		{"broadcast flag: broadcast", req(withBroadcast()), dhcpv4.MessageTypeOffer, "0.0.0.0:68", 67, "255.255.255.255:68"},
		{"no ciaddr, flag clear: broadcast (no ARP entry for yiaddr)", req(), dhcpv4.MessageTypeOffer, "0.0.0.0:68", 67, "255.255.255.255:68"},
		{"boot port 4011: back to the source", req(withCiaddr("10.18.5.5")), dhcpv4.MessageTypeAck, "10.18.5.5:4011", 4011, "10.18.5.5:4011"},
		{"boot port from 0.0.0.0: broadcast", req(), dhcpv4.MessageTypeAck, "0.0.0.0:68", 4011, "255.255.255.255:68"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := replyDestination(tt.req, tt.mt, netip.MustParseAddrPort(tt.src), tt.local, p)
			if got.String() != tt.want {
				t.Errorf("replyDestination = %s, want %s", got, tt.want)
			}
		})
	}
	// Test ports move the client port with the server port.
	if got := replyDestination(req(), dhcpv4.MessageTypeOffer, clientSrc, 1067, ports{1067, 1068}); got.String() != "255.255.255.255:1068" {
		t.Errorf("with test ports: %s", got)
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{"10.0.0.1-10.0.0.9", "10.0.0.1-10.0.0.9", false},
		{" 10.0.0.1 - 10.0.0.1 ", "10.0.0.1-10.0.0.1", false},
		{"10.0.0.9-10.0.0.1", "", true},
		{"10.0.0.1", "", true},
		{"fd00::1-fd00::2", "", true},
		{"a-b", "", true},
	}
	for _, tt := range tests {
		r, err := ParseRange(tt.in)
		if (err != nil) != tt.wantErr || r.String() != tt.want {
			t.Errorf("ParseRange(%q) = %q, %v", tt.in, r, err)
		}
	}
	r, _ := ParseRange("10.0.0.5-10.0.0.7")
	for a, want := range map[string]bool{"10.0.0.4": false, "10.0.0.5": true, "10.0.0.7": true, "10.0.0.8": false} {
		if r.Contains(netip.MustParseAddr(a)) != want {
			t.Errorf("Contains(%s) != %v", a, want)
		}
	}
}

func TestFromConfig(t *testing.T) {
	d := config.Default().DHCP
	d.Pool = "10.18.200.1-10.18.200.9"
	d.Subnets = []config.DHCPSubnet{{Subnet: "10.19.0.0/16", Router: "10.19.0.1", Pool: "10.19.9.1-10.19.9.3"}}
	got, err := FromConfig(d)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Interface: "eth1", ServerIP: netip.MustParseAddr("10.18.0.1"),
		Subnet: Subnet{Prefix: netip.MustParsePrefix("10.18.0.0/16"), Router: netip.MustParseAddr("10.18.0.1"),
			Pool: Range{netip.MustParseAddr("10.18.200.1"), netip.MustParseAddr("10.18.200.9")}},
		Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.19.0.0/16"), Router: netip.MustParseAddr("10.19.0.1"),
			Pool: Range{netip.MustParseAddr("10.19.9.1"), netip.MustParseAddr("10.19.9.3")}}},
		DNS: []netip.Addr{netip.MustParseAddr("10.18.0.1")}, Domain: "orbit-lab.org", LeaseTime: time.Hour,
		Bootfile: "pxelinux.0", BootfileEFI: "syslinux.efi", IPXEFast: true, Mode: ModeServer, Workers: 8,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("FromConfig (-want +got):\n%s", diff)
	}
	d.Subnets = append(d.Subnets, config.DHCPSubnet{Subnet: "10.18.1.0/24"})
	if _, err := FromConfig(d); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping subnets: %v", err)
	}
}

func TestDomainFor(t *testing.T) {
	tests := []struct {
		n    *inventory.Node
		want string
	}{
		{&inventory.Node{HRN: "node1-2.sb8.orbit-lab.org", Hostname: "node1-2"}, "sb8.orbit-lab.org"},
		{&inventory.Node{HRN: "node1-2.sb8.orbit-lab.org"}, "sb8.orbit-lab.org"},
		{&inventory.Node{HRN: "n7", Hostname: "n7"}, "fallback.org"},
		{&inventory.Node{HRN: "x.sb8", Hostname: "other"}, "fallback.org"},
		{nil, "fallback.org"},
	}
	for _, tt := range tests {
		if got := domainFor(tt.n, "fallback.org"); got != tt.want {
			t.Errorf("domainFor(%+v) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
