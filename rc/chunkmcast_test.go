package rc

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/rc/proto"
)

// recordingSource is an HTTP source that records what it was asked for.
type recordingSource struct{ asked [][]int }

func (r *recordingSource) Fetch(_ context.Context, want []int, _ chan<- Frame) error {
	r.asked = append(r.asked, slices.Clone(want))
	return nil
}

// TestMulticastFallsBack: a session the node cannot use, for whatever
// reason, costs the multicast only: every chunk wanted is fetched over
// HTTP, and a second fetch (chunks that failed verification) goes there
// too.
func TestMulticastFallsBack(t *testing.T) {
	key := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		m    proto.Multicast
	}{
		{"a group that is no address", proto.Multicast{Group: "no-such-group", Sender: "127.0.0.1:9", Key: key, Fallback: "1s"}},
		{"a key that is not hex", proto.Multicast{Group: "239.255.77.1:41000", Sender: "127.0.0.1:9", Key: "zz", Fallback: "1s"}},
		{"no fallback time", proto.Multicast{Group: "239.255.77.1:41000", Sender: "127.0.0.1:9", Key: key}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			http := &recordingSource{}
			s := &mcastSource{m: &tc.m, id: "n1", sizes: make([]int, 8), maxFrame: 1 << 20, http: http, log: slog.New(slog.DiscardHandler)}
			want := []int{1, 2, 5}
			for range 2 {
				if err := s.Fetch(t.Context(), want, make(chan Frame, 8)); err != nil {
					t.Fatal(err)
				}
			}
			if len(http.asked) != 2 || !slices.Equal(http.asked[0], want) || !slices.Equal(http.asked[1], want) {
				t.Errorf("HTTP was asked for %v, want %v twice", http.asked, want)
			}
		})
	}
}
