package dhcpd

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/iprange"
	"github.com/orbit-lab/netboot/internal/store"
)

// The requests below are built as QEMU's iPXE ROM sends them (see
// shared/notes/qemu-netboot.md): options 93 = 0, 94 = 1.2.1,
// 60 = PXEClient:Arch:00000:UNDI:002001, 61 = 01+MAC, 57 = 1472,
// 97 = 0 + 16-byte UUID, 77 = "iPXE" raw, 175 = the iPXE feature list,
// broadcast flag clear.

// ipxeFeatures is an option 175 as iPXE 1.21 sends it: priority, bus id,
// and one byte per feature (HTTP, DNS, TFTP, PXE extensions, ...).
var ipxeFeatures = []byte{
	0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, // bus id: PCI 8086:100e (e1000)
	0x24, 0x01, 0x01, 0x23, 0x01, 0x01, 0x13, 0x01, 0x01, 0x11, 0x01, 0x01,
	0x27, 0x01, 0x01, 0x19, 0x01, 0x01, 0x29, 0x01, 0x01, 0x10, 0x01, 0x02,
	0x21, 0x01, 0x01, 0x15, 0x01, 0x01, 0x18, 0x01, 0x01, 0x12, 0x01, 0x01,
}

var ipxeParams = []byte{1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203}

type reqOpt func(*dhcpv4.DHCPv4)

// pxeRequest builds a request of type mt from mac as QEMU's iPXE sends it.
func pxeRequest(mt dhcpv4.MessageType, mac string, opts ...reqOpt) *dhcpv4.DHCPv4 {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		panic(err)
	}
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        1,
		TransactionID: dhcpv4.TransactionID{0x12, 0x34, hw[4], hw[5]},
		ClientHWAddr:  hw,
		Options:       dhcpv4.Options{},
	}
	d.UpdateOption(dhcpv4.OptMessageType(mt))
	d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionMaximumDHCPMessageSize, []byte{0x05, 0xc0}))
	d.UpdateOption(dhcpv4.OptGeneric(optClientArch, []byte{0, 0}))
	d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}))
	d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClassIdentifier, []byte("PXEClient:Arch:00000:UNDI:002001")))
	d.UpdateOption(dhcpv4.OptGeneric(optUserClass, []byte("iPXE")))
	d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionParameterRequestList, ipxeParams))
	d.UpdateOption(dhcpv4.OptGeneric(optIPXE, ipxeFeatures))
	d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, append([]byte{1}, hw...)))
	d.UpdateOption(dhcpv4.OptGeneric(optClientUUID, make([]byte, 17)))
	for _, o := range opts {
		o(d)
	}
	return d
}

func withArch(a uint16) reqOpt {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptGeneric(optClientArch, binary.BigEndian.AppendUint16(nil, a)))
	}
}
func without(codes ...uint8) reqOpt {
	return func(d *dhcpv4.DHCPv4) {
		for _, c := range codes {
			d.Options.Del(dhcpv4.GenericOptionCode(c))
		}
	}
}
func withOpt(code uint8, v []byte) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), v)) }
}
func withServerID(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip).To4())) }
}
func withRequested(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip).To4())) }
}
func withCiaddr(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.ClientIPAddr = net.ParseIP(ip).To4() }
}
func withGiaddr(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.GatewayIPAddr = net.ParseIP(ip).To4(); d.HopCount = 1 }
}
func withBroadcast() reqOpt { return func(d *dhcpv4.DHCPv4) { d.SetBroadcast() } }
func withOpcode(op dhcpv4.OpcodeType) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.OpCode = op }
}

// seedPackets are the fuzz seeds and the packets the handler tests send:
// a PXE boot's DORA, relayed, UEFI, renewing, and a few broken ones.
func seedPackets() [][]byte {
	known := "00:03:1d:0c:01:02"
	pkts := []*dhcpv4.DHCPv4{
		pxeRequest(dhcpv4.MessageTypeDiscover, known),
		pxeRequest(dhcpv4.MessageTypeRequest, known, withServerID("10.18.0.1"), withRequested("10.18.1.2")),
		pxeRequest(dhcpv4.MessageTypeRequest, known, withRequested("10.18.1.2")),
		pxeRequest(dhcpv4.MessageTypeRequest, known, withCiaddr("10.18.1.2"), without(50)),
		pxeRequest(dhcpv4.MessageTypeDiscover, known, withArch(7)),
		pxeRequest(dhcpv4.MessageTypeDiscover, "00:03:1d:0c:02:05", withGiaddr("10.19.0.2"), withOpt(82, []byte{1, 4, 'p', 'o', 'r', 't', 2, 2, 'r', '1'})),
		pxeRequest(dhcpv4.MessageTypeDiscover, "52:54:00:99:00:32"),
		pxeRequest(dhcpv4.MessageTypeRelease, known, withCiaddr("10.18.1.2")),
		pxeRequest(dhcpv4.MessageTypeInform, known, withCiaddr("10.18.1.2")),
		pxeRequest(dhcpv4.MessageTypeDecline, known, withRequested("10.18.1.2")),
	}
	var out [][]byte
	for _, p := range pkts {
		out = append(out, p.ToBytes())
	}
	b := pkts[0].ToBytes()
	out = append(out,
		b[:240],                           // header and cookie, no options
		b[:300],                           // options cut short
		append(slices.Clone(b[:241]), 53), // option with no length
		[]byte{1, 1, 6, 0},
		nil,
	)
	return out
}

// backend hands st in for every role but the boot events (ev, nil for
// none), as netbootd hands in its store.
func backend(st interface {
	Nodes
	Leases
	Sightings
}, ev EventSink) Backend {
	return Backend{Nodes: st, Leases: st, Discovered: st, Events: ev}
}

// fakeStore is an in-memory Nodes, Leases and Sightings: an inventory and
// a naive pool.
type fakeStore struct {
	mu       sync.Mutex
	nodes    map[string]inventory.Node // by MAC
	leases   map[string]store.Lease    // by MAC
	seen     []store.Sighting
	failWith error // every call fails with it when set
}

func newFakeStore(nodes ...inventory.Node) *fakeStore {
	f := &fakeStore{nodes: map[string]inventory.Node{}, leases: map[string]store.Lease{}}
	for _, n := range nodes {
		f.nodes[n.ControlMAC] = n
	}
	return f
}

func (f *fakeStore) NodeByMAC(_ context.Context, mac string) (inventory.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return inventory.Node{}, f.failWith
	}
	n, ok := f.nodes[mac]
	if !ok {
		return inventory.Node{}, fmt.Errorf("node with control MAC %s: %w", mac, store.ErrNotFound)
	}
	return n, nil
}

func (f *fakeStore) taken(ip netip.Addr, mac string, now time.Time) bool {
	for m, l := range f.leases {
		if m != mac && l.IP == ip && l.ExpiresAt.After(now) {
			return true
		}
	}
	for _, n := range f.nodes {
		if n.ControlIP == ip.String() {
			return true
		}
	}
	return false
}

func (f *fakeStore) OfferLease(_ context.Context, r store.LeaseRequest) (store.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[r.MAC]; ok && !f.taken(l.IP, r.MAC, r.Now) {
		return l, nil
	}
	for a := r.First; !r.Last.Less(a); a = a.Next() {
		if !slices.Contains(r.Exclude, a) && !f.taken(a, r.MAC, r.Now) {
			l := store.Lease{IP: a, MAC: r.MAC, State: store.LeaseOffered, ExpiresAt: r.Now.Add(r.Hold)}
			f.leases[r.MAC] = l
			return l, nil
		}
	}
	return store.Lease{}, store.ErrPoolExhausted
}

func (f *fakeStore) BindLease(_ context.Context, mac string, ip netip.Addr, now time.Time, life time.Duration) (store.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taken(ip, mac, now) {
		return store.Lease{}, store.ErrConflict
	}
	l := store.Lease{IP: ip, MAC: mac, State: store.LeaseBound, ExpiresAt: now.Add(life)}
	f.leases[mac] = l
	return l, nil
}

func (f *fakeStore) ReleaseLease(_ context.Context, mac string, ip netip.Addr, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[mac]; ok && l.IP == ip {
		l.State, l.ExpiresAt = store.LeaseReleased, now
		f.leases[mac] = l
	}
	return nil
}

func (f *fakeStore) DeclineLease(_ context.Context, mac string, ip netip.Addr, now time.Time, hold time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[mac]; ok && l.IP == ip {
		delete(f.leases, mac)
		f.leases["declined "+ip.String()] = store.Lease{IP: ip, State: store.LeaseDeclined, ExpiresAt: now.Add(hold)}
	}
	return nil
}

func (f *fakeStore) LeaseByMAC(_ context.Context, mac string) (store.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.leases[mac]
	if !ok {
		return store.Lease{}, store.ErrNotFound
	}
	return l, nil
}

func (f *fakeStore) RecordDiscovered(_ context.Context, s []store.Sighting) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, s...)
	return nil
}

// fakeEvents collects events.
type fakeEvents struct {
	mu     sync.Mutex
	events []store.Event
}

func (f *fakeEvents) AddEvents(_ context.Context, e []store.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e...)
	return nil
}

// testNodes: one on the interface's segment, one behind a relay, one whose
// control_ip is on no served segment, and one whose address is inside the
// relayed pool.
var testNodes = []inventory.Node{
	{HRN: "node1-2.sb8.orbit-lab.org", Domain: "sb8", Hostname: "node1-2", ControlIP: "10.18.1.2", ControlMAC: "00:03:1d:0c:01:02"},
	{HRN: "relnode.grid.orbit-lab.org", Domain: "grid", Hostname: "relnode", ControlIP: "10.19.1.5", ControlMAC: "00:03:1d:0c:02:05"},
	{HRN: "lost.sb9", Domain: "sb9", Hostname: "lost", ControlIP: "10.30.0.5", ControlMAC: "00:03:1d:0c:03:01"},
	{HRN: "inpool", Domain: "grid", ControlIP: "10.19.9.2", ControlMAC: "00:03:1d:0c:04:01"},
}

func testConfig() Config {
	return Config{
		Interface: "nbt0",
		ServerIP:  netip.MustParseAddr("10.18.0.1"),
		Subnet:    Subnet{Prefix: netip.MustParsePrefix("10.18.0.0/16"), Router: netip.MustParseAddr("10.18.0.1")},
		Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.19.0.0/16"), Router: netip.MustParseAddr("10.19.0.1"),
			Pool: iprange.Range{First: netip.MustParseAddr("10.19.9.1"), Last: netip.MustParseAddr("10.19.9.3")}}},
		DNS:         []netip.Addr{netip.MustParseAddr("10.18.0.1")},
		Domain:      "orbit-lab.org",
		LeaseTime:   time.Hour,
		Bootfile:    "pxelinux.0",
		BootfileEFI: "syslinux.efi",
		IPXEFast:    true,
	}
}

// summary is what the tests compare of a reply.
type summary struct {
	Type     string
	To       string
	YIAddr   string
	CIAddr   string
	SIAddr   string
	GIAddr   string
	File     string
	Bcast    bool
	Opts     map[uint8]string // option code -> value, readable
	Xid, Mac string
}

// readable options: IPs dotted, strings quoted, the rest hex.
func summarize(t *testing.T, b []byte, to netip.AddrPort) *summary {
	t.Helper()
	if b == nil {
		return nil
	}
	r, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	s := &summary{
		Type: r.MessageType().String(), To: to.String(),
		YIAddr: r.YourIPAddr.String(), CIAddr: r.ClientIPAddr.String(), SIAddr: r.ServerIPAddr.String(), GIAddr: r.GatewayIPAddr.String(),
		File: r.BootFileName, Bcast: r.IsBroadcast(), Opts: map[uint8]string{},
		Xid: r.TransactionID.String(), Mac: r.ClientHWAddr.String(),
	}
	for code, v := range r.Options {
		switch code {
		case 53:
			continue
		case 1, 3, 6, 28, 54:
			var ips []string
			for i := 0; i+4 <= len(v); i += 4 {
				ips = append(ips, net.IP(v[i:i+4]).String())
			}
			s.Opts[code] = strings.Join(ips, ",")
		case 12, 15, 56, 60, 66, 67:
			s.Opts[code] = fmt.Sprintf("%q", v)
		case 51, 58, 59:
			s.Opts[code] = fmt.Sprint(binary.BigEndian.Uint32(v))
		default:
			s.Opts[code] = fmt.Sprintf("%x", v)
		}
	}
	return s
}
