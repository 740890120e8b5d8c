package orbitinit

import (
	"bytes"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestDHCPMessages(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x18, 0x01, 0x01}
	server := net.IPv4(10, 18, 0, 1).To4()
	offer := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        1,
		TransactionID: dhcpv4.TransactionID{1, 2, 3, 4},
		ClientHWAddr:  mac,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4(10, 18, 1, 1).To4(),
		Options: dhcpv4.OptionsFromList(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer),
			dhcpv4.OptServerIdentifier(server)),
	}
	discover := newDiscover(mac)
	request := newRequest(offer, mac)
	for _, tt := range []struct {
		name string
		m    *dhcpv4.DHCPv4
		typ  dhcpv4.MessageType
		xid  *dhcpv4.TransactionID // nil: any
		ip   net.IP                // option 50, nil: none
		srv  net.IP                // option 54, nil: none
	}{
		{"discover", discover, dhcpv4.MessageTypeDiscover, nil, nil, nil},
		{"request", request, dhcpv4.MessageTypeRequest, &offer.TransactionID, offer.YourIPAddr, server},
	} {
		// Through the wire format, as the server reads it.
		m, err := dhcpv4.FromBytes(tt.m.ToBytes())
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if m.OpCode != dhcpv4.OpcodeBootRequest || m.MessageType() != tt.typ {
			t.Errorf("%s: op %v type %v, want a BOOTREQUEST %v", tt.name, m.OpCode, m.MessageType(), tt.typ)
		}
		if !bytes.Equal(m.ClientHWAddr, mac) {
			t.Errorf("%s: chaddr %v, want %v", tt.name, m.ClientHWAddr, mac)
		}
		if id := m.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(id, append([]byte{1}, mac...)) {
			t.Errorf("%s: client identifier %x, want 01+MAC", tt.name, id)
		}
		if c := m.ClassIdentifier(); c != "orbit-init" {
			t.Errorf("%s: class identifier %q", tt.name, c)
		}
		if !m.IsOptionRequested(dhcpv4.OptionHostName) || !m.IsOptionRequested(dhcpv4.OptionRouter) {
			t.Errorf("%s: requested options %v lack host name or router", tt.name, m.ParameterRequestList())
		}
		if tt.xid != nil && m.TransactionID != *tt.xid {
			t.Errorf("%s: xid %v, want the offer's %v", tt.name, m.TransactionID, *tt.xid)
		}
		if got := m.RequestedIPAddress(); !got.Equal(tt.ip) {
			t.Errorf("%s: requested address %v, want %v", tt.name, got, tt.ip)
		}
		if got := m.ServerIdentifier(); !got.Equal(tt.srv) {
			t.Errorf("%s: server identifier %v, want %v", tt.name, got, tt.srv)
		}
	}
	// Transaction IDs differ between exchanges (2^-32 to fail by chance).
	if a, b := newDiscover(mac).TransactionID, newDiscover(mac).TransactionID; a == b {
		t.Errorf("two DISCOVERs with transaction ID %v", a)
	}
}
