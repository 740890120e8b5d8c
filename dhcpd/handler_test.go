package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/internal/store"
)

const (
	knownMAC   = "00:03:1d:0c:01:02"
	relayMAC   = "00:03:1d:0c:02:05"
	unknownMAC = "52:54:00:99:00:32"
	bcast68    = "255.255.255.255:68"
)

var clientSrc = netip.MustParseAddrPort("0.0.0.0:68")

// replyTo hands pkt to s as from a client on port 68 and returns the
// reply's message type and yiaddr, both "" when s does not answer.
func replyTo(ctx context.Context, t *testing.T, s *Server, pkt []byte) (typ, yiaddr string) {
	t.Helper()
	out, _ := s.handle(ctx, pkt, clientSrc, 67)
	if out == nil {
		return "", ""
	}
	r, err := dhcpv4.FromBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	return r.MessageType().String(), r.YourIPAddr.String()
}

// offerOpts are the options of an OFFER or ACK to node1-2 from iPXE.
func offerOpts(extra map[uint8]string, drop ...uint8) map[uint8]string {
	m := map[uint8]string{
		1: "255.255.0.0", 3: "10.18.0.1", 6: "10.18.0.1", 12: `"node1-2"`, 15: `"sb8.orbit-lab.org"`,
		51: "3600", 58: "1800", 59: "3150", 54: "10.18.0.1", 66: `"10.18.0.1"`, 67: `"pxelinux.0"`,
		61: "0100031d0c0102", 175: "b00101",
	}
	maps.Copy(m, extra)
	for _, d := range drop {
		delete(m, d)
	}
	return m
}

func offerTo(yiaddr string, extra map[uint8]string, drop ...uint8) *summary {
	s := &summary{Type: "OFFER", To: bcast68, YIAddr: yiaddr, CIAddr: "0.0.0.0", SIAddr: "10.18.0.1", GIAddr: "0.0.0.0",
		File: "pxelinux.0", Opts: offerOpts(extra, drop...), Xid: "0x12340102", Mac: knownMAC}
	return s
}

func ackTo(yiaddr string, extra map[uint8]string, drop ...uint8) *summary {
	s := offerTo(yiaddr, extra, drop...)
	s.Type = "ACK"
	return s
}

func nak(msg string) *summary {
	return &summary{Type: "NAK", To: bcast68, YIAddr: "0.0.0.0", CIAddr: "0.0.0.0", SIAddr: "0.0.0.0", GIAddr: "0.0.0.0",
		Opts: map[uint8]string{54: "10.18.0.1", 56: `"` + msg + `"`, 61: "0100031d0c0102"}, Xid: "0x12340102", Mac: knownMAC}
}

func with(s *summary, f func(*summary)) *summary { f(s); return s }

func TestHandlerServer(t *testing.T) {
	tests := []struct {
		name      string
		req       *dhcpv4.DHCPv4
		src       netip.AddrPort // zero: 0.0.0.0:68
		want      *summary       // nil: no reply
		wantEvent string         // "what detail" of the one event; "none"; "" is not checked
	}{
		{name: "iPXE DISCOVER of a known node: its address, name, boot file and 175",
			req:       pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC),
			want:      offerTo("10.18.1.2", nil),
			wantEvent: "DHCPOFFER ip=10.18.1.2 file=pxelinux.0 arch=0 loader=bios ipxe=yes"},
		{name: "UEFI x86-64 (arch 7) gets bootfile_efi",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, withArch(7)),
			want: with(offerTo("10.18.1.2", map[uint8]string{67: `"syslinux.efi"`}), func(s *summary) { s.File = "syslinux.efi" })},
		{name: "UEFI arch 9 gets bootfile_efi",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, withArch(9)),
			want: with(offerTo("10.18.1.2", map[uint8]string{67: `"syslinux.efi"`}), func(s *summary) { s.File = "syslinux.efi" })},
		{name: "UEFI IA32 (arch 6) gets bootfile_efi",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, withArch(6)),
			want: with(offerTo("10.18.1.2", map[uint8]string{67: `"syslinux.efi"`}), func(s *summary) { s.File = "syslinux.efi" })},
		{name: "no option 93: the BIOS file",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(93)),
			want: offerTo("10.18.1.2", nil)},
		{name: "a PXE ROM that is not iPXE gets no 175",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(77, 175)),
			want: offerTo("10.18.1.2", nil, 175)},
		{name: "iPXE known by 175 alone",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(77)),
			want: offerTo("10.18.1.2", nil)},
		{name: "iPXE user class in RFC 3004 form",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(175), withOpt(77, []byte("\x04iPXE"))),
			want: offerTo("10.18.1.2", nil)},
		{name: "broadcast flag: broadcast reply with the flag",
			req:  pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, withBroadcast()),
			want: with(offerTo("10.18.1.2", nil), func(s *summary) { s.Bcast = true })},
		{name: "REQUEST selecting this server: ACK",
			req:       pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withServerID("10.18.0.1"), withRequested("10.18.1.2")),
			want:      ackTo("10.18.1.2", nil),
			wantEvent: "DHCPACK state=selecting ip=10.18.1.2 file=pxelinux.0 arch=0 loader=bios ipxe=yes"},
		{name: "REQUEST selecting another server: silence, an event",
			req:       pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withServerID("10.18.0.99"), withRequested("10.18.7.7")),
			wantEvent: "DHCPREQUEST server=10.18.0.99 answer=none"},
		{name: "REQUEST selecting this server with a wrong address: NAK",
			req:       pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withServerID("10.18.0.1"), withRequested("10.18.7.7")),
			want:      nak("address 10.18.7.7 is not yours, 10.18.1.2 is"),
			wantEvent: `DHCPNAK state=selecting reason="address 10.18.7.7 is not yours, 10.18.1.2 is"`},
		{name: "INIT-REBOOT with its address: ACK",
			req:  pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withRequested("10.18.1.2")),
			want: ackTo("10.18.1.2", nil)},
		{name: "INIT-REBOOT with a wrong address: NAK",
			req:  pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withRequested("192.168.1.9")),
			want: nak("address 192.168.1.9 is not yours, 10.18.1.2 is")},
		{name: "RENEWING unicast with ciaddr: ACK to ciaddr",
			req: pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withCiaddr("10.18.1.2")),
			src: netip.MustParseAddrPort("10.18.1.2:68"),
			want: with(ackTo("10.18.1.2", nil), func(s *summary) {
				s.To, s.CIAddr = "10.18.1.2:68", "0.0.0.0"
			})},
		{name: "RENEWING a wrong address: NAK",
			req:  pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withCiaddr("10.18.1.3")),
			want: nak("address 10.18.1.3 is not yours, 10.18.1.2 is")},
		{name: "REQUEST with nothing to go by: dropped",
			req: pxeRequest(dhcpv4.MessageTypeRequest, knownMAC), wantEvent: "none"},
		{name: "INFORM: configuration to ciaddr, no lease time, no yiaddr",
			req: pxeRequest(dhcpv4.MessageTypeInform, knownMAC, withCiaddr("10.18.1.2")),
			want: with(ackTo("0.0.0.0", nil, 51, 58, 59), func(s *summary) {
				s.To, s.CIAddr = "10.18.1.2:68", "10.18.1.2"
			}),
			wantEvent: "DHCPACK inform=10.18.1.2 file=pxelinux.0 arch=0 loader=bios ipxe=yes"},
		{name: "RELEASE: no reply, an event",
			req:       pxeRequest(dhcpv4.MessageTypeRelease, knownMAC, withCiaddr("10.18.1.2")),
			wantEvent: "DHCPRELEASE ip=10.18.1.2"},
		{name: "DECLINE of a reservation: no reply, an event naming the problem",
			req:       pxeRequest(dhcpv4.MessageTypeDecline, knownMAC, withRequested("10.18.1.2")),
			wantEvent: `DHCPDECLINE ip=10.18.1.2 problem="another host uses the reserved address"`},
		{name: "relayed DISCOVER: the relay's subnet, to giaddr:67, option 82 echoed",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, relayMAC, withGiaddr("10.19.0.2"), withOpt(82, []byte{1, 2, 'p', '1'})),
			want: &summary{Type: "OFFER", To: "10.19.0.2:67", YIAddr: "10.19.1.5", CIAddr: "0.0.0.0", SIAddr: "10.18.0.1", GIAddr: "10.19.0.2",
				File: "pxelinux.0", Xid: "0x12340205", Mac: relayMAC,
				Opts: offerOpts(map[uint8]string{3: "10.19.0.1", 12: `"relnode"`, 15: `"grid.orbit-lab.org"`, 61: "0100031d0c0205", 82: "01027031"})},
			wantEvent: "DHCPOFFER relay=10.19.0.2 ip=10.19.1.5 file=pxelinux.0 arch=0 loader=bios ipxe=yes"},
		{name: "relayed NAK: to the relay, broadcast bit set",
			req: pxeRequest(dhcpv4.MessageTypeRequest, relayMAC, withGiaddr("10.19.0.2"), withRequested("10.19.1.6")),
			want: &summary{Type: "NAK", To: "10.19.0.2:67", YIAddr: "0.0.0.0", CIAddr: "0.0.0.0", SIAddr: "0.0.0.0", GIAddr: "10.19.0.2",
				Bcast: true, Xid: "0x12340205", Mac: relayMAC,
				Opts: map[uint8]string{54: "10.18.0.1", 56: `"address 10.19.1.6 is not yours, 10.19.1.5 is"`, 61: "0100031d0c0205"}}},
		{name: "relay from no configured subnet: dropped",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, relayMAC, withGiaddr("10.77.0.2")), wantEvent: "none"},
		{name: "a known node on the wrong segment: dropped",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, "00:03:1d:0c:03:01"), wantEvent: "none"},
		{name: "a relayed node asking directly: wrong segment, dropped",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, relayMAC)},
		{name: "unknown MAC without a pool: ignored",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, unknownMAC), wantEvent: "none"},
		{name: "a reply (BOOTREPLY) is not a request",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, withOpcode(dhcpv4.OpcodeBootReply))},
		{name: "BOOTP without option 53 is not served",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(53))},
		{name: "an OFFER sent to the server port is not a request",
			req: pxeRequest(dhcpv4.MessageTypeOffer, knownMAC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &fakeEvents{}
			s, err := New(testConfig(), backend(newFakeStore(testNodes...), ev), nil)
			if err != nil {
				t.Fatal(err)
			}
			src := tt.src
			if !src.IsValid() {
				src = clientSrc
			}
			out, dst := s.handle(context.Background(), tt.req.ToBytes(), src, 67)
			if diff := cmp.Diff(tt.want, summarize(t, out, dst)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			var got string
			select {
			case e := <-s.rec.events:
				got = e.What + " " + e.Detail
				if e.Source != "dhcp" || e.HRN == "" {
					t.Errorf("event %+v", e)
				}
			default:
			}
			if got == "" {
				got = "none"
			}
			if tt.wantEvent != "" && got != tt.wantEvent {
				t.Errorf("event = %q, want %q", got, tt.wantEvent)
			}
		})
	}
}

func TestHandlerProxy(t *testing.T) {
	proxyOffer := func(typ, to string) *summary {
		return &summary{Type: typ, To: to, YIAddr: "0.0.0.0", CIAddr: "0.0.0.0", SIAddr: "10.18.0.1", GIAddr: "0.0.0.0",
			File: "pxelinux.0", Xid: "0x12340102", Mac: knownMAC,
			Opts: map[uint8]string{43: "060108ff", 54: "10.18.0.1", 60: `"PXEClient"`, 61: "0100031d0c0102",
				66: `"10.18.0.1"`, 67: `"pxelinux.0"`, 97: "0000000000000000000000000000000000", 175: "b00101"}}
	}
	tests := []struct {
		name  string
		req   *dhcpv4.DHCPv4
		src   netip.AddrPort
		local int
		want  *summary
	}{
		{name: "PXE DISCOVER: boot info, no address", req: pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC),
			want: proxyOffer("OFFER", bcast68)},
		{name: "REQUEST to the boot port: ACK back to the source",
			req: pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withCiaddr("10.18.50.7")), src: netip.MustParseAddrPort("10.18.50.7:68"), local: 4011,
			want: with(proxyOffer("ACK", "10.18.50.7:68"), func(s *summary) { s.CIAddr = "10.18.50.7" })},
		{name: "REQUEST naming this proxy on 67: ACK",
			req:  pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withServerID("10.18.0.1"), withRequested("10.18.50.7")),
			want: proxyOffer("ACK", bcast68)},
		{name: "REQUEST for the address server: silence",
			req: pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withServerID("10.18.0.254"), withRequested("10.18.50.7"))},
		{name: "not a PXE client: silence", req: pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(60))},
		{name: "unknown MAC: silence", req: pxeRequest(dhcpv4.MessageTypeDiscover, unknownMAC)},
		{name: "known node whose address is elsewhere: still boot info (the address server decides)",
			req: pxeRequest(dhcpv4.MessageTypeDiscover, "00:03:1d:0c:03:01"),
			want: with(proxyOffer("OFFER", bcast68), func(s *summary) {
				s.Mac, s.Xid, s.Opts[61] = "00:03:1d:0c:03:01", "0x12340301", "0100031d0c0301"
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Mode = ModeProxy
			s, err := New(cfg, backend(newFakeStore(testNodes...), &fakeEvents{}), nil)
			if err != nil {
				t.Fatal(err)
			}
			src, local := tt.src, tt.local
			if !src.IsValid() {
				src = clientSrc
			}
			if local == 0 {
				local = 67
			}
			out, dst := s.handle(context.Background(), tt.req.ToBytes(), src, local)
			if diff := cmp.Diff(tt.want, summarize(t, out, dst)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHandlerPool runs pool clients through the real store: offers skip
// reservations and the server's own addresses, leases persist across a
// new Server, NAKs guard taken addresses, and exhaustion means silence.
func TestHandlerPool(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Import(ctx, importFile(testNodes...)); err != nil {
		t.Fatal(err)
	}
	newServer := func() *Server {
		s, err := New(testConfig(), backend(st, st), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newServer()
	relayed := func(mt dhcpv4.MessageType, mac string, opts ...reqOpt) []byte {
		return pxeRequest(mt, mac, append([]reqOpt{withGiaddr("10.19.0.2")}, opts...)...).ToBytes()
	}
	a, b, c := "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
	steps := []struct {
		name           string
		s              func() *Server
		pkt            []byte
		wantType, want string
	}{
		{"first client: the first pool address", nil, relayed(dhcpv4.MessageTypeDiscover, a), "OFFER", "10.19.9.1"},
		{"it takes it", nil, relayed(dhcpv4.MessageTypeRequest, a, withServerID("10.18.0.1"), withRequested("10.19.9.1")), "ACK", "10.19.9.1"},
		{"second client: 10.19.9.2 is a reservation, skipped", nil, relayed(dhcpv4.MessageTypeDiscover, b), "OFFER", "10.19.9.3"},
		{"third client: pool exhausted, silence", nil, relayed(dhcpv4.MessageTypeDiscover, c), "", ""},
		{"third client asks for a's address: NAK", nil, relayed(dhcpv4.MessageTypeRequest, c, withServerID("10.18.0.1"), withRequested("10.19.9.1")), "NAK", "0.0.0.0"},
		{"third client asks for the reservation: NAK", nil, relayed(dhcpv4.MessageTypeRequest, c, withServerID("10.18.0.1"), withRequested("10.19.9.2")), "NAK", "0.0.0.0"},
		{"third client asks outside the pool: NAK", nil, relayed(dhcpv4.MessageTypeRequest, c, withServerID("10.18.0.1"), withRequested("10.19.0.1")), "NAK", "0.0.0.0"},
		{"after a restart, a's INIT-REBOOT: ACK", newServer, relayed(dhcpv4.MessageTypeRequest, a, withRequested("10.19.9.1")), "ACK", "10.19.9.1"},
		{"INIT-REBOOT with no record: silence", nil, relayed(dhcpv4.MessageTypeRequest, c, withRequested("10.19.9.1")), "", ""},
		{"INIT-REBOOT on another network: NAK", nil, relayed(dhcpv4.MessageTypeRequest, c, withRequested("10.20.0.1")), "NAK", "0.0.0.0"},
		{"a renews: ACK", nil, relayed(dhcpv4.MessageTypeRequest, a, withCiaddr("10.19.9.1")), "ACK", "10.19.9.1"},
		{"a releases", nil, relayed(dhcpv4.MessageTypeRelease, a, withCiaddr("10.19.9.1")), "", ""},
		{"b takes another server's offer: its offer is freed", nil, relayed(dhcpv4.MessageTypeRequest, b, withServerID("10.19.0.250"), withRequested("10.19.0.77")), "", ""},
		{"now c gets the address free longest (a's)", nil, relayed(dhcpv4.MessageTypeDiscover, c), "OFFER", "10.19.9.1"},
		{"c declines it", nil, relayed(dhcpv4.MessageTypeDecline, c, withRequested("10.19.9.1")), "", ""},
		{"c gets b's freed offer", nil, relayed(dhcpv4.MessageTypeDiscover, c), "OFFER", "10.19.9.3"},
		{"the declined address is held: d gets nothing", nil, relayed(dhcpv4.MessageTypeDiscover, "52:54:00:00:00:0d"), "", ""},
	}
	for _, st := range steps {
		if st.s != nil {
			s = st.s()
		}
		typ, ip := replyTo(ctx, t, s, st.pkt)
		if typ != st.wantType || ip != st.want {
			t.Fatalf("%s: got %q %q, want %q %q", st.name, typ, ip, st.wantType, st.want)
		}
	}
	// Pool clients are discovered MACs, with the address they were offered
	// (this server's sightings since the restart).
	s.rec.writeSightings(ctx)
	disc, err := st.Discovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disc {
		got = append(got, d.MAC+" "+d.LastIP+" "+d.Relay)
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:0d  10.19.0.2", c + " 10.19.9.3 10.19.0.2", b + "  10.19.0.2", a + " 10.19.9.1 10.19.0.2"}, got); diff != "" {
		t.Errorf("discovered (-want +got):\n%s", diff)
	}
}

func TestUnknownMACsAreRecordedAndLoggedOncePerMinute(t *testing.T) {
	var logs strings.Builder
	st := newFakeStore(testNodes...)
	s, err := New(testConfig(), backend(st, nil), newTextLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.unknownLog.SetClock(func() time.Time { return now })
	pkt := pxeRequest(dhcpv4.MessageTypeDiscover, unknownMAC).ToBytes()
	for range 5 {
		if out, _ := s.handle(context.Background(), pkt, clientSrc, 67); out != nil {
			t.Fatal("an unknown MAC got a reply")
		}
	}
	now = now.Add(61 * time.Second)
	s.handle(context.Background(), pkt, clientSrc, 67)
	if n := strings.Count(logs.String(), "ignoring a MAC"); n != 2 {
		t.Errorf("%d log lines for 6 requests over 61 s, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "held_back=4") {
		t.Errorf("second line does not count the 4 held back:\n%s", logs.String())
	}
	s.rec.writeSightings(context.Background())
	if len(st.seen) != 1 || st.seen[0].Count != 6 || st.seen[0].VendorClass != "PXEClient:Arch:00000:UNDI:002001" {
		t.Errorf("sightings = %+v", st.seen)
	}
	if got := s.Stats().Unknown; got != 6 {
		t.Errorf("Stats().Unknown = %d", got)
	}
}

func TestDatabaseErrorDropsAndCounts(t *testing.T) {
	st := newFakeStore(testNodes...)
	st.failWith = errors.New("disk I/O error")
	cfg := testConfig()
	cfg.Metrics = metrics.New()
	s, err := New(cfg, backend(st, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := s.handle(context.Background(), pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC).ToBytes(), clientSrc, 67); out != nil {
		t.Error("reply despite a database error")
	}
	if got := s.Stats(); got.Errors != 1 {
		t.Errorf("stats = %+v", got)
	}
	want := `netbootd_dhcp_drops_total{reason="error"} 1
netbootd_dhcp_packets_total{outcome="dropped",type="DISCOVER"} 1
`
	if got := metricLines(t, cfg.Metrics, "netbootd_dhcp_"); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
}

func TestMalformedCounted(t *testing.T) {
	cfg := testConfig()
	cfg.Metrics = metrics.New()
	s, err := New(cfg, backend(newFakeStore(testNodes...), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := [][]byte{nil, {1, 1, 6}, make([]byte, 300), make([]byte, maxDatagram+1)}
	req := pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC)
	req.ClientHWAddr = []byte{1, 2, 3}
	bad = append(bad, req.ToBytes())
	for _, b := range bad {
		if out, _ := s.handle(context.Background(), b, clientSrc, 67); out != nil {
			t.Errorf("reply to %x", b)
		}
	}
	if got := s.Stats().Malformed; got != uint64(len(bad)) {
		t.Errorf("Malformed = %d, want %d", got, len(bad))
	}
	// The last one parsed: it is counted under its message type.
	want := fmt.Sprintf(`netbootd_dhcp_drops_total{reason="malformed"} %d
netbootd_dhcp_packets_total{outcome="dropped",type="DISCOVER"} 1
netbootd_dhcp_packets_total{outcome="dropped",type="unknown"} %d
`, len(bad), len(bad)-1)
	if got := metricLines(t, cfg.Metrics, "netbootd_dhcp_"); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
}

// metricLines is m's samples whose names start with prefix, in the text
// format without comments, sorted; those at 0 are left out.
func metricLines(t *testing.T, m *metrics.Metrics, prefix string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var lines []string
	for l := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(l, prefix) && !strings.HasSuffix(l, " 0\n") {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// TestNodeBootfileWins: a boot file named in the inventory for a node goes
// to that node whatever its architecture; other nodes keep the defaults.
func TestNodeBootfileWins(t *testing.T) {
	const mac = "00:03:1d:0c:01:09"
	nodes := append(slices.Clone(testNodes), inventory.Node{HRN: "uefi1.sb8", Domain: "sb8", ControlIP: "10.18.1.9", ControlMAC: mac, Bootfile: "efi64/ipxe.efi"})
	tests := []struct {
		mac  string
		arch uint16
		want string
	}{
		{mac, 0, "efi64/ipxe.efi"},
		{mac, 7, "efi64/ipxe.efi"},
		{knownMAC, 0, "pxelinux.0"},
		{knownMAC, 7, "syslinux.efi"},
	}
	for _, tt := range tests {
		s, err := New(testConfig(), backend(newFakeStore(nodes...), &fakeEvents{}), nil)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := s.handle(context.Background(), pxeRequest(dhcpv4.MessageTypeDiscover, tt.mac, withArch(tt.arch)).ToBytes(), clientSrc, 67)
		reply, err := dhcpv4.FromBytes(out)
		if err != nil {
			t.Fatalf("%s arch %d: no reply: %v", tt.mac, tt.arch, err)
		}
		if reply.BootFileName != tt.want || reply.GetOneOption(dhcpv4.OptionBootfileName) == nil || string(reply.GetOneOption(dhcpv4.OptionBootfileName)) != tt.want {
			t.Errorf("%s arch %d: file %q, option 67 %q; want %q", tt.mac, tt.arch, reply.BootFileName, reply.GetOneOption(dhcpv4.OptionBootfileName), tt.want)
		}
	}
}

// TestIPXEFastOff: with ipxe_fast false an iPXE client gets the same reply
// as with it, less option 175 (so iPXE waits for ProxyDHCP offers as it
// does by default), in both modes; and no router-advertisement responder
// is made, so router solicitations on the segment go unanswered by us.
func TestIPXEFastOff(t *testing.T) {
	proxy := testConfig()
	proxy.Mode = ModeProxy
	for _, tt := range []struct {
		name  string
		cfg   Config
		req   *dhcpv4.DHCPv4
		src   string
		local int
	}{
		{"server: DISCOVER", testConfig(), pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC), "0.0.0.0:68", 67},
		{"server: REQUEST", testConfig(), pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withServerID("10.18.0.1"), withRequested("10.18.1.2")), "0.0.0.0:68", 67},
		{"server: INFORM", testConfig(), pxeRequest(dhcpv4.MessageTypeInform, knownMAC, withCiaddr("10.18.1.2")), "10.18.1.2:68", 67},
		{"server: relayed DISCOVER", testConfig(), pxeRequest(dhcpv4.MessageTypeDiscover, relayMAC, withGiaddr("10.19.0.2")), "10.19.0.2:67", 67},
		{"proxy: DISCOVER", proxy, pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC), "0.0.0.0:68", 67},
		{"proxy: REQUEST on the boot port", proxy, pxeRequest(dhcpv4.MessageTypeRequest, knownMAC, withCiaddr("10.18.50.7")), "10.18.50.7:68", ProxyBootPort},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reply := func(fast bool) (*summary, string) {
				cfg := tt.cfg
				cfg.IPXEFast = fast
				s, err := New(cfg, backend(newFakeStore(testNodes...), &fakeEvents{}), nil)
				if err != nil {
					t.Fatal(err)
				}
				if (s.ra != nil) != fast {
					t.Errorf("ipxe_fast %v: router-advertisement responder made: %v", fast, s.ra != nil)
				}
				out, dst := s.handle(context.Background(), tt.req.ToBytes(), netip.MustParseAddrPort(tt.src), tt.local)
				var ev string
				select {
				case e := <-s.rec.events:
					ev = e.What + " " + e.Detail
				default:
				}
				return summarize(t, out, dst), ev
			}
			fast, fastEv := reply(true)
			slow, slowEv := reply(false)
			if fast == nil || slow == nil {
				t.Fatalf("no reply: fast %v, slow %v", fast, slow)
			}
			if fast.Opts[175] != "b00101" {
				t.Errorf("ipxe_fast true: option 175 = %q, want b00101", fast.Opts[175])
			}
			if v, ok := slow.Opts[175]; ok {
				t.Errorf("ipxe_fast false: option 175 = %q, want none", v)
			}
			delete(fast.Opts, 175)
			if diff := cmp.Diff(fast, slow); diff != "" {
				t.Errorf("replies differ in more than option 175 (-fast +slow):\n%s", diff)
			}
			// The client is iPXE either way; only the answer differs.
			if fastEv != slowEv || (fastEv != "" && !strings.Contains(slowEv, "ipxe=yes")) {
				t.Errorf("events: fast %q, slow %q", fastEv, slowEv)
			}
		})
	}
}
