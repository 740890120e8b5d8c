package dhcpd

import (
	"context"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandler feeds the whole handler chain, in server and proxy mode,
// with mutations of real PXE packets (seedPackets: QEMU iPXE's DORA,
// relayed, UEFI, INFORM, RELEASE, DECLINE, truncated ones) and of the
// real packets in testdata/fuzz/FuzzHandler: busybox udhcpc's DISCOVER and
// REQUEST (plain, with a PXE vendor class for arch 0, for arch 7 asking for
// an address) and dnsmasq's OFFER and ACK to them, captured on a veth pair
// with the known MAC 00:03:1d:0c:01:02. Whatever comes
// in, the handler must not panic, and any reply must parse, answer the
// same transaction and client, and go somewhere.
func FuzzHandler(f *testing.F) {
	for _, p := range seedPackets() {
		f.Add(p, false)
		f.Add(p, true)
	}
	newServer := func(mode Mode) *Server {
		cfg := testConfig()
		cfg.Mode = mode
		s, err := New(cfg, backend(newFakeStore(testNodes...), &fakeEvents{}), nil)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	server, proxy := newServer(ModeServer), newServer(ModeProxy)
	f.Fuzz(func(t *testing.T, pkt []byte, proxyMode bool) {
		s, local := server, 67
		if proxyMode {
			s, local = proxy, ProxyBootPort
		}
		out, dst := s.handle(context.Background(), pkt, clientSrc, local)
		if n := s.Stats().Panics; n != 0 {
			t.Fatalf("handler panicked on %x", pkt)
		}
		// Drain the event queue so that it never fills.
		for len(s.rec.events) > 0 {
			<-s.rec.events
		}
		if out == nil {
			return
		}
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil {
			t.Fatalf("reply to a packet that does not parse: %v", err)
		}
		r, err := dhcpv4.FromBytes(out)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != req.TransactionID || r.ClientHWAddr.String() != req.ClientHWAddr.String() {
			t.Fatalf("reply %s does not answer %s", r.Summary(), req.Summary())
		}
		if !dst.IsValid() || dst.Port() == 0 {
			t.Fatalf("reply to %v", dst)
		}
		if proxyMode && !r.YourIPAddr.IsUnspecified() {
			t.Fatalf("proxy handed out an address: %s", r.YourIPAddr)
		}
	})
}
