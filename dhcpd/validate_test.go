package dhcpd

import (
	"context"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestNonUnicastMACsDropped: a request whose client address is a
// multicast or all-zero MAC is malformed (no Ethernet card has one) and
// gets nothing, even on a segment with a pool, where any unicast MAC is
// served: a flood of them would otherwise take the pool.
func TestNonUnicastMACsDropped(t *testing.T) {
	tests := []struct {
		mac       string
		malformed bool
	}{
		{"52:54:00:00:00:0a", false}, // unicast: offered a pool address
		{"01:00:5e:00:00:01", true},  // IPv4 multicast
		{"33:33:00:00:00:01", true},  // IPv6 multicast
		{"ff:ff:ff:ff:ff:ff", true},  // broadcast
		{"00:00:00:00:00:00", true},
	}
	for _, tt := range tests {
		t.Run(tt.mac, func(t *testing.T) {
			s, err := New(testConfig(), backend(newFakeStore(testNodes...), &fakeEvents{}), nil)
			if err != nil {
				t.Fatal(err)
			}
			req := pxeRequest(dhcpv4.MessageTypeDiscover, "52:54:00:00:00:0a", withGiaddr("10.19.0.2"))
			hw, err := net.ParseMAC(tt.mac)
			if err != nil {
				t.Fatal(err)
			}
			req.ClientHWAddr = hw
			out, dst := s.handle(context.Background(), req.ToBytes(), clientSrc, 67)
			got := summarize(t, out, dst)
			switch {
			case tt.malformed && got != nil:
				t.Errorf("reply %+v, want none", got)
			case !tt.malformed && (got == nil || got.Type != "OFFER"):
				t.Errorf("reply %+v, want an OFFER from the pool", got)
			}
			want := uint64(0)
			if tt.malformed {
				want = 1
			}
			if m := s.Stats().Malformed; m != want {
				t.Errorf("Malformed = %d, want %d", m, want)
			}
		})
	}
}
