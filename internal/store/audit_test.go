package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAudit(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	entries := []AuditEntry{
		{At: base, Who: "127.0.0.1", Addr: "127.0.0.1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "node1-1.grid", Status: 200},
		{At: base.Add(time.Hour), Who: "ec1", Role: "operator", Addr: "10.0.0.9", Method: "GET", Route: "/pxe/setBootImageNS",
			Target: "node1-1.grid,node1-2.grid,node1-10.grid", Status: 200},
		{At: base.Add(2 * time.Hour), Who: "10.0.0.7", Addr: "10.0.0.7", Method: "DELETE", Route: "/api/v1/nodes/:hrn", Target: "node1-2.grid",
			Status: 401, Detail: "no token"},
		{At: base.Add(3 * time.Hour), Who: "admin", Role: "admin", Addr: "::1", Method: "PUT", Route: "/api/v1/images/:name", Target: "orbit-2.0.0", Status: 200},
	}
	for _, e := range entries {
		if err := s.AddAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	withIDs := func(idx ...int) []AuditEntry {
		out := []AuditEntry{}
		for _, i := range idx {
			e := entries[i]
			e.ID = int64(i + 1)
			out = append(out, e)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    AuditQuery
		want []AuditEntry
	}{
		{"all", AuditQuery{}, withIDs(0, 1, 2, 3)},
		{"since", AuditQuery{Since: base.Add(90 * time.Minute)}, withIDs(2, 3)},
		{"since is inclusive", AuditQuery{Since: base.Add(time.Hour)}, withIDs(1, 2, 3)},
		{"node alone and in a set", AuditQuery{Node: "node1-2.grid"}, withIDs(1, 2)},
		{"node first in a set", AuditQuery{Node: "node1-1.grid"}, withIDs(0, 1)},
		{"no prefix match", AuditQuery{Node: "node1-1"}, withIDs()},
		{"node and since", AuditQuery{Node: "node1-2.grid", Since: base.Add(90 * time.Minute)}, withIDs(2)},
		{"limit keeps the newest", AuditQuery{Limit: 2}, withIDs(2, 3)},
		{"nothing", AuditQuery{Since: base.Add(24 * time.Hour)}, withIDs()},
		{"image name", AuditQuery{Node: "orbit-2.0.0"}, withIDs(3)},
		{"no wildcard", AuditQuery{Node: "node1_1.grid"}, withIDs()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Audit(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Audit(%+v) (-want +got):\n%s", tc.q, diff)
			}
		})
	}

	n, err := s.PruneAudit(ctx, base.Add(90*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PruneAudit = %d, %v; want 2 deleted", n, err)
	}
	got, err := s.Audit(ctx, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(withIDs(2, 3), got); diff != "" {
		t.Errorf("after prune (-want +got):\n%s", diff)
	}
}

func BenchmarkAddAudit(b *testing.B) {
	s := openTest(b)
	e := AuditEntry{At: time.Now(), Who: "127.0.0.1", Addr: "127.0.0.1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "node1-1.grid", Status: 200}
	for b.Loop() {
		if err := s.AddAudit(b.Context(), e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAddAudits(t *testing.T) {
	s := openTest(t)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	batch := []AuditEntry{
		{At: at, Who: "a", Addr: "a", Method: "PUT", Route: "/r", Status: 200},
		{At: at, Who: "b", Addr: "b", Method: "DELETE", Route: "/r", Status: 404, Detail: "gone"},
	}
	if err := s.AddAudits(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.Audit(t.Context(), AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	batch[0].ID, batch[1].ID = 1, 2
	if diff := cmp.Diff(batch, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
