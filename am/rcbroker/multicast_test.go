package rcbroker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

// TestMulticastSessions: LOAD_IMAGEs of one chunked image that ask for
// multicast share one session (group, key, session id, the sender's
// address); a single-stream image, or a load that did not ask, goes over
// HTTP; another image gets a session of its own, on its own group and port.
func TestMulticastSessions(t *testing.T) {
	a := start(t, rcbroker.Config{Multicast: rcbroker.Multicast{
		Groups: netip.MustParsePrefix("239.255.18.0/30"), PortFirst: 41000, PortLast: 41009, TTL: 1, Rate: 100e6,
		Source: netip.MustParseAddr("127.0.0.1"), Fallback: 2 * time.Second,
	}})
	u := a.URL + "/api/v1/disk-images/"
	for _, name := range []string{"mc", "other"} {
		img, digest := zstdtest.Chunked(t, mixedDisk(6), chunkimg.MinChunkSize)
		if name == "other" {
			img, digest = zstdtest.Chunked(t, mixedDisk(7), chunkimg.MinChunkSize)
		}
		if ans := req(t, http.MethodPut, u+name, operatorToken, img, proto.HeaderSHA256, digest); ans.code != http.StatusCreated {
			t.Fatalf("upload %s: %d %s", name, ans.code, ans.body)
		}
	}
	legacy := zstdtest.Compress(t, mixedDisk(6))
	if ans := req(t, http.MethodPut, u+"single", operatorToken, legacy, proto.HeaderSHA256, sum(legacy)); ans.code != http.StatusCreated {
		t.Fatalf("upload single: %d %s", ans.code, ans.body)
	}
	secrets := map[string]string{
		"n1.sb8": enroll(t, a, "00:03:1d:0c:01:01").Secret,
		"n2.sb8": enroll(t, a, "00:03:1d:0c:01:02").Secret,
	}
	c := amclient.New(a.URL)
	// take queues a LOAD_IMAGE for hrn and returns it as its RC gets it.
	take := func(hrn, image string, multicast bool) proto.Command {
		t.Helper()
		if _, err := c.SendCommand(context.Background(), hrn, proto.CommandRequest{Type: proto.LoadImage, Image: image, Multicast: multicast}); err != nil {
			t.Fatal(err)
		}
		ans := reqFrom(t, "", http.MethodGet, a.URL+"/api/v1/rc/poll?wait=0s", secrets[hrn], nil)
		var env proto.Envelope
		if ans.code != http.StatusOK || json.Unmarshal([]byte(ans.body), &env) != nil {
			t.Fatalf("poll: %d %s", ans.code, ans.body)
		}
		cmd, err := proto.Open(env, secrets[hrn])
		if err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first, second := take("n1.sb8", "mc", true), take("n2.sb8", "mc", true)
	m := first.Multicast
	if m == nil || second.Multicast == nil {
		t.Fatalf("multicast loads of one chunked image: %+v and %+v, want both in a session", first.Multicast, second.Multicast)
	}
	if *second.Multicast != *m {
		t.Errorf("two sessions for one image: %+v and %+v", *m, *second.Multicast)
	}
	group := netip.MustParseAddrPort(m.Group)
	if !netip.MustParsePrefix("239.255.18.0/30").Contains(group.Addr()) || group.Port() < 41000 || group.Port() > 41009 ||
		!strings.HasPrefix(m.Sender, "127.0.0.1:") || len(m.Key) != 64 || m.Fallback != "2s" {
		t.Errorf("session %+v: want a group of 239.255.18.0/30, a port of 41000-41009, the sender on 127.0.0.1, a 32-byte key", *m)
	}
	for _, tc := range []struct {
		name, hrn, image string
		multicast        bool
	}{
		{"a single-stream image", "n1.sb8", "single", true},
		{"a load that did not ask", "n2.sb8", "mc", false},
	} {
		if got := take(tc.hrn, tc.image, tc.multicast).Multicast; got != nil {
			t.Errorf("%s: multicast %+v, want none (HTTP)", tc.name, *got)
		}
	}
	other := take("n1.sb8", "other", true).Multicast
	if other == nil || other.Group == m.Group || other.Session == m.Session || other.Key == m.Key {
		t.Errorf("another image's session %+v shares the first's %+v", other, *m)
	}
}
