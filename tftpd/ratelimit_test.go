package tftpd

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLogLimiter(t *testing.T) {
	key := func(ip string) limitKey { return limitKey{netip.MustParseAddr(ip), "not_found"} }
	a, b, c := key("10.18.1.2"), key("10.18.1.3"), key("10.18.1.4")
	aOther := limitKey{a.client, "error"}
	type event struct {
		at   time.Duration // since the start
		key  limitKey
		ok   bool
		supp int
	}
	tests := []struct {
		name   string
		max    int
		events []event
	}{
		{"first line passes, repeats are counted", 10, []event{
			{0, a, true, 0},
			{time.Second, a, false, 0},
			{2 * time.Second, a, false, 0},
			{9 * time.Second, a, false, 0},
			{10 * time.Second, a, true, 3},
			{11 * time.Second, a, false, 0},
			{30 * time.Second, a, true, 1},
			{45 * time.Second, a, true, 0},
		}},
		{"outcomes of one client do not share a limit", 10, []event{
			{0, a, true, 0},
			{time.Second, aOther, true, 0},
			{2 * time.Second, a, false, 0},
			{3 * time.Second, aOther, false, 0},
		}},
		{"clients do not share a limit", 10, []event{
			{0, a, true, 0},
			{0, b, true, 0},
			{time.Second, a, false, 0},
			{time.Second, b, false, 0},
		}},
		{"a full table prunes old entries", 2, []event{
			{0, a, true, 0},
			{0, b, true, 0},
			{11 * time.Second, c, true, 0}, // a and b are old: pruned
			{12 * time.Second, a, true, 0}, // a starts afresh
		}},
		{"a full table of recent entries sends new clients to one shared key", 2, []event{
			{0, a, true, 0},
			{0, b, true, 0},
			{time.Second, c, true, 0}, // the overflow key's first line
			{2 * time.Second, key("10.18.1.5"), false, 0},
			{3 * time.Second, key("10.18.1.6"), false, 0},
			{4 * time.Second, a, false, 0}, // a still has its own entry
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			var now time.Time
			l := newLogLimiter(10*time.Second, tc.max)
			l.now = func() time.Time { return now }
			var got, want []event
			for _, e := range tc.events {
				now = start.Add(e.at)
				ok, supp := l.allow(e.key)
				got = append(got, event{e.at, e.key, ok, supp})
				want = append(want, e)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(event{}, limitKey{}), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if len(l.entries) > tc.max+1 {
				t.Errorf("%d entries, bound %d (+1 overflow)", len(l.entries), tc.max)
			}
		})
	}
}
