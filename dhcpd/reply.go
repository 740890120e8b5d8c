package dhcpd

import (
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ProxyBootPort is the PXE boot server port a proxy also answers on.
const ProxyBootPort = 4011

// ports are the UDP ports of one server: where it listens and where
// clients listen. Tests move them off 67/68.
type ports struct {
	server int // 67
	client int // 68
}

// replyDestination says where a reply goes, per RFC 2131 section 4.1 and
// the PXE spec:
//
//   - giaddr set (relayed): to the relay, giaddr:67;
//   - the request came to the PXE boot port (4011): back to its source;
//   - a NAK: broadcast, as the client may have no usable address;
//   - ciaddr set (RENEWING, REBINDING, INFORM): unicast to ciaddr:68;
//   - otherwise broadcast to 255.255.255.255:68. RFC 2131 lets a server
//     unicast to yiaddr when the broadcast bit is clear, but that needs an
//     ARP entry the kernel does not have yet; every client accepts the
//     broadcast, and the socket is bound to the one interface served.
//
// local is the port the request arrived on.
func replyDestination(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, src netip.AddrPort, local int, p ports) netip.AddrPort {
	if gi := addr4(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, uint16(p.server))
	}
	if local == ProxyBootPort && src.IsValid() && !src.Addr().IsUnspecified() {
		return src
	}
	bcast := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), uint16(p.client))
	if mt == dhcpv4.MessageTypeNak {
		return bcast
	}
	if ci := addr4(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		return netip.AddrPortFrom(ci, uint16(p.client))
	}
	return bcast
}

// addr4 converts a 4- or 16-byte net.IP holding IPv4; anything else is the
// zero Addr.
func addr4(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	return netip.Addr{}
}

// ip4 is the net.IP form the library writes; the zero Addr becomes nil,
// which the library writes as 0.0.0.0.
func ip4(a netip.Addr) net.IP {
	if !a.Is4() {
		return nil
	}
	b := a.As4()
	return net.IP(b[:])
}

// newReply starts a reply of type mt to req: the header fields RFC 2131
// table 3 copies (xid, flags, giaddr, chaddr), option 82 echoed (RFC 3046)
// and the client identifier echoed (RFC 6842).
func newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		GatewayIPAddr: ip4(addr4(req.GatewayIPAddr)),
		ClientHWAddr:  req.ClientHWAddr,
		Options:       dhcpv4.Options{},
	}
	r.UpdateOption(dhcpv4.OptMessageType(mt))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			r.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	return r
}
