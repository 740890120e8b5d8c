package apptest

import (
	"fmt"
	"net/netip"
)

// DHCP is the dhcp section of a test appliance's config: netbootd serves
// DHCP on Interface for Subnet from Server, which is also the clients'
// router and DNS server, and clients boot pxelinux.0 (iPXE clients too,
// unless IPXEScript). The other keys keep
// their defaults (ipxe_fast among them: on, which iPXE clients need).
type DHCP struct {
	Interface string
	Server    netip.Addr // netbootd's address on Interface
	Subnet    netip.Prefix
	// Mode is dhcp.mode: "" (netbootd's default, server) or "proxy" (boot
	// information only, beside another DHCP server).
	Mode string
	// IPXEScript keeps netbootd's default of sending iPXE clients their
	// per-node script; without it they get pxelinux.0 over TFTP like the
	// other BIOS clients (QEMU's NICs run iPXE as their PXE ROM).
	IPXEScript bool
}

// YAML renders d as one line of config, for Options.Extra.
func (d DHCP) YAML() string {
	mode := ""
	if d.Mode != "" {
		mode = ", mode: " + d.Mode
	}
	if !d.IPXEScript {
		mode += ", ipxe_script: false"
	}
	return fmt.Sprintf("dhcp: { enabled: true, interface: %s, server_ip: %s, subnet: %s, router: %s, dns: [%s], domain: orbit-lab.org, lease_time: 1h, bootfile: pxelinux.0%s }\n",
		d.Interface, d.Server, d.Subnet, d.Server, d.Server, mode)
}
