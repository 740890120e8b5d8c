package dhcpd

import (
	"context"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkHandle is the handler's own cost for an iPXE DISCOVER of a
// known node (in-memory store; no sockets, no database).
func BenchmarkHandle(b *testing.B) {
	s, err := New(testConfig(), backend(newFakeStore(testNodes...), &fakeEvents{}), nil)
	if err != nil {
		b.Fatal(err)
	}
	pkt := pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC).ToBytes()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if out, _ := s.handle(ctx, pkt, clientSrc, 67); out == nil {
			b.Fatal("no reply")
		}
		select {
		case <-s.rec.events:
		default:
		}
	}
}
