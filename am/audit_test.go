package am

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/guard"
	"github.com/orbit-lab/netboot/internal/apitoken"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/sourcelimit"
	"github.com/orbit-lab/netboot/internal/store"
)

// auditAdmin is the admin token auditServer's store holds.
const auditAdmin = "nbt_audit-test-admin"

// auditServer is an AM on the OMF fixture's store and links, with the
// audit on, limits, and the token guard: the store holds an admin token
// (auditAdmin), and OMF calls are admitted from 192.0.2.0/24.
func auditServer(t *testing.T, limits Limits) (*Server, *store.Store) {
	t.Helper()
	fx := newOMFFixture(t)
	if err := fx.st.CreateToken(t.Context(), store.Token{Name: "adm", Role: string(apierr.RoleAdmin), Created: time.Now()}, apitoken.Hash(auditAdmin)); err != nil {
		t.Fatal(err)
	}
	gd := guard.New(guard.Config{OMFAllow: append(guard.DefaultOMFAllow(), netip.MustParsePrefix("192.0.2.0/24"))}, fx.st)
	srv := New(Config{DefaultImage: fuzzDefaultImage, Audit: fx.st, Limits: limits, Guard: gd}, fx.st, fx.links, slog.New(slog.DiscardHandler))
	return srv, fx.st
}

// serve sends one request from src (host:port) to h.
func serve(h http.Handler, method, target, src, body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = src
	for k, vs := range header {
		req.Header[k] = vs
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func auditEntries(t *testing.T, st *store.Store) []store.AuditEntry {
	t.Helper()
	got, err := st.Audit(t.Context(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// ignoreTime leaves out what a test cannot know: the id and the time.
var ignoreTime = cmpopts.IgnoreFields(store.AuditEntry{}, "ID", "At")

func TestMutation(t *testing.T) {
	s, _ := auditServer(t, Limits{})
	for _, tc := range []struct {
		method, route string
		want          bool
	}{
		{"PUT", "/api/v1/nodes/:hrn/boot", true},
		{"DELETE", "/api/v1/nodes/:hrn", true},
		{"POST", "/api/v1/inventory", true},
		{"POST", "/api/v1/rc/enroll", true},
		{"GET", "/api/v1/nodes", false},
		{"HEAD", "/api/v1/disk-images/:name", false},
		{"GET", "/api/v1/audit", false},
		{"GET", "/api/v1/rc/poll", false},
		{"POST", "/api/v1/rc/commands/:id/report", false},
		{"GET", "/pxe/setBootImageNS", true},
		{"GET", "/pxe/clearBootImage", true},
		{"GET", "/cmc/reset", true},
		{"GET", "/cmc/on", true},
		{"GET", "/cmc/status", false},
		{"GET", "/inventory/getAllNodes", false},
		{"GET", "/inventory/getControlIP", false},
		{"GET", "/pxe", false},
		{"GET", "/boot/*path", false},
		{"POST", "", false}, // no route
	} {
		if got := s.mutation(tc.method, tc.route); got != tc.want {
			t.Errorf("mutation(%s %s) = %v, want %v", tc.method, tc.route, got, tc.want)
		}
	}
	// Every OMF method is classified in its table: none is left to chance.
	reads := 0
	for route, call := range s.omf {
		if call.method.readOnly {
			reads++
		} else if !strings.HasPrefix(route, "/pxe/") && !strings.HasPrefix(route, "/cmc/") {
			t.Errorf("%s changes state, but only /pxe and /cmc calls do", route)
		}
	}
	if reads != 10 {
		t.Errorf("%d read-only OMF calls, want the 9 inventory calls and cmc status", reads)
	}
}

// TestAuditRecords: through the AM's own router, mutations are recorded
// with their target and outcome, failures with their message; reads are
// not.
func TestAuditRecords(t *testing.T) {
	s, st := auditServer(t, Limits{})
	h := s.Handler()
	json := http.Header{"Content-Type": {"application/json"}}
	admin := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + auditAdmin}}
	for _, r := range []struct {
		method, target, body string
		status               int
	}{
		{"PUT", "/api/v1/nodes/node1-2/boot?domain=sb8", `{"image":"orbit-2.0.0"}`, 200},
		{"PUT", "/api/v1/nodes/node1-2/boot?domain=sb8", `{"image":`, 400},
		{"GET", "/api/v1/nodes", "", 200},
		{"GET", "/pxe/setBootImageNS?domain=sb8&ns=node1-1,node1-2&imgName=orbit-2.0.0", "", 200},
		{"GET", "/pxe/clearBootImageNS?domain=sb8&ns=node1-1,nosuch", "", 404},
		{"GET", "/inventory/getAllNodes", "", 200},
		{"GET", "/cmc/status?hrn=node1-1&domain=sb8", "", 0},
		{"DELETE", "/api/v1/nodes/nosuch.sb8", "", 404},
	} {
		hdr := json // OMF calls: admitted by their source address
		if strings.HasPrefix(r.target, "/api/") {
			hdr = admin
		}
		w := serve(h, r.method, r.target, "192.0.2.7:4000", r.body, hdr)
		if r.status != 0 && w.Code != r.status {
			t.Fatalf("%s %s = %d %s, want %d", r.method, r.target, w.Code, w.Body, r.status)
		}
	}
	want := []store.AuditEntry{
		{Who: "adm", Role: "admin", Addr: "192.0.2.7", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "node1-2.sb8.orbit-lab.org", Status: 200},
		{Who: "adm", Role: "admin", Addr: "192.0.2.7", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "node1-2", Status: 400,
			Detail: "request body: unexpected EOF"},
		{Who: "192.0.2.7", Addr: "192.0.2.7", Method: "GET", Route: "/pxe/setBootImageNS",
			Target: "node1-1.sb8.orbit-lab.org,node1-2.sb8.orbit-lab.org", Status: 200},
		{Who: "192.0.2.7", Addr: "192.0.2.7", Method: "GET", Route: "/pxe/clearBootImageNS", Target: "node1-1,nosuch", Status: 404,
			Detail: `unknown node(s) in domain "sb8": nosuch: not found`},
		{Who: "adm", Role: "admin", Addr: "192.0.2.7", Method: "DELETE", Route: "/api/v1/nodes/:hrn", Target: "nosuch.sb8", Status: 404,
			Detail: `node "nosuch.sb8": not found`},
	}
	got := auditEntries(t, st)
	if diff := cmp.Diff(want, got, ignoreTime); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if time.Since(e.At) > time.Minute || e.At.After(time.Now()) {
			t.Errorf("entry %d at %v, want about now", e.ID, e.At)
		}
	}
}

// fakeGuard stands in for the token guard: no token is a 401, a token of
// too low a role a 403, each with the caller recorded as the guard does.
func fakeGuard(c *gin.Context) {
	switch tok := c.GetHeader("Authorization"); tok {
	case "":
		apierr.SetCaller(c, apierr.Caller{Addr: peer.Name(c.Request)})
		apierr.Write(c, apierr.New(http.StatusUnauthorized, "no token"))
	case "Bearer viewer":
		apierr.SetCaller(c, apierr.Caller{Name: "v1", Role: apierr.RoleViewer, Addr: peer.Name(c.Request)})
		apierr.Write(c, apierr.New(http.StatusForbidden, "viewer may not"))
	default:
		apierr.SetCaller(c, apierr.Caller{Name: "ops", Role: apierr.RoleOperator, Addr: peer.Name(c.Request)})
	}
}

// TestAuditRefusals: the audit and the limits around a guard, in the
// order am.New puts them: refusals are recorded with who was refused,
// reads are not, and a source over the failed-authentication limit gets
// 429 before the guard runs, while another source still reaches it.
func TestAuditRefusals(t *testing.T) {
	s, st := auditServer(t, Limits{AuthFail: sourcelimit.Limit{PerMinute: 1, Burst: 2}})
	r := gin.New()
	guarded := 0
	r.Use(s.audit, s.limit, func(c *gin.Context) { guarded++; fakeGuard(c) })
	r.PUT("/api/v1/nodes/:hrn/boot", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	r.GET("/api/v1/nodes", func(c *gin.Context) { c.Status(http.StatusOK) })

	steps := []struct {
		method, path, src, token string
		status                   int
	}{
		{"PUT", "/api/v1/nodes/n1/boot", "192.0.2.1:1", "", 401},
		{"PUT", "/api/v1/nodes/n1/boot", "192.0.2.1:1", "viewer", 403},
		{"PUT", "/api/v1/nodes/n1/boot", "192.0.2.1:1", "ops", 204},
		{"GET", "/api/v1/nodes", "192.0.2.1:1", "", 401},             // a read: counted, not audited
		{"PUT", "/api/v1/nodes/n2/boot", "192.0.2.1:1", "ops", 429},  // over the limit, whatever the token
		{"GET", "/api/v1/nodes", "192.0.2.1:1", "ops", 429},          // reads too
		{"PUT", "/api/v1/nodes/n2/boot", "[2001:db8::1]:1", "", 401}, // another source is unaffected
	}
	for i, st := range steps {
		h := http.Header{}
		if st.token != "" {
			h.Set("Authorization", "Bearer "+st.token)
		}
		w := serve(r, st.method, st.path, st.src, "", h)
		if w.Code != st.status {
			t.Fatalf("step %d: %s %s from %s = %d %s, want %d", i, st.method, st.path, st.src, w.Code, w.Body, st.status)
		}
		if ra := w.Header().Get("Retry-After"); (st.status == 429) != (ra != "") {
			t.Errorf("step %d: Retry-After %q with status %d", i, ra, w.Code)
		}
	}
	if guarded != 5 {
		t.Errorf("the guard ran %d times, want 5: never for a source over the limit", guarded)
	}
	want := []store.AuditEntry{
		{Who: "192.0.2.1", Addr: "192.0.2.1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "n1", Status: 401, Detail: "no token"},
		{Who: "v1", Role: "viewer", Addr: "192.0.2.1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "n1", Status: 403, Detail: "viewer may not"},
		{Who: "ops", Role: "operator", Addr: "192.0.2.1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "n1", Status: 204},
		{Who: "192.0.2.1", Addr: "192.0.2.1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "n2", Status: 429,
			Detail: "too many failed authentications from 192.0.2.1: try again in 60 s"},
		{Who: "2001:db8::1", Addr: "2001:db8::1", Method: "PUT", Route: "/api/v1/nodes/:hrn/boot", Target: "n2", Status: 401, Detail: "no token"},
	}
	if diff := cmp.Diff(want, auditEntries(t, st), ignoreTime); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

// TestOMFLimit: an OMF flood from one source is refused in the service's
// own XML, with Retry-After; another source goes on.
func TestOMFLimit(t *testing.T) {
	s, st := auditServer(t, Limits{OMF: sourcelimit.Limit{PerMinute: 6, Burst: 3}})
	h := s.Handler()
	for i := range 3 {
		if w := serve(h, "GET", "/inventory/getAllTestbeds", "192.0.2.9:1", "", nil); w.Code != 200 {
			t.Fatalf("call %d = %d %s, want 200 within the burst", i, w.Code, w.Body)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"/inventory/getAllTestbeds", "<ALLTESTBEDS><ERROR>getAllTestbeds: too many OMF calls from 192.0.2.9: try again in 10 s</ERROR></ALLTESTBEDS>"},
		{"/pxe/setBootImageNS?domain=sb8&ns=node1-1", "<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: too many OMF calls from 192.0.2.9: try again in 10 s</action></response>"},
		{"/cmc/reset?hrn=node1-1&domain=sb8", "<ERROR>reset: too many OMF calls from 192.0.2.9: try again in 10 s</ERROR>"},
	} {
		w := serve(h, "GET", tc.path, "192.0.2.9:1", "", nil)
		if w.Code != http.StatusTooManyRequests || w.Body.String() != tc.want || w.Header().Get("Retry-After") != "10" {
			t.Errorf("%s = %d %q Retry-After %q; want 429 %q, 10", tc.path, w.Code, w.Body, w.Header().Get("Retry-After"), tc.want)
		}
	}
	if w := serve(h, "GET", "/inventory/getAllTestbeds", "192.0.2.10:1", "", nil); w.Code != 200 {
		t.Errorf("another source = %d %s, want 200", w.Code, w.Body)
	}
	// The refused mutations are on record; the refused read is not.
	var routes []string
	for _, e := range auditEntries(t, st) {
		routes = append(routes, e.Route+" "+http.StatusText(e.Status))
	}
	if want := []string{"/pxe/setBootImageNS Too Many Requests", "/cmc/reset Too Many Requests"}; !cmp.Equal(want, routes) {
		t.Errorf("audit routes = %q, want %q", routes, want)
	}
}

func TestAuditQuery(t *testing.T) {
	now := time.Date(2026, 5, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		query   string
		want    store.AuditQuery
		wantErr string
	}{
		{"", store.AuditQuery{}, ""},
		{"since=24h", store.AuditQuery{Since: now.Add(-24 * time.Hour)}, ""},
		{"since=2026-05-01T10:00:00Z&node=node1-1.sb8&limit=5", store.AuditQuery{Since: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), Node: "node1-1.sb8", Limit: 5}, ""},
		{"since=yesterday", store.AuditQuery{}, `since: "yesterday": want an RFC 3339 time`},
		{"since=-5m", store.AuditQuery{}, `since: "-5m"`},
		{"limit=0", store.AuditQuery{}, `limit: "0": want a number from 1 to 10000`},
		{"limit=x", store.AuditQuery{}, `limit: "x"`},
		{"node=a%20b", store.AuditQuery{}, `node: "a b" is not a valid name`},
	} {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("GET", "/api/v1/audit?"+tc.query, nil)
		got, err := auditQuery(c, now)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || apierr.Status(err) != http.StatusBadRequest {
				t.Errorf("%q: error %v, want a 400 with %q", tc.query, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.query, err)
		case !cmp.Equal(tc.want, got):
			t.Errorf("%q: got %+v, want %+v", tc.query, got, tc.want)
		}
	}
}

// TestKeepAudit: entries past the retention go at start; the rest stay.
func TestKeepAudit(t *testing.T) {
	fx := newOMFFixture(t)
	s := New(Config{Audit: fx.st, AuditRetention: time.Hour, Guard: guard.New(guard.Config{}, fx.st)}, fx.st, fx.links, slog.New(slog.DiscardHandler))
	now := time.Now()
	for _, at := range []time.Time{now.Add(-2 * time.Hour), now.Add(-59 * time.Minute), now} {
		if err := fx.st.AddAudit(t.Context(), store.AuditEntry{At: at, Who: "x", Addr: "x", Method: "PUT", Route: "/r", Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.KeepAudit(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(auditEntries(t, fx.st)) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("KeepAudit = %v, want nil once its context is done", err)
	}
	got := auditEntries(t, fx.st)
	if len(got) != 2 || got[0].ID != 2 {
		t.Errorf("after pruning to 1h: %+v, want entries 2 and 3", got)
	}
}

// batchLog is an AuditLog that records its batches and holds each write
// until the test releases it.
type batchLog struct {
	AuditLog
	entered chan int   // a batch's size, as its write starts
	release chan error // what the write returns
}

func (l *batchLog) AddAudits(_ context.Context, entries []store.AuditEntry) error {
	l.entered <- len(entries)
	return <-l.release
}

// TestAuditBatcher: entries that come while a write runs wait for it and
// go together in the next one; each request learns its own batch's outcome.
func TestAuditBatcher(t *testing.T) {
	var b auditBatcher
	log := &batchLog{entered: make(chan int), release: make(chan error)}
	results := make(chan error, 6)
	add := func(who string) {
		go func() { results <- b.add(t.Context(), log, store.AuditEntry{Who: who}) }()
	}
	add("first")
	if n := <-log.entered; n != 1 {
		t.Fatalf("first batch of %d, want 1", n)
	}
	for i := range 5 {
		add(fmt.Sprint(i))
	}
	for { // all five queued behind the running write
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n == 5 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	failed := errors.New("disk full")
	log.release <- failed
	if err := <-results; !errors.Is(err, failed) {
		t.Errorf("first add = %v, want its batch's error", err)
	}
	if n := <-log.entered; n != 5 {
		t.Errorf("second batch of %d, want the 5 that waited", n)
	}
	log.release <- nil
	for range 5 {
		if err := <-results; err != nil {
			t.Errorf("add in the second batch = %v, want nil", err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.writing || len(b.pending) != 0 {
		t.Errorf("after all writes: writing %v, %d pending", b.writing, len(b.pending))
	}
}

// BenchmarkAuditCost: a boot link set and cleared through the AM's router
// by parallel clients, without and with the audit, to measure what the
// audit adds to a mutation.
func BenchmarkAuditCost(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			fx := newOMFFixture(b)
			cfg := Config{DefaultImage: fuzzDefaultImage}
			if on {
				cfg.Audit = fx.st
			}
			h := New(cfg, fx.st, fx.links, slog.New(slog.DiscardHandler)).Handler()
			hdr := http.Header{"Content-Type": {"application/json"}}
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if w := serve(h, "PUT", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/boot", "192.0.2.1:1", `{"image":"orbit-2.0.0"}`, hdr); w.Code != 200 {
						b.Fatalf("set = %d %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
