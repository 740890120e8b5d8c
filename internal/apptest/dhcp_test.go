package apptest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/orbit-lab/netboot/internal/config"
)

// TestDHCPYAML: the rendered section is what netbootd parses into the
// DHCP server the e2e tests expect, iPXE's fast path included.
func TestDHCPYAML(t *testing.T) {
	server, subnet := netip.MustParseAddr("10.199.0.1"), netip.MustParsePrefix("10.199.0.0/24")
	d := DHCP{Interface: "p1", Server: server, Subnet: subnet}
	cfg, err := config.Parse([]byte(d.YAML()))
	if err != nil {
		t.Fatalf("%v\n%s", err, d.YAML())
	}
	want := config.DHCP{Enabled: true, Interface: "p1", ServerIP: server, Subnet: subnet, Router: server, DNS: []netip.Addr{server},
		Domain: "orbit-lab.org", LeaseTime: time.Hour, Bootfile: "pxelinux.0", IPXEFast: true, IPXEScript: false}
	// The rest is config's defaults, not this section's business.
	ignore := cmpopts.IgnoreFields(config.DHCP{}, "BootfileEFI", "BootfileIPXEEFI", "UEFILoader", "BootfileAA64", "Pool", "Mode", "Workers", "Subnets")
	if diff := cmp.Diff(want, cfg.DHCP, ignore, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
