package apptest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCall: the method, body and header reach the server; status, header
// and body come back.
func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		method, body string
		header       http.Header
		wantBody     string
		wantEcho     string
	}{
		{method: "GET", wantBody: "GET /p "},
		{method: "PUT", body: `{"a":1}`, header: http.Header{"Authorization": {"Bearer s"}}, wantBody: `PUT /p {"a":1}`, wantEcho: "Bearer s"},
	} {
		r := Call(t, tc.method, srv.URL+"/p", tc.body, tc.header)
		if r.Status != http.StatusTeapot || r.Body != tc.wantBody || r.Header.Get("X-Echo") != tc.wantEcho {
			t.Errorf("%s: %+v, want 418 %q, X-Echo %q", tc.method, r, tc.wantBody, tc.wantEcho)
		}
	}
}

// TestDoFrom: the server sees the connection come from the address asked
// for, on loopback's 127.0.0.0/8, as the simulated nodes need.
func TestDoFrom(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		_, _ = io.WriteString(w, host)
	}))
	defer srv.Close()
	for _, from := range []string{"127.0.0.1", "127.0.0.11", "127.0.1.7"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if r := DoFrom(t, from, req); r.Body != from {
			t.Errorf("from %s: the server saw %q", from, r.Body)
		}
	}
}
