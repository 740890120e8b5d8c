package am

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/apptest"
)

// TestRootNegotiates: GET / sends a browser (Accept: text/html) to the
// web view, and answers anyone else OMF's service listing as before.
func TestRootNegotiates(t *testing.T) {
	g := newGuarded(t)
	tests := []struct {
		name, accept string
		status       int
		location     string
		body         string
	}{
		{"browser", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", http.StatusFound, "/ui/", ""},
		{"curl", "*/*", http.StatusOK, "", "<serviceGroups>"},
		{"no Accept (OMF's EC)", "", http.StatusOK, "", "<serviceGroups>"},
		{"XML asked for", "text/xml", http.StatusOK, "", "<serviceGroups>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, g.url+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			// The test server's peer is 127.0.0.1: in omf.allow.
			resp, err := noFollow().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location || !strings.Contains(string(b), tc.body) {
				t.Errorf("%d Location %q %q; want %d %q containing %q", resp.StatusCode, resp.Header.Get("Location"), b, tc.status, tc.location, tc.body)
			}
		})
	}
}

// TestWebUIFiles: the page's files are public, hold no data, and come
// with the headers that keep other scripts out; the stream needs a token.
func TestWebUIFiles(t *testing.T) {
	g := newGuarded(t)
	for _, tc := range []struct {
		path, ctype, body string
	}{
		{"/ui/", "text/html", "<title>netboot</title>"},
		{"/ui/app.js", "javascript", `"use strict"`},
		{"/ui/app.css", "text/css", ".cell"},
	} {
		status, h, body := g.call(t, http.MethodGet, tc.path, "", "")
		if status != http.StatusOK || !strings.Contains(h.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %s %.80q", tc.path, status, h.Get("Content-Type"), body)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: CSP %q, nosniff %q", tc.path, csp, h.Get("X-Content-Type-Options"))
		}
	}
	if r := apptest.CallWith(t, noFollow(), http.MethodGet, g.url+"/ui", "", nil); r.Status != http.StatusMovedPermanently || r.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d to %q", r.Status, r.Header.Get("Location"))
	}
	if status, _, _ := g.call(t, http.MethodGet, "/ui/nothing.js", "", ""); status != http.StatusNotFound {
		t.Errorf("a missing file: %d", status)
	}
	if status, _, _ := g.call(t, http.MethodGet, "/api/v1/events/stream", "", ""); status != http.StatusUnauthorized {
		t.Errorf("the stream without a token: %d", status)
	}
	if status, _, body := g.call(t, http.MethodGet, "/api/v1/events/stream?recent=x", "", g.tokens[apierr.RoleViewer]); status != http.StatusBadRequest || !strings.Contains(body, "recent") {
		t.Errorf("the stream with a bad recent: %d %s", status, body)
	}
}

// TestWhoAmI: each token learns its own name and role; no token is 401.
func TestWhoAmI(t *testing.T) {
	g := newGuarded(t)
	for _, role := range []apierr.Role{apierr.RoleViewer, apierr.RoleOperator, apierr.RoleAdmin} {
		status, _, body := g.call(t, http.MethodGet, "/api/v1/whoami", "", g.tokens[role])
		var who apiv1.WhoAmI
		if err := json.Unmarshal([]byte(body), &who); status != http.StatusOK || err != nil || who != (apiv1.WhoAmI{Name: "t-" + string(role), Role: string(role)}) {
			t.Errorf("%s: %d %s", role, status, body)
		}
	}
	if status, _, _ := g.call(t, http.MethodGet, "/api/v1/whoami", "", ""); status != http.StatusUnauthorized {
		t.Errorf("no token: %d", status)
	}
}

// noFollow is a client that answers a redirect as it came.
func noFollow() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
