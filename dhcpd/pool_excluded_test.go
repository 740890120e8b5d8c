package dhcpd

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/iprange"
	"github.com/orbit-lab/netboot/internal/store"
)

// TestPoolKeepsItsOwnAddresses: a pool that spans a whole segment never
// gives a client the segment's network or broadcast address, its router,
// or the server's own address, whether the client is offered one or asks
// for it in a REQUEST.
func TestPoolKeepsItsOwnAddresses(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	// The direct segment's pool holds the server (and router) 10.18.0.1;
	// the relayed one's the whole /24.
	cfg.Subnet.Pool = iprange.Range{First: netip.MustParseAddr("10.18.0.1"), Last: netip.MustParseAddr("10.18.0.9")}
	cfg.Subnets[0].Prefix = netip.MustParsePrefix("10.19.0.0/24")
	cfg.Subnets[0].Pool = iprange.Range{First: netip.MustParseAddr("10.19.0.0"), Last: netip.MustParseAddr("10.19.0.255")}
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(cfg, backend(st, st), nil)
	if err != nil {
		t.Fatal(err)
	}
	reply := func(t *testing.T, pkt *dhcpv4.DHCPv4) (string, string) {
		t.Helper()
		return replyTo(ctx, t, s, pkt.ToBytes())
	}

	// Offers: the first usable address of each pool.
	if typ, ip := reply(t, pxeRequest(dhcpv4.MessageTypeDiscover, "52:54:00:00:01:01", withGiaddr("10.19.0.2"))); typ != "OFFER" || ip != "10.19.0.2" {
		t.Errorf("relayed DISCOVER: %s %s, want an OFFER of 10.19.0.2 (past the network address and the router)", typ, ip)
	}
	if typ, ip := reply(t, pxeRequest(dhcpv4.MessageTypeDiscover, "52:54:00:00:01:02")); typ != "OFFER" || ip != "10.18.0.2" {
		t.Errorf("direct DISCOVER: %s %s, want an OFFER of 10.18.0.2 (past the server)", typ, ip)
	}

	tests := []struct {
		name, asked, giaddr string
		want                string // the reply's type
	}{
		{"network address", "10.19.0.0", "10.19.0.2", "NAK"},
		{"router", "10.19.0.1", "10.19.0.2", "NAK"},
		{"broadcast address", "10.19.0.255", "10.19.0.2", "NAK"},
		{"server", "10.18.0.1", "", "NAK"},
		{"an ordinary pool address", "10.19.0.77", "10.19.0.2", "ACK"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []reqOpt{withServerID("10.18.0.1"), withRequested(tt.asked)}
			if tt.giaddr != "" {
				opts = append(opts, withGiaddr(tt.giaddr))
			}
			typ, ip := reply(t, pxeRequest(dhcpv4.MessageTypeRequest, fmt.Sprintf("52:54:00:00:02:%02x", i), opts...))
			if typ != tt.want {
				t.Errorf("REQUEST for %s: %s %s, want %s", tt.asked, typ, ip, tt.want)
			}
		})
	}
}
