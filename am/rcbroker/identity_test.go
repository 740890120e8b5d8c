package rcbroker

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
)

// TestEnrollmentSource: the rules of which source address an RC may
// enroll a node from, with the request's address as net/http gives it.
func TestEnrollmentSource(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := inventory.ParseFile([]byte(`testbeds:
  - domain: sb8
    nodes:
      - { hrn: n1.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01" }
      - { hrn: n2.sb8, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02" }
      - { hrn: n3.sb8, control_ip: 10.18.1.3, control_mac: "00:03:1d:0c:01:03" }
      - { hrn: n4.sb8, control_ip: 10.18.1.4, control_mac: "00:03:1d:0c:01:04" }
`))
	if err == nil {
		err = st.Import(ctx, f)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Leases of inventory MACs: nodes leased before the inventory named
	// them. n1 and n2 hold theirs, n3's has expired, n4's is only offered.
	lease := func(mac, ip string, at time.Time, bind bool) {
		t.Helper()
		a := netip.MustParseAddr(ip)
		if bind {
			_, err = st.BindLease(ctx, mac, a, at, time.Hour)
		} else {
			_, err = st.OfferLease(ctx, store.LeaseRequest{MAC: mac, First: a, Last: a, Now: at, Hold: time.Minute})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	lease("00:03:1d:0c:01:01", "10.18.9.1", now, true)
	lease("00:03:1d:0c:01:02", "10.18.9.2", now, true)
	lease("00:03:1d:0c:01:03", "10.18.9.3", now.Add(-2*time.Hour), true)
	lease("00:03:1d:0c:01:04", "10.18.9.4", now, false)
	b, err := New(Config{ImageDir: t.TempDir()}, st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hrn, remote string
		ok                bool
	}{
		{"control IP", "n1.sb8", "10.18.1.1:40000", true},
		{"control IP, IPv4-mapped", "n1.sb8", "[::ffff:10.18.1.1]:40000", true},
		{"leased IP", "n1.sb8", "10.18.9.1:40000", true},
		{"leased IP, IPv4-mapped", "n1.sb8", "[::ffff:10.18.9.1]:40000", true},
		{"another node's control IP", "n1.sb8", "10.18.1.2:40000", false},
		{"another node's control IP, IPv4-mapped", "n1.sb8", "[::ffff:10.18.1.2]:40000", false},
		{"another node's lease", "n1.sb8", "10.18.9.2:40000", false},
		{"no node's address", "n1.sb8", "10.18.200.7:40000", false},
		{"the appliance's loopback", "n1.sb8", "127.0.0.1:40000", false},
		{"IPv6", "n1.sb8", "[2001:db8::1]:40000", false},
		{"IPv6 loopback", "n1.sb8", "[::1]:40000", false},
		{"IPv4-compatible, not mapped", "n1.sb8", "[::10.18.1.1]:40000", false},
		{"unreadable address", "n1.sb8", "10.18.1.1", false},
		{"expired lease", "n3.sb8", "10.18.9.3:40000", false},
		{"expired lease's node, control IP", "n3.sb8", "10.18.1.3:40000", true},
		{"offered, not bound", "n4.sb8", "10.18.9.4:40000", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := st.LookupNode(ctx, "", tc.hrn)
			if err != nil {
				t.Fatal(err)
			}
			r := &http.Request{RemoteAddr: tc.remote}
			err = b.checkSource(ctx, n, peer.Addr(r), now)
			switch {
			case tc.ok && err != nil:
				t.Errorf("%s from %s: %v; want admitted", tc.hrn, tc.remote, err)
			case !tc.ok && (err == nil || apierr.Status(err) != http.StatusForbidden):
				t.Errorf("%s from %s: %v; want a 403", tc.hrn, tc.remote, err)
			}
		})
	}
}
