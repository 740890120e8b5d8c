package vtestbed

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/testenv"
)

var (
	nodeMAC   = net.HardwareAddr{0x52, 0x54, 0, 0x18, 1, 1}
	serverMAC = net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0, 1}
)

// frame builds an Ethernet frame with an IPv4 UDP or TCP packet; from
// the node when fromNode.
func frame(fromNode, tcp bool, src, dst uint16, payload []byte) []byte {
	eth := append(append([]byte{}, nodeMAC...), serverMAC...) // to the node
	if fromNode {
		eth = append(append([]byte{}, serverMAC...), nodeMAC...)
	}
	eth = append(eth, 0x08, 0x00)
	l4 := make([]byte, 8)
	proto := byte(17)
	if tcp {
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		proto = 6
	}
	binary.BigEndian.PutUint16(l4[0:2], src)
	binary.BigEndian.PutUint16(l4[2:4], dst)
	ip := make([]byte, 20)
	ip[0], ip[9] = 0x45, proto
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+len(l4)+len(payload)))
	return append(append(append(eth, ip...), l4...), payload...)
}

func dhcpPayload(typ byte) []byte {
	b := make([]byte, 236)
	return append(b, 99, 130, 83, 99, 12, 1, 'x', 53, 1, typ, 255)
}

func TestParseFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    []byte
		ok   bool
		want Packet
	}{
		{"DHCP offer", frame(false, false, 67, 68, dhcpPayload(DHCPOffer)), true,
			Packet{NodePort: 68, PeerPort: 67, Payload: 247, DHCP: DHCPOffer}},
		{"TFTP RRQ", frame(true, false, 2000, 69, []byte("\x00\x01pxelinux.0\x00octet\x00")), true,
			Packet{FromNode: true, NodePort: 2000, PeerPort: 69, Payload: 19, Request: "pxelinux.0"}},
		{"TFTP data", frame(false, false, 40000, 2000, make([]byte, 516)), true,
			Packet{NodePort: 2000, PeerPort: 40000, Payload: 516}},
		{"HTTP GET", frame(true, true, 3000, 80, []byte("GET /boot/linux HTTP/1.1\r\nHost: x\r\n\r\n")), true,
			Packet{FromNode: true, TCP: true, NodePort: 3000, PeerPort: 80, Payload: 37, Request: "/boot/linux"}},
		{"HTTP HEAD", frame(true, true, 3000, 80, []byte("HEAD /efi/a.img HTTP/1.1\r\n")), true,
			Packet{FromNode: true, TCP: true, NodePort: 3000, PeerPort: 80, Payload: 26, Request: "/efi/a.img"}},
		{"TCP not HTTP", frame(true, true, 3000, 80, []byte("POST /x HTTP/1.1\r\n")), true,
			Packet{FromNode: true, TCP: true, NodePort: 3000, PeerPort: 80, Payload: 18}},
		{"another machine", append(append(append([]byte{}, serverMAC...), serverMAC...), frame(true, false, 1, 2, nil)[12:]...), false, Packet{}},
		{"ARP", append(frame(true, false, 1, 2, nil)[:12], 0x08, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), false, Packet{}},
		{"cut short", frame(true, false, 1, 2, nil)[:30], false, Packet{}},
	} {
		got, ok := ParseFrame(tc.f, nodeMAC)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: ParseFrame = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestFetches: a file counts from its first request to the server's last
// payload after its last request, on that request's flow; a keep-alive
// connection's next request ends the one before.
func TestFetches(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pkts := []Packet{
		{At: at(0), DHCP: DHCPOffer, NodePort: 68},
		{At: at(10), FromNode: true, NodePort: 2000, Request: "shimx64.efi"}, // a size probe, ended by the client
		{At: at(11), NodePort: 2000, Payload: 14},
		{At: at(20), FromNode: true, NodePort: 2001, Request: "shimx64.efi"},
		{At: at(30), NodePort: 2001, Payload: 516},
		{At: at(40), NodePort: 2001, Payload: 100},
		{At: at(41), FromNode: true, NodePort: 2001, Payload: 4},
		{At: at(50), FromNode: true, TCP: true, NodePort: 3000, Request: "/k"},
		{At: at(60), TCP: true, NodePort: 3000, Payload: 1000},
		{At: at(70), FromNode: true, TCP: true, NodePort: 3000, Request: "/i"},
		{At: at(80), TCP: true, NodePort: 3000, Payload: 1000},
		{At: at(90), TCP: true, NodePort: 3000, Payload: 10},
		{At: at(95), TCP: true, NodePort: 3001, Payload: 10}, // another flow
	}
	fs, order := Fetches(pkts)
	if want := []string{"shimx64.efi", "/k", "/i"}; len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("order %q, want %q", order, want)
	}
	for _, tc := range []struct {
		file            string
		requested, done time.Time
		requests        int
	}{
		{"shimx64.efi", at(10), at(40), 2},
		{"/k", at(50), at(60), 1},
		{"/i", at(70), at(90), 1},
	} {
		f := fs[tc.file]
		if !f.Requested.Equal(tc.requested) || !f.Done.Equal(tc.done) || f.Requests != tc.requests {
			t.Errorf("%s: requested %v, done %v, %d requests; want %v, %v, %d", tc.file, f.Requested, f.Done, f.Requests, tc.requested, tc.done, tc.requests)
		}
	}
	if got := FirstDHCP(pkts, DHCPOffer); !got.Equal(at(0)) {
		t.Errorf("FirstDHCP = %v, want %v", got, at(0))
	}
	if got := FirstDHCP(pkts, DHCPAck); !got.IsZero() {
		t.Errorf("FirstDHCP(ack) = %v, want zero", got)
	}
}

// TestCaptureOnTap: a capture on the node's interface (a veth standing in
// for its tap, the server at the other end in a second namespace) sees
// the node's TFTP read request and the server's reply on that flow, with
// the kernel's time stamps, and nothing after Stop.
func TestCaptureOnTap(t *testing.T) {
	testenv.Root(t, "network namespace, AF_PACKET")
	testenv.Programs(t, "Debian: iproute2", "ip")
	nodeNS, serverNS := testNetns(t, "vtbc"), testNetns(t, "vtbc")
	node := NewNode(1, VirtioNet)
	node.Tap = "tap0"
	for _, st := range [][]string{
		{"link", "add", "tap0", "address", node.MAC, "type", "veth", "peer", "name", "srv0", "netns", serverNS.Name},
		{"addr", "add", node.IP.String() + "/16", "dev", "tap0"},
		{"link", "set", "tap0", "up"},
	} {
		if err := nodeNS.IP(st...); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range [][]string{{"addr", "add", ServerIP.String() + "/16", "dev", "srv0"}, {"link", "set", "srv0", "up"}} {
		if err := serverNS.IP(st...); err != nil {
			t.Fatal(err)
		}
	}
	tb := &Testbed{Netns: nodeNS, Nodes: []Node{node}}
	c, err := tb.Capture(node)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = c.Stop() }() // on a failure; the test's Stop is below

	// The server answers from another port, as TFTP does.
	var srv *net.UDPConn
	if err := netns.Do(serverNS.Name, func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ServerIP.AsSlice(), Port: 69})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var cl *net.UDPConn
	if err := netns.Do(nodeNS.Name, func() (err error) {
		cl, err = net.ListenUDP("udp4", &net.UDPAddr{IP: node.IP.AsSlice()}) // unconnected: the reply comes from another port
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	before := time.Now()
	if _, err := cl.WriteToUDP([]byte("\x00\x01pxelinux.0\x00octet\x00"), &net.UDPAddr{IP: ServerIP.AsSlice(), Port: 69}); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_, from, err := srv.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	var data *net.UDPConn
	if err := netns.Do(serverNS.Name, func() (err error) {
		data, err = net.DialUDP("udp4", &net.UDPAddr{IP: ServerIP.AsSlice()}, from)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	if _, err := data.Write(append([]byte{0, 3, 0, 1}, make([]byte, 100)...)); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.ReadFromUDP(buf); err != nil {
		t.Fatal(err)
	}
	pkts, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	fs, order := Fetches(pkts)
	if len(order) != 1 || order[0] != "pxelinux.0" {
		t.Fatalf("fetches %q, want [pxelinux.0]; packets %+v", order, pkts)
	}
	f := fs["pxelinux.0"]
	if f.Requested.Before(before.Add(-time.Second)) || !f.Done.After(f.Requested) || time.Since(f.Done) > time.Minute {
		t.Errorf("pxelinux.0 requested %v, done %v (test started %v)", f.Requested, f.Done, before)
	}
	if n := len(pkts); n < 2 {
		t.Errorf("%d packets, want the request and the data", n)
	}
}
