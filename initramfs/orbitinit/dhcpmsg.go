package orbitinit

import (
	"encoding/binary"
	"math/rand/v2"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
)

// dhcpOptions are what the init's DISCOVER and REQUEST both carry.
func dhcpOptions(mac net.HardwareAddr) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("orbit-init")),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
			dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName),
		dhcpv4.WithNetboot,
		// Option 61 = 01+MAC, as the PXE ROM sent.
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, mac...))),
	}
}

// newDiscover is the init's DISCOVER from mac.
func newDiscover(mac net.HardwareAddr) *dhcpv4.DHCPv4 {
	return newDHCPMessage(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)}, dhcpOptions(mac)...)...)
}

// newRequest is the init's REQUEST of offer (RFC 2131 SELECTING: the
// offer's transaction ID, address and server identifier).
func newRequest(offer *dhcpv4.DHCPv4, mac net.HardwareAddr) *dhcpv4.DHCPv4 {
	return newDHCPMessage(append([]dhcpv4.Modifier{dhcpv4.WithReply(offer),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier)}, dhcpOptions(mac)...)...)
}

// newDHCPMessage is dhcpv4.New with a transaction ID that does not wait
// for the kernel's random pool (see lease).
func newDHCPMessage(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	var xid dhcpv4.TransactionID
	binary.BigEndian.PutUint32(xid[:], rand.Uint32())
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		TransactionID: xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       dhcpv4.Options{},
	}
	for _, m := range mods {
		m(d)
	}
	return d
}
