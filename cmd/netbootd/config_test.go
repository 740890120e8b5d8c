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
		Bootfile: "pxelinux.0", BootfileEFI: "shimx64.efi", BootfileIPXEEFI: "snponly.efi", UEFILoader: "shim", BootfileAA64: "shimaa64.efi",
		IPXEFast: true, Mode: dhcpd.ModeServer, Workers: 8,
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

// TestBootURLs: the URLs DHCP gives iPXE and UEFI HTTP Boot clients are on
// the AM's port at the DHCP server address; none with HTTP boot files off.
func TestBootURLs(t *testing.T) {
	for _, tt := range []struct {
		yaml, script, boot string
	}{
		{"", "http://10.18.0.1:5054/ipxe/", "http://10.18.0.1:5054/boot/"},
		{"http: { listen: \"127.0.0.1:8054\" }\nhttp_boot: { prefix: /files/ }\ndhcp: { server_ip: 10.30.0.1 }\n", "http://10.30.0.1:8054/ipxe/", "http://10.30.0.1:8054/files/"},
		{"http_boot: { prefix: \"\" }\n", "", ""},
		{"dhcp: { ipxe_script: false }\n", "", "http://10.18.0.1:5054/boot/"},
	} {
		c, err := config.Parse([]byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if script, boot := bootURLs(c); script != tt.script || boot != tt.boot {
			t.Errorf("%q: bootURLs = %q, %q; want %q, %q", tt.yaml, script, boot, tt.script, tt.boot)
		}
	}
}
