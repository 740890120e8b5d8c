package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// pool10 is 10.0.0.10-10.0.0.13 with 10.0.0.11 reserved by node a.sb8.
func pool10(t *testing.T) (*Store, LeaseRequest) {
	t.Helper()
	s := openTest(t)
	if err := s.Import(context.Background(), file("sb8", node("a.sb8", "10.0.0.11", "00:00:00:00:00:aa"))); err != nil {
		t.Fatal(err)
	}
	return s, LeaseRequest{First: addr("10.0.0.10"), Last: addr("10.0.0.13"), Exclude: []netip.Addr{addr("10.0.0.12")}, Now: t0, Hold: time.Minute}
}

func TestOfferLease(t *testing.T) {
	type step struct {
		mac    string
		want   string        // option 50
		after  time.Duration // since t0
		wantIP string        // "" means ErrPoolExhausted
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"lowest free, skipping excluded and reserved", []step{
			{mac: "m1", wantIP: "10.0.0.10"}, {mac: "m2", wantIP: "10.0.0.13"}, {mac: "m3", wantIP: ""}}},
		{"same MAC gets its address again", []step{
			{mac: "m1", wantIP: "10.0.0.10"}, {mac: "m2", wantIP: "10.0.0.13"}, {mac: "m1", wantIP: "10.0.0.10"}}},
		{"requested address honoured when free", []step{{mac: "m1", want: "10.0.0.13", wantIP: "10.0.0.13"}}},
		{"requested reservation refused", []step{{mac: "m1", want: "10.0.0.11", wantIP: "10.0.0.10"}}},
		{"requested excluded refused", []step{{mac: "m1", want: "10.0.0.12", wantIP: "10.0.0.10"}}},
		{"requested outside pool refused", []step{{mac: "m1", want: "10.0.0.99", wantIP: "10.0.0.10"}}},
		{"requested taken refused", []step{{mac: "m1", wantIP: "10.0.0.10"}, {mac: "m2", want: "10.0.0.10", wantIP: "10.0.0.13"}}},
		{"expired offer is taken over", []step{
			{mac: "m1", wantIP: "10.0.0.10"}, {mac: "m2", wantIP: "10.0.0.13"},
			{mac: "m3", after: 2 * time.Minute, wantIP: "10.0.0.10"}}},
		{"oldest expired goes first", []step{
			{mac: "m1", wantIP: "10.0.0.10"}, {mac: "m2", after: 30 * time.Second, wantIP: "10.0.0.13"},
			{mac: "m3", after: 2 * time.Minute, wantIP: "10.0.0.10"}, {mac: "m4", after: 2 * time.Minute, wantIP: "10.0.0.13"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			s, r := pool10(t)
			for i, st := range tt.steps {
				r.MAC, r.Now, r.Want = st.mac, t0.Add(st.after), netip.Addr{}
				if st.want != "" {
					r.Want = addr(st.want)
				}
				l, err := s.OfferLease(ctx, r)
				if st.wantIP == "" {
					if !errors.Is(err, ErrPoolExhausted) {
						t.Fatalf("step %d: OfferLease = %v, %v; want ErrPoolExhausted", i, l, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				want := Lease{IP: addr(st.wantIP), MAC: st.mac, State: LeaseOffered, ExpiresAt: r.Now.Add(time.Minute), UpdatedAt: r.Now}
				if diff := cmp.Diff(want, l, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
					t.Fatalf("step %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestBindReleaseDecline(t *testing.T) {
	ctx := context.Background()
	s, r := pool10(t)
	r.MAC = "m1"
	if _, err := s.OfferLease(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Another MAC cannot bind m1's offer, nor a reservation.
	if _, err := s.BindLease(ctx, "m2", addr("10.0.0.10"), t0, time.Hour); !errors.Is(err, ErrConflict) {
		t.Errorf("bind of another's offer: %v, want ErrConflict", err)
	}
	if _, err := s.BindLease(ctx, "m2", addr("10.0.0.11"), t0, time.Hour); !errors.Is(err, ErrConflict) {
		t.Errorf("bind of a reservation: %v, want ErrConflict", err)
	}
	l, err := s.BindLease(ctx, "m1", addr("10.0.0.10"), t0.Add(time.Second), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if l.State != LeaseBound || !l.ExpiresAt.Equal(t0.Add(time.Hour+time.Second)) {
		t.Errorf("bound lease = %+v", l)
	}
	// A new DISCOVER of a bound client keeps the lease as it is.
	r.Now = t0.Add(2 * time.Second)
	if l, err := s.OfferLease(ctx, r); err != nil || l.State != LeaseBound || !l.ExpiresAt.Equal(t0.Add(time.Hour+time.Second)) {
		t.Errorf("re-offer of a bound lease = %+v, %v", l, err)
	}
	// RELEASE by someone else is ignored; by the holder frees it.
	if err := s.ReleaseLease(ctx, "m2", addr("10.0.0.10"), t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindLease(ctx, "m2", addr("10.0.0.10"), t0.Add(4*time.Second), time.Hour); !errors.Is(err, ErrConflict) {
		t.Errorf("bind after a foreign release: %v, want ErrConflict", err)
	}
	if err := s.ReleaseLease(ctx, "m1", addr("10.0.0.10"), t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if l, err := s.LeaseByMAC(ctx, "m1"); err != nil || l.State != LeaseReleased {
		t.Errorf("after release: %+v, %v", l, err)
	}
	if _, err := s.BindLease(ctx, "m2", addr("10.0.0.10"), t0.Add(6*time.Second), time.Hour); err != nil {
		t.Errorf("bind of a released address: %v", err)
	}
	// m2 declines it: nobody is offered it until the hold ends.
	if err := s.DeclineLease(ctx, "m2", addr("10.0.0.10"), t0.Add(7*time.Second), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaseByMAC(ctx, "m2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("decliner still holds a lease: %v", err)
	}
	r.MAC, r.Now = "m3", t0.Add(8*time.Second)
	if l, err := s.OfferLease(ctx, r); err != nil || l.IP != addr("10.0.0.13") {
		t.Errorf("offer beside a declined address = %+v, %v; want 10.0.0.13", l, err)
	}
	if _, err := s.BindLease(ctx, "m3", addr("10.0.0.13"), t0.Add(8*time.Second), 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	r.MAC, r.Now = "m4", t0.Add(9*time.Second)
	if _, err := s.OfferLease(ctx, r); !errors.Is(err, ErrPoolExhausted) {
		t.Errorf("declined address offered: %v", err)
	}
	r.Now = t0.Add(2 * time.Hour)
	if l, err := s.OfferLease(ctx, r); err != nil || l.IP != addr("10.0.0.10") {
		t.Errorf("after the decline hold = %+v, %v; want 10.0.0.10", l, err)
	}
	leases, err := s.Leases(ctx)
	if err != nil || len(leases) != 2 {
		t.Errorf("Leases = %+v, %v", leases, err)
	}
}

func TestLeaseMovesOffReservation(t *testing.T) {
	ctx := context.Background()
	s, r := pool10(t)
	r.MAC = "m1"
	if _, err := s.BindLease(ctx, "m1", addr("10.0.0.13"), t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The operator gives 10.0.0.13 to a node: the client's lease must move.
	b := node("b.sb8", "10.0.0.13", "00:00:00:00:00:bb")
	b.Domain = "sb8"
	if _, err := s.PutNode(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindLease(ctx, "m1", addr("10.0.0.13"), t0.Add(time.Minute), time.Hour); !errors.Is(err, ErrConflict) {
		t.Errorf("renewal of a now reserved address: %v, want ErrConflict", err)
	}
	if l, err := s.OfferLease(ctx, r); err != nil || l.IP != addr("10.0.0.10") {
		t.Errorf("offer = %+v, %v; want 10.0.0.10", l, err)
	}
}

func TestLeasesSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDir(t, dir)
	if _, err := s.BindLease(ctx, "m1", addr("10.0.0.10"), t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	l, err := s.LeaseByMAC(ctx, "m1")
	if err != nil || l.IP != addr("10.0.0.10") || l.State != LeaseBound {
		t.Errorf("after reopen: %+v, %v", l, err)
	}
}

func TestDiscovered(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.Import(ctx, file("sb8", node("a.sb8", "10.0.0.11", "00:00:00:00:00:aa"))); err != nil {
		t.Fatal(err)
	}
	err := s.RecordDiscovered(ctx, []Sighting{
		{MAC: "52:54:00:00:00:01", First: t0, Last: t0.Add(time.Second), Count: 2, VendorClass: "PXEClient:Arch:00000:UNDI:002001"},
		{MAC: "00:00:00:00:00:aa", First: t0, Last: t0, Count: 1}, // in the inventory: never listed
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.RecordDiscovered(ctx, []Sighting{
		{MAC: "52:54:00:00:00:01", First: t0.Add(time.Minute), Last: t0.Add(time.Minute), Count: 3, IP: "10.0.0.10", Relay: "10.19.0.1"},
		{MAC: "52:54:00:00:00:02", First: t0.Add(time.Second), Last: t0.Add(time.Second), Count: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Discovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Discovered{
		{MAC: "52:54:00:00:00:01", FirstSeen: t0, LastSeen: t0.Add(time.Minute), Count: 5, LastIP: "10.0.0.10",
			VendorClass: "PXEClient:Arch:00000:UNDI:002001", Relay: "10.19.0.1"},
		{MAC: "52:54:00:00:00:02", FirstSeen: t0.Add(time.Second), LastSeen: t0.Add(time.Second), Count: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discovered (-want +got):\n%s", diff)
	}
}

func TestDiscoveredIsBounded(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var batch []Sighting
	for i := range DiscoveredMax + 5 {
		at := t0.Add(time.Duration(i) * time.Second)
		batch = append(batch, Sighting{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), First: at, Last: at, Count: 1})
	}
	if err := s.RecordDiscovered(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.Discovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != DiscoveredMax {
		t.Fatalf("%d rows, want %d", len(got), DiscoveredMax)
	}
	if got[len(got)-1].MAC != "02:00:00:00:00:05" {
		t.Errorf("oldest kept = %s, want the 6th seen", got[len(got)-1].MAC)
	}
}

func TestAddEventsTrims(t *testing.T) {
	// One batch bringing a node trimEvery or more events always trims it.
	ctx := context.Background()
	s := openTest(t)
	var batch []Event
	for i := range EventsPerNode + 10 {
		batch = append(batch, Event{HRN: "a.sb8", At: t0.Add(time.Duration(i)), Source: "dhcp", What: "DHCPACK", Detail: fmt.Sprint(i)})
	}
	batch = append(batch, Event{HRN: "b.sb8", At: t0, Source: "dhcp", What: "DHCPOFFER"})
	if err := s.AddEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	a, err := s.Events(ctx, "a.sb8")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != EventsPerNode || a[0].Detail != "10" || a[len(a)-1].Detail != fmt.Sprint(EventsPerNode+9) {
		t.Errorf("a.sb8: %d events, first %q last %q", len(a), a[0].Detail, a[len(a)-1].Detail)
	}
	if b, _ := s.Events(ctx, "b.sb8"); len(b) != 1 || b[0].What != "DHCPOFFER" {
		t.Errorf("b.sb8 events = %+v", b)
	}
}

// TestEventsAfter: the cursor of a follower: the node's events after the
// one named, oldest first, never another node's (b.sb8's are interleaved).
func TestEventsAfter(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var batch []Event
	for i := range EventsPerNode + 20 {
		batch = append(batch, Event{HRN: "a.sb8", At: t0.Add(time.Duration(i)), Source: "dhcp", What: "DHCPACK", Detail: fmt.Sprint(i)})
		if i%100 == 0 {
			batch = append(batch, Event{HRN: "b.sb8", At: t0, Source: "dhcp", What: "DHCPOFFER"})
		}
	}
	if err := s.AddEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	all, err := s.EventsAfter(ctx, "a.sb8", 0)
	if err != nil || len(all) != EventsPerNode {
		t.Fatalf("after 0: %d events, %v", len(all), err)
	}
	tests := []struct {
		name        string
		after       int64
		first, last string // Detail of the first and last event answered; "" for none
		n           int
	}{
		{"after the first kept: the rest", all[0].ID, all[1].Detail, all[len(all)-1].Detail, EventsPerNode - 1},
		{"after the tenth from the end", all[len(all)-10].ID, all[len(all)-9].Detail, all[len(all)-1].Detail, 9},
		{"after the last: none", all[len(all)-1].ID, "", "", 0},
		{"after an ID older than the timeline kept: all of it", 1, all[0].Detail, all[len(all)-1].Detail, EventsPerNode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.EventsAfter(ctx, "a.sb8", tc.after)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range got {
				if e.HRN != "a.sb8" || e.ID <= tc.after || (i > 0 && e.ID <= got[i-1].ID) {
					t.Fatalf("event %d = %+v: want a.sb8's, after %d, oldest first", i, e, tc.after)
				}
			}
			if len(got) != tc.n {
				t.Fatalf("%d events, want %d", len(got), tc.n)
			}
			if tc.n > 0 && (got[0].Detail != tc.first || got[len(got)-1].Detail != tc.last) {
				t.Errorf("first %q last %q, want %q %q", got[0].Detail, got[len(got)-1].Detail, tc.first, tc.last)
			}
		})
	}
}

func TestNodeFinderFollowsInventory(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	a := node("a.sb8", "10.0.0.1", "00:00:00:00:00:01")
	a.Domain = "sb8"
	if _, err := s.PutNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	f, err := s.NewNodeFinder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := t0
	f.now = func() time.Time { return now }
	lookup := func() string {
		n, err := f.NodeByMAC(ctx, "00:00:00:00:00:01")
		if errors.Is(err, ErrNotFound) {
			return "not found"
		}
		if err != nil {
			t.Fatal(err)
		}
		return n.HRN + " " + n.ControlIP + " " + n.Domain
	}
	want := func(w string) {
		t.Helper()
		if got := lookup(); got != w {
			t.Errorf("NodeByMAC = %q, want %q", got, w)
		}
	}
	want("a.sb8 10.0.0.1 sb8")
	if _, err := f.NodeByMAC(ctx, "00:00:00:00:00:99"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown MAC: %v", err)
	}
	a.ControlIP = "10.0.0.7"
	if _, err := s.PutNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	want("a.sb8 10.0.0.1 sb8") // within NodeFinderMaxStale: the cache
	now = now.Add(NodeFinderMaxStale)
	want("a.sb8 10.0.0.7 sb8")
	if err := s.Import(ctx, file("grid", node("a.sb8", "10.0.0.8", "00:00:00:00:00:01"))); err != nil {
		t.Fatal(err)
	}
	now = now.Add(NodeFinderMaxStale)
	want("a.sb8 10.0.0.8 grid")
	if err := s.DeleteNode(ctx, "a.sb8"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(NodeFinderMaxStale)
	want("not found")
	// And it agrees with Store.NodeByMAC.
	if _, err := s.NodeByMAC(ctx, "00:00:00:00:00:01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Store.NodeByMAC: %v", err)
	}
}

func TestAddEventsKeepsOrderAndBound(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	// Many small batches, 70 rows each (two full multi-row INSERTs and a
	// remainder), a few events per node per batch: trimmed now and then.
	for b := range 100 {
		var batch []Event
		for i := range 70 {
			batch = append(batch, Event{HRN: fmt.Sprintf("n%d", i%10), At: t0.Add(time.Duration(b*70 + i)), Source: "dhcp", What: "DHCPACK", Detail: fmt.Sprint(b*70 + i)})
		}
		if err := s.AddEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	ev := keptEvents(ctx, t, s, "n3")
	for i := 1; i < len(ev); i++ {
		if ev[i].At.Before(ev[i-1].At) || ev[i].ID <= ev[i-1].ID {
			t.Fatalf("out of order at %d: %+v %+v", i, ev[i-1], ev[i])
		}
	}
	if last := ev[len(ev)-1].Detail; last != fmt.Sprint(99*70+63) {
		t.Errorf("newest event %q", last)
	}
	if rows := storedEvents(ctx, t, s, "n3"); rows < EventsPerNode {
		t.Errorf("%d rows stored for one node: trimmed below %d", rows, EventsPerNode)
	}
	// A batch that brings a node trimEvery events always trims it. (Smaller
	// ones trim at random, 1 in trimEvery: how many rows are left before
	// this depends on when the last one did.)
	var force []Event
	for i := range trimEvery {
		force = append(force, Event{HRN: "n3", At: t0.Add(time.Hour + time.Duration(i)), Source: "dhcp", What: "DHCPACK"})
	}
	if err := s.AddEvents(ctx, force); err != nil {
		t.Fatal(err)
	}
	if rows := storedEvents(ctx, t, s, "n3"); rows != EventsPerNode {
		t.Errorf("%d rows stored for one node after a full batch, want %d", rows, EventsPerNode)
	}
}

// storedEvents counts a node's rows in the table, trimmed or not yet.
func storedEvents(ctx context.Context, t *testing.T, s *Store, hrn string) int {
	t.Helper()
	var rows int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE hrn = ?`, hrn).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}
