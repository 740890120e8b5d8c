package peer

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestPeer(t *testing.T) {
	for _, tc := range []struct {
		remote string
		want   netip.AddrPort
		name   string
	}{
		{"10.18.1.1:40000", netip.MustParseAddrPort("10.18.1.1:40000"), "10.18.1.1"},
		{"[::ffff:10.18.1.1]:40000", netip.MustParseAddrPort("10.18.1.1:40000"), "10.18.1.1"},
		{"[fd00::1]:80", netip.MustParseAddrPort("[fd00::1]:80"), "fd00::1"},
		{"pipe", netip.AddrPort{}, "pipe"},
		{"", netip.AddrPort{}, ""},
	} {
		r := &http.Request{RemoteAddr: tc.remote}
		if got := AddrPort(r); got != tc.want {
			t.Errorf("AddrPort(%q) = %v, want %v", tc.remote, got, tc.want)
		}
		if got := Addr(r); got != tc.want.Addr() {
			t.Errorf("Addr(%q) = %v, want %v", tc.remote, got, tc.want.Addr())
		}
		if got := Name(r); got != tc.name {
			t.Errorf("Name(%q) = %q, want %q", tc.remote, got, tc.name)
		}
	}
}
