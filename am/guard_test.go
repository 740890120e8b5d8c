package am

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/guard"
	"github.com/orbit-lab/netboot/am/httpboot"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/am/webui"
	"github.com/orbit-lab/netboot/internal/apitoken"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/internal/store"
)

// guarded is an AM wired as netbootd wires it (RC broker, boot files,
// iPXE scripts, guard), on a real store and cfg_dir, served on loopback.
type guarded struct {
	srv    *Server
	guard  *guard.Guard
	st     *store.Store
	links  *pxelink.Manager
	cfgDir string
	images string // the disk images' directory
	url    string
	tokens map[apierr.Role]string // a token of each operator role
}

func newGuarded(t *testing.T) *guarded {
	return newGuardedWith(t, guard.Config{OMFAllow: guard.DefaultOMFAllow()})
}

func newGuardedWith(t *testing.T, gc guard.Config) *guarded {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv, err := inventory.ParseFile([]byte(fuzzInventory))
	if err == nil {
		err = st.Import(ctx, inv)
	}
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "tftpboot")
	cfgDir := filepath.Join(root, "pxelinux.cfg")
	log := slog.New(slog.DiscardHandler)
	links, err := pxelink.New(pxelink.Config{Dir: cfgDir, Lifetime: time.Hour}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []string{"orbit-2.0.0", "orbit-2.0.1"} {
		if err := os.WriteFile(filepath.Join(cfgDir, img), []byte("DEFAULT x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := links.Set(ctx, []pxelink.Target{{HRN: "node1-2.sb8.orbit-lab.org", IP: "10.18.1.2", Image: "orbit-2.0.1"}}, 0); err != nil {
		t.Fatal(err)
	}
	g := &guarded{st: st, links: links, cfgDir: cfgDir, images: filepath.Join(dir, "images"), tokens: map[apierr.Role]string{}}
	rcb, err := rcbroker.New(rcbroker.Config{ImageDir: g.images}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := httpboot.New(httpboot.Config{Root: root, Prefix: "/boot/"}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.guard = guard.New(gc, st)
	gin.SetMode(gin.ReleaseMode)
	g.srv = New(Config{DefaultImage: "orbit-2.0.0", Guard: g.guard, RC: rcb, BootFiles: boot, UI: webui.New(webui.Config{}, st, log),
		IPXE: IPXEConfig{Root: root, Prefix: "/boot/"}, Metrics: metrics.New()}, st, links, log)
	hs := httptest.NewServer(g.srv.Handler())
	t.Cleanup(hs.Close)
	g.url = hs.URL
	for _, r := range []apierr.Role{apierr.RoleViewer, apierr.RoleOperator, apierr.RoleAdmin} {
		tok, hash, err := apitoken.New()
		if err == nil {
			err = st.CreateToken(ctx, store.Token{Name: "t-" + string(r), Role: string(r), Created: time.Now()}, hash)
		}
		if err != nil {
			t.Fatal(err)
		}
		g.tokens[r] = tok
	}
	return g
}

// call sends one request with token as the bearer ("" for none).
func (g *guarded) call(t *testing.T, method, path, body, token string) (int, http.Header, string) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	r := apptest.Call(t, method, g.url+path, body, h)
	return r.Status, r.Header, r.Body
}

// state is everything a refused call must leave as it was: the inventory,
// the boot links (database and cfg_dir), the tokens, the disk images and
// the RC commands.
func (g *guarded) state(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	f, err := g.st.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b.Write(doc)
	recorded, err := g.links.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range recorded {
		fmt.Fprintf(&b, "link %s %s %s %d\n", l.HRN, l.Hex, l.Image, l.ExpiresAt.UnixNano())
	}
	entries, _ := os.ReadDir(g.cfgDir)
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(g.cfgDir, e.Name()))
		fmt.Fprintf(&b, "cfg %s -> %s\n", e.Name(), target)
	}
	tokens, err := g.st.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tokens {
		fmt.Fprintf(&b, "token %s %s %v\n", tk.Name, tk.Role, tk.Active(time.Now()))
	}
	images, _ := os.ReadDir(g.images)
	for _, e := range images {
		fmt.Fprintf(&b, "image %s\n", e.Name())
	}
	cmds, err := g.st.RCCommands(ctx, "node1-1.sb8.orbit-lab.org", 100)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "commands %d\n", len(cmds))
	return b.String()
}

// TestRoutesDeclareRoles walks gin's route list: every route went through
// apierr.Register, so declared a role, and the role fits the route.
func TestRoutesDeclareRoles(t *testing.T) {
	g := newGuarded(t)
	declared := g.guard.Roles()
	routes := g.srv.Handler().(*gin.Engine).Routes()
	if len(routes) < 40 {
		t.Fatalf("%d routes: the AM is not wired as netbootd wires it", len(routes))
	}
	for _, r := range routes {
		key := r.Method + " " + r.Path
		role, ok := declared[key]
		switch {
		case !ok:
			t.Errorf("%s: no declared role (register it with apierr.Register)", key)
		case strings.HasPrefix(r.Path, "/api/v1/") && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			role != apierr.RoleViewer && role != apierr.RoleNode && !strings.HasPrefix(r.Path, "/api/v1/tokens"):
			t.Errorf("%s: role %s; an API read is viewer's", key, role)
		case strings.HasPrefix(r.Path, "/api/v1/") && role.Rank() == 0 && role != apierr.RoleNode:
			t.Errorf("%s: role %s; an API call is viewer's, operator's, admin's or the RC's", key, role)
		}
	}
	if len(declared) != len(routes) {
		t.Errorf("%d roles declared for %d routes", len(declared), len(routes))
	}
}

// mutatingBodies are, per route, a body the call would succeed with: a
// refusal must not be for a bad body.
var mutatingBodies = map[string]string{
	"PUT /api/v1/nodes/:hrn":           `{"domain":"sb8","hostname":"node1-1","control_ip":"10.18.1.1","control_mac":"00:03:1d:0c:01:01","disk":"/dev/sdb"}`,
	"PUT /api/v1/nodes/:hrn/boot":      `{"image":"orbit-2.0.0"}`,
	"POST /api/v1/nodes/:hrn/power":    `{"action":"on"}`,
	"PUT /api/v1/images/:name":         `{"description":"changed"}`,
	"POST /api/v1/inventory":           "images:\n  - { name: other }\n",
	"POST /api/v1/tokens":              `{"name":"intruder","role":"admin"}`,
	"POST /api/v1/nodes/:hrn/commands": `{"type":"REBOOT"}`,
}

// TestMutatingRoutesRefuse: each mutating API route refuses no token and
// a bad one (401), and a token of a lower role (403), and changes nothing;
// a token of its role gets past the guard.
func TestMutatingRoutesRefuse(t *testing.T) {
	g := newGuarded(t)
	declared := g.guard.Roles()
	keys := make([]string, 0, len(declared))
	for k := range declared {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lower := map[apierr.Role]apierr.Role{apierr.RoleOperator: apierr.RoleViewer, apierr.RoleAdmin: apierr.RoleOperator}
	ctx := context.Background()
	_, victim, err := apitoken.New()
	if err == nil {
		err = g.st.CreateToken(ctx, store.Token{Name: "victim", Role: "viewer", Created: time.Now()}, victim)
	}
	if err != nil {
		t.Fatal(err)
	}
	revoked, hash, err := apitoken.New()
	if err == nil {
		err = g.st.CreateToken(ctx, store.Token{Name: "gone", Role: "admin", Created: time.Now()}, hash)
	}
	if err == nil {
		err = g.st.RevokeToken(ctx, "gone", time.Now())
	}
	if err != nil {
		t.Fatal(err)
	}
	tested := 0
	for _, key := range keys {
		method, route, _ := strings.Cut(key, " ")
		role := declared[key]
		if method == http.MethodGet || method == http.MethodHead || role.Rank() == 0 {
			continue
		}
		tested++
		path := strings.NewReplacer(":hrn", "node1-1.sb8.orbit-lab.org", ":name", "orbit-2.0.0", ":id", "1").Replace(route)
		if strings.HasPrefix(route, "/api/v1/tokens/") {
			path = "/api/v1/tokens/victim"
		}
		body := mutatingBodies[key]
		t.Run(key, func(t *testing.T) {
			before := g.state(t)
			cases := []struct {
				name, token string
				want        int
			}{
				{"no token", "", http.StatusUnauthorized},
				{"bad token", apitoken.Prefix + "not-a-token", http.StatusUnauthorized},
				{"not a token", "0123456789abcdef", http.StatusUnauthorized},
				{"revoked", revoked, http.StatusUnauthorized},
				{"lower role", g.tokens[lower[role]], http.StatusForbidden},
			}
			for _, c := range cases {
				if c.name == "lower role" && lower[role] == "" {
					continue
				}
				status, h, got := g.call(t, method, path, body, c.token)
				if status != c.want {
					t.Errorf("%s: %d %s, want %d", c.name, status, got, c.want)
				}
				if e := apiv1.ParseError([]byte(got)); e.Error == "" || !strings.HasPrefix(strings.TrimSpace(got), "{") {
					t.Errorf("%s: body %q is not an ErrorBody", c.name, got)
				}
				if status == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: 401 without a Bearer challenge: %q", c.name, h.Get("WWW-Authenticate"))
				}
			}
			if diff := cmp.Diff(before, g.state(t)); diff != "" {
				t.Errorf("refused calls changed the state (-before +after):\n%s", diff)
			}
			if status, _, got := g.call(t, method, path, body, g.tokens[role]); status == http.StatusUnauthorized || status == http.StatusForbidden {
				t.Errorf("token of role %s: %d %s", role, status, got)
			}
		})
	}
	if tested < 10 {
		t.Errorf("%d mutating routes tested: the table lost some", tested)
	}
}

// TestOMFAccess: the OMF services admit omf.allow, the read-only calls
// omf.allow_read too, and a token by its role; each refusal is the
// service's own XML with the reason. The source is the TCP peer, never a
// header.
func TestOMFAccess(t *testing.T) {
	g := newGuardedWith(t, guard.Config{
		OMFAllow:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")},
		OMFAllowRead: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")},
	})
	const (
		read  = "/inventory/getControlIP?hrn=node1-1&domain=sb8"
		set   = "/pxe/setBootImage?node=node1-1.sb8.orbit-lab.org&image=orbit-2.0.0"
		power = "/cmc/on?hrn=node1-1&domain=sb8"
	)
	tests := []struct {
		name, from, path, token, header string
		want                            int
		wantBody                        string // a substring
	}{
		{"loopback reads", "127.0.0.1", read, "", "", 200, "<CONTROL_IP>10.18.1.1</CONTROL_IP>"},
		{"loopback sets", "127.0.0.9", set, "", "", 200, "status='OK'"},
		{"allow sets", "10.1.3.4", set, "", "", 200, "status='OK'"},
		{"allow_read reads", "10.2.3.4", read, "", "", 200, "<CONTROL_IP>"},
		{"allow_read may not set", "10.2.3.4", set, "", "", 403, "<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImage: source 10.2.3.4 is not in omf.allow"},
		{"allow_read may not power", "10.2.3.4", power, "", "", 403, "<ERROR>on: source 10.2.3.4 is not in omf.allow"},
		{"other may not read", "10.3.0.1", read, "", "", 403, "<CONTROL_IP><ERROR>getControlIP: source 10.3.0.1 is not in omf.allow or omf.allow_read"},
		{"other may not list", "10.3.0.1", "/", "", "", 403, "<ERROR>describe: source 10.3.0.1"},
		{"a forwarded header is not the source", "10.3.0.1", set, "", "127.0.0.1", 403, "source 10.3.0.1"},
		{"IPv6 outside", "[2001:db8::1]", read, "", "", 403, "source 2001:db8::1"},
		{"viewer token reads", "10.3.0.1", read, g.tokens[apierr.RoleViewer], "", 200, "<CONTROL_IP>"},
		{"viewer token may not set", "10.3.0.1", set, g.tokens[apierr.RoleViewer], "", 403, `token "t-viewer" has role viewer; this call needs operator`},
		{"operator token sets", "10.3.0.1", set, g.tokens[apierr.RoleOperator], "", 200, "status='OK'"},
		{"bad token, even from loopback", "127.0.0.1", read, apitoken.Prefix + "x", "", 401, "<CONTROL_IP><ERROR>getControlIP: unknown token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := g.state(t)
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			req.RemoteAddr = tt.from + ":40000"
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.header != "" {
				req.Header.Set("X-Forwarded-For", tt.header)
				req.Header.Set("X-Real-IP", tt.header)
			}
			rec := httptest.NewRecorder()
			g.srv.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("%d %q, want %d with %q", rec.Code, rec.Body.String(), tt.want, tt.wantBody)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
				t.Errorf("Content-Type %q, want text/xml", ct)
			}
			if after := g.state(t); tt.want != 200 && after != before {
				t.Errorf("a refused call changed the state:\n%s", cmp.Diff(before, after))
			}
		})
	}
}

// TestOMFRoutesAllRefuse: every route of role omf, whatever its
// parameters, refuses a source outside omf.allow and omf.allow_read before
// it does anything: the guard's check is in each OMF route, none left out.
func TestOMFRoutesAllRefuse(t *testing.T) {
	g := newGuardedWith(t, guard.Config{OMFAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	n := 0
	for key, role := range g.guard.Roles() {
		if role != apierr.RoleOMF {
			continue
		}
		n++
		method, path, _ := strings.Cut(key, " ")
		before := g.state(t)
		req := httptest.NewRequest(method, path+"?hrn=node1-1&domain=sb8&node=node1-1.sb8.orbit-lab.org&image=orbit-2.0.0", nil)
		req.RemoteAddr = "10.3.0.1:40000"
		rec := httptest.NewRecorder()
		g.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "source 10.3.0.1 is not in omf.allow") {
			t.Errorf("%s from 10.3.0.1: %d %q, want 403 naming the source", key, rec.Code, rec.Body.String())
		}
		if after := g.state(t); after != before {
			t.Errorf("%s: a refused call changed the state:\n%s", key, cmp.Diff(before, after))
		}
	}
	if n < 20 {
		t.Errorf("%d OMF routes, want the describe pages and every pxe, inventory and cmc call", n)
	}
}

// TestOpenAPIRoutes: the OpenAPI document names every /api/v1 route of
// gin's table, with the role the guard's table declares, and no route
// that does not exist; GET /api/v1/openapi.json serves it.
func TestOpenAPIRoutes(t *testing.T) {
	g := newGuarded(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Role string `json:"x-role"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(apiv1.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // "GET /api/v1/nodes/:hrn" -> role
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented[strings.ToUpper(method)+" "+openAPIToGin.ReplaceAllString(path, ":$1")] = op.Role
		}
	}
	declared := g.guard.Roles()
	served := 0
	for _, r := range g.srv.Handler().(*gin.Engine).Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") {
			continue
		}
		served++
		key := r.Method + " " + r.Path
		role, ok := documented[key]
		switch {
		case !ok:
			t.Errorf("%s is not in the OpenAPI document (am/apiv1/openapi_test.go's table)", key)
		case role != string(declared[key]):
			t.Errorf("%s: the document says role %q, the guard's table %q", key, role, declared[key])
		}
		delete(documented, key)
	}
	for key := range documented {
		t.Errorf("the OpenAPI document names %s, which gin does not route", key)
	}
	if served < 30 {
		t.Fatalf("%d /api/v1 routes: the AM is not wired as netbootd wires it", served)
	}
	status, _, body := g.call(t, http.MethodGet, apiv1.OpenAPIPath, "", g.tokens[apierr.RoleViewer])
	if status != http.StatusOK || body != string(apiv1.OpenAPI()) {
		t.Errorf("GET %s = %d, %d bytes; want 200 and the document", apiv1.OpenAPIPath, status, len(body))
	}
}

var openAPIToGin = regexp.MustCompile(`\{([A-Za-z_]+)\}`)
