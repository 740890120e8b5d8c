package timeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/tftpd"
)

type fakeStore struct{ events []store.Event }

func (f *fakeStore) NodeByIP(_ context.Context, ip string) (inventory.Node, error) {
	if ip == "10.18.1.2" {
		return inventory.Node{HRN: "node1-2.sb8"}, nil
	}
	return inventory.Node{}, fmt.Errorf("node with control IP %s: %w", ip, store.ErrNotFound)
}

func (f *fakeStore) AddEvent(_ context.Context, e store.Event) error {
	f.events = append(f.events, e)
	return nil
}

func TestTransferDone(t *testing.T) {
	at := time.Unix(1000, 0)
	node, other := netip.MustParseAddrPort("10.18.1.2:2070"), netip.MustParseAddrPort("10.18.9.9:2070")
	tests := []struct {
		name string
		tr   tftpd.Transfer
		want []store.Event
	}{
		{"a known node's transfer", tftpd.Transfer{Client: node, File: "pxelinux.0", Bytes: 42430, BlkSize: 1432, Duration: 7 * time.Millisecond},
			[]store.Event{{HRN: "node1-2.sb8", At: at, Source: "tftp", What: "pxelinux.0", Detail: "42430 bytes, blksize 1432, 7ms"}}},
		{"a failed transfer says why", tftpd.Transfer{Client: node, File: "linux", Bytes: 1408, Err: errors.New("timeout")},
			[]store.Event{{HRN: "node1-2.sb8", At: at, Source: "tftp", What: "linux", Detail: "failed after 1408 bytes: timeout"}}},
		{"pxelinux's probes for missing files are not events", tftpd.Transfer{Client: node, File: "pxelinux.cfg/01-52-54-00-00-00-01", Err: fmt.Errorf("x: %w", tftpd.ErrNotFound)}, nil},
		{"a host not in the inventory", tftpd.Transfer{Client: other, File: "pxelinux.0"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			r := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
			r.now = func() time.Time { return at }
			r.TransferDone(context.Background(), tt.tr)
			if diff := cmp.Diff(tt.want, st.events); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
