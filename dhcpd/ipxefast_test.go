package dhcpd

import (
	"context"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestIPXEFast: option 175.176 = 1 (iPXE: skip the ProxyDHCP wait) goes to
// iPXE clients only, and only with ipxe_fast: true. With ipxe_fast: false
// (a site that runs a ProxyDHCP server of its own) iPXE must wait for it.
func TestIPXEFast(t *testing.T) {
	tests := []struct {
		name     string
		fast     bool
		req      *dhcpv4.DHCPv4
		want175  string // option 175 of the OFFER, hex; "" means none
		wantIPXE bool   // the event says the client is iPXE
	}{
		{"iPXE, ipxe_fast true", true, pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC), "b00101", true},
		{"iPXE, ipxe_fast false", false, pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC), "", true},
		{"a PXE ROM, ipxe_fast true", true, pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(77, 175)), "", false},
		{"a PXE ROM, ipxe_fast false", false, pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(77, 175)), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.IPXEFast = tt.fast
			s, err := New(cfg, newFakeStore(testNodes...), &fakeEvents{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, dst := s.handle(context.Background(), tt.req.ToBytes(), clientSrc, 67)
			got := summarize(t, out, dst)
			if got == nil || got.Type != "OFFER" || got.YIAddr != "10.18.1.2" {
				t.Fatalf("reply %+v: want an OFFER of 10.18.1.2", got)
			}
			if got.Opts[175] != tt.want175 {
				t.Errorf("option 175 = %q, want %q", got.Opts[175], tt.want175)
			}
			// The event is queued before handle returns.
			select {
			case e := <-s.rec.events:
				if ipxe := strings.Contains(e.Detail, "ipxe=yes"); ipxe != tt.wantIPXE {
					t.Errorf("event %q: ipxe=yes %v, want %v", e.Detail, ipxe, tt.wantIPXE)
				}
			default:
				t.Error("no boot event")
			}
		})
	}
}
