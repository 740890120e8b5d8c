package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/dhcpd"
	"github.com/orbit-lab/netboot/internal/config"
	"github.com/orbit-lab/netboot/internal/iprange"
)

// TestDHCPConfig: the dhcp section, over the defaults, reaches the DHCP
// server whole; overlapping subnets stop netbootd before it.
func TestDHCPConfig(t *testing.T) {
	const dhcp = "dhcp: { pool: 10.18.200.1-10.18.200.9, subnets: [ { subnet: 10.19.0.0/16, router: 10.19.0.1, pool: 10.19.9.1-10.19.9.3 } ] }\n"
	c, err := config.Parse([]byte(dhcp))
	if err != nil {
		t.Fatal(err)
	}
	got := dhcpConfig(c.DHCP)
	want := dhcpd.Config{
		Interface: "eth1", ServerIP: netip.MustParseAddr("10.18.0.1"),
		Subnet: dhcpd.Subnet{Prefix: netip.MustParsePrefix("10.18.0.0/16"), Router: netip.MustParseAddr("10.18.0.1"),
			Pool: iprange.Range{First: netip.MustParseAddr("10.18.200.1"), Last: netip.MustParseAddr("10.18.200.9")}},
		Subnets: []dhcpd.Subnet{{Prefix: netip.MustParsePrefix("10.19.0.0/16"), Router: netip.MustParseAddr("10.19.0.1"),
			Pool: iprange.Range{First: netip.MustParseAddr("10.19.9.1"), Last: netip.MustParseAddr("10.19.9.3")}}},
		DNS: []netip.Addr{netip.MustParseAddr("10.18.0.1")}, Domain: "orbit-lab.org", LeaseTime: time.Hour,
		Bootfile: "pxelinux.0", BootfileEFI: "syslinux.efi", IPXEFast: true, Mode: dhcpd.ModeServer, Workers: 8,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("dhcpConfig (-want +got):\n%s", diff)
	}
	overlapping := strings.Replace(dhcp, "] }", ", { subnet: 10.18.1.0/24 } ] }", 1)
	if _, err := config.Parse([]byte(overlapping)); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping subnets: %v", err)
	}
}
