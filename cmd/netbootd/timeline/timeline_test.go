package timeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/am/httpboot"
	"github.com/orbit-lab/netboot/internal/bootpath"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/metrics"
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
		// counted is the outcome the transfer is counted under.
		counted string
	}{
		{"a known node's transfer", tftpd.Transfer{Client: node, File: "pxelinux.0", Bytes: 42430, BlkSize: 1432, Duration: 7 * time.Millisecond},
			[]store.Event{{HRN: "node1-2.sb8", At: at, Source: "tftp", What: "pxelinux.0", Detail: "42430 bytes, blksize 1432, 7ms"}}, "ok"},
		{"a failed transfer says why", tftpd.Transfer{Client: node, File: "linux", Bytes: 1408, Err: errors.New("timeout")},
			[]store.Event{{HRN: "node1-2.sb8", At: at, Source: "tftp", What: "linux", Detail: "failed after 1408 bytes: timeout"}}, "error"},
		{"pxelinux's probes for missing files are not events", tftpd.Transfer{Client: node, File: "pxelinux.cfg/01-52-54-00-00-00-01", Err: fmt.Errorf("x: %w", tftpd.ErrNotFound)}, nil, "not_found"},
		{"a host not in the inventory", tftpd.Transfer{Client: other, File: "pxelinux.0"}, nil, "ok"},
		{"blocks sent again show", tftpd.Transfer{Client: node, File: "linux", Bytes: 1408, BlkSize: 1408, Duration: 2 * time.Second, Unacked: 2},
			[]store.Event{{HRN: "node1-2.sb8", At: at, Source: "tftp", What: "linux", Detail: "1408 bytes, blksize 1408, 2s, 2 not acknowledged in time"}}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			met := metrics.New()
			r := New(st, met, slog.New(slog.NewTextHandler(io.Discard, nil)))
			r.now = func() time.Time { return at }
			r.TransferDone(context.Background(), tt.tr)
			if diff := cmp.Diff(tt.want, st.events); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			checkCounted(t, met, "tftp", tt.counted)
			rec := httptest.NewRecorder()
			met.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if want := fmt.Sprintf("\nnetbootd_tftp_unacked_datagrams_total %d\n", tt.tr.Unacked); !strings.Contains(rec.Body.String(), want) {
				t.Errorf("metrics lack %q", strings.TrimSpace(want))
			}
		})
	}
}

func TestFetchDone(t *testing.T) {
	at := time.Unix(1000, 0)
	node, other := netip.MustParseAddrPort("10.18.1.2:40001"), netip.MustParseAddrPort("10.18.9.9:40001")
	ev := func(what, detail string) []store.Event {
		return []store.Event{{HRN: "node1-2.sb8", At: at, Source: "http", What: what, Detail: detail}}
	}
	tests := []struct {
		name string
		f    httpboot.Fetch
		want []store.Event
		// counted is the outcome the fetch is counted under; "": none.
		counted string
	}{
		{"a known node's GET", httpboot.Fetch{Client: node, Method: http.MethodGet, File: "initramfs.gz", Status: 200, Bytes: 31457280, Size: 31457280, Duration: 45 * time.Millisecond},
			ev("initramfs.gz", "31457280 bytes, 45ms"), "ok"},
		{"a Range request is logged as partial", httpboot.Fetch{Client: node, Method: http.MethodGet, File: "boot.img", Status: 206, Range: "bytes=0-1023", Bytes: 1024, Size: 15 << 20, Duration: time.Millisecond},
			ev("boot.img", "partial: bytes=0-1023, 1024 of 15728640 bytes, 1ms"), "ok"},
		{"a conditional GET answered 304", httpboot.Fetch{Client: node, Method: http.MethodGet, File: "shimx64.efi", Status: 304, Duration: 2 * time.Millisecond},
			ev("shimx64.efi", "not modified, 2ms"), "not_modified"},
		{"a cut transfer says why", httpboot.Fetch{Client: node, Method: http.MethodGet, File: "linux", Status: 200, Bytes: 65536, Size: 8 << 20, Err: fmt.Errorf("sent 65536 of 8388608 bytes: %w: broken pipe", httpboot.ErrShort)},
			ev("linux", "failed after 65536 bytes: sent 65536 of 8388608 bytes: body cut short: broken pipe"), "error"},
		{"an escape is an event", httpboot.Fetch{Client: node, Method: http.MethodGet, File: "escape", Status: 403, Err: fmt.Errorf("open: %w", bootpath.ErrAccess)},
			ev("escape", "failed after 0 bytes: open: access violation"), "error"},
		{"a HEAD moved no file", httpboot.Fetch{Client: node, Method: http.MethodHead, File: "boot.img", Status: 200, Size: 15 << 20}, nil, ""},
		{"a write attempt is no fetch", httpboot.Fetch{Client: node, Method: http.MethodPut, File: "x", Status: 405, Err: bootpath.ErrAccess}, nil, ""},
		{"shim's probes for missing files are not events", httpboot.Fetch{Client: node, Method: http.MethodGet, File: "revocations_sku.efi", Status: 404, Err: fmt.Errorf("x: %w", bootpath.ErrNotFound)}, nil, "not_found"},
		{"a host not in the inventory", httpboot.Fetch{Client: other, Method: http.MethodGet, File: "pxelinux.0", Status: 200}, nil, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			met := metrics.New()
			r := New(st, met, slog.New(slog.NewTextHandler(io.Discard, nil)))
			r.now = func() time.Time { return at }
			r.FetchDone(context.Background(), tt.f)
			if diff := cmp.Diff(tt.want, st.events); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			checkCounted(t, met, "http", tt.counted)
		})
	}
}

// checkCounted checks that met counted one transfer over protocol, with
// outcome (none when outcome is ""), and no other.
func checkCounted(t *testing.T, met *metrics.Metrics, protocol, outcome string) {
	t.Helper()
	rec := httptest.NewRecorder()
	met.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var got []string
	for l := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(l, "netbootd_boot_file_transfers_total{") && !strings.HasSuffix(l, " 0\n") {
			got = append(got, strings.TrimSpace(l))
		}
	}
	var want []string
	if outcome != "" {
		want = []string{fmt.Sprintf(`netbootd_boot_file_transfers_total{outcome=%q,protocol=%q} 1`, outcome, protocol)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counted (-want +got):\n%s", diff)
	}
}
