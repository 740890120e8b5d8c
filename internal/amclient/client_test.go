package amclient

import (
	"net"
	"testing"
)

func TestTokenInClear(t *testing.T) {
	for _, tc := range []struct {
		base, token string
		want        bool
	}{
		{"http://192.0.2.1:5054", "tok", true},
		{"http://boot.example:5054", "tok", true},
		{"http://[2001:db8::1]:5054", "tok", true},
		{"http://192.0.2.1:5054", "", false},
		{"https://192.0.2.1:5443", "tok", false},
		{"http://localhost:5054", "tok", false},
		{"http://127.0.0.1:5054", "tok", false},
		{"http://127.3.2.1:5054", "tok", false},
		{"http://[::1]:5054", "tok", false},
		{"http://ui.localhost:5054", "tok", false},
	} {
		// 192.0.2.0/24 and 2001:db8::/32 are documentation ranges, on
		// no interface of this host.
		if got := New(tc.base).WithToken(tc.token).TokenInClear(); got != tc.want {
			t.Errorf("%s with token %q: in clear %v, want %v", tc.base, tc.token, got, tc.want)
		}
	}
}

// TestTokenInClearLocal: an address of one of this host's own interfaces
// is this host (nbctl beside netbootd, in its network namespace).
func TestTokenInClearLocal(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.To4() == nil {
			continue
		}
		base := "http://" + net.JoinHostPort(n.IP.String(), "5054")
		if New(base).WithToken("tok").TokenInClear() {
			t.Errorf("%s, an address of this host: token in clear", base)
		}
		return
	}
	t.Skip("this host has no IPv4 address but loopback")
}
