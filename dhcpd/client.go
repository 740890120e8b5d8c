package dhcpd

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// Option codes the library has no name for, or names oddly.
const (
	optUserClass   = dhcpv4.GenericOptionCode(77)  // RFC 3004; iPXE sends raw "iPXE"
	optClientArch  = dhcpv4.GenericOptionCode(93)  // RFC 4578
	optClientUUID  = dhcpv4.GenericOptionCode(97)  // RFC 4578
	optIPXE        = dhcpv4.GenericOptionCode(175) // iPXE encapsulated options
	ipxeNoPXEDHCP  = 176                           // sub-option of 175: skip the ProxyDHCP wait
	optPXEVendor   = dhcpv4.GenericOptionCode(43)  // PXE vendor options
	pxeDiscoveryCt = 6                             // sub-option of 43: PXE_DISCOVERY_CONTROL
)

// clientInfo is what a request says about the client's firmware.
type clientInfo struct {
	arch    int    // option 93, first entry; -1 when absent
	pxe     bool   // option 60 starts with "PXEClient"
	ipxe    bool   // option 77 contains "iPXE", or option 175 is present
	http    bool   // UEFI HTTP Boot: option 93 = 16 or 19, or option 60 "HTTPClient..."
	vendor  string // option 60, printable, at most 64 bytes
	hasUUID bool   // option 97 is present (echoed in proxy replies)
}

func parseClient(req *dhcpv4.DHCPv4) clientInfo {
	c := clientInfo{arch: -1}
	if a := req.Options.Get(optClientArch); len(a) >= 2 {
		c.arch = int(binary.BigEndian.Uint16(a))
	}
	vc := req.Options.Get(dhcpv4.OptionClassIdentifier)
	c.pxe = bytes.HasPrefix(vc, []byte("PXEClient"))
	c.vendor = printable(vc, 64)
	// iPXE sends the four bytes "iPXE" raw, not in RFC 3004's
	// length-prefixed form; Contains accepts both.
	c.ipxe = bytes.Contains(req.Options.Get(optUserClass), []byte("iPXE")) || req.Options.Has(optIPXE)
	c.hasUUID = req.Options.Has(optClientUUID)
	c.http = isHTTPClient(c.arch, c.vendor)
	return c
}

// printable keeps the printable ASCII of b, at most max bytes, so that
// client-chosen strings are safe in logs and the database.
func printable(b []byte, max int) string {
	var sb strings.Builder
	for _, c := range b {
		if sb.Len() >= max {
			break
		}
		if c >= 0x20 && c < 0x7f {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// hostnameFor is option 12: the inventory hostname, else the first label
// of the hrn.
func hostnameFor(n inventory.Node) string {
	if n.Hostname != "" {
		return n.Hostname
	}
	h, _, _ := strings.Cut(n.HRN, ".")
	return h
}

// domainFor is option 15. ORBIT hrns are host.testbed.domain
// (node1-2.sb8.orbit-lab.org): when the hrn starts with the hostname, the
// rest of it is the domain, so that hostname + "." + domain is the hrn.
// Otherwise, and for clients not in the inventory, it is the configured
// domain.
func domainFor(n *inventory.Node, fallback string) string {
	if n == nil {
		return fallback
	}
	if rest, ok := strings.CutPrefix(n.HRN, hostnameFor(*n)+"."); ok && rest != "" {
		return rest
	}
	return fallback
}
