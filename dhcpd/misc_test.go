package dhcpd

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

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
