package amclient

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/tlscert"
)

// TestWithTLS: a pin or a CA file decides, each alone; a wrong pin is a
// FingerprintError naming both; misuse is refused before any request.
func TestWithTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("[]"))
	}))
	defer srv.Close()
	leaf := srv.Certificate()
	fp := tlscert.Fingerprint(leaf.Raw)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := "00" + fp[2:]
	if wrong == fp {
		wrong = "11" + fp[2:]
	}
	tests := []struct {
		name     string
		base     string
		tls      TLS
		setupErr string // WithTLS's error
		callErr  string // the call's
	}{
		{name: "pin", base: srv.URL, tls: TLS{Fingerprint: fp}},
		{name: "CA file", base: srv.URL, tls: TLS{CAFile: caFile}},
		{name: "system roots", base: srv.URL, callErr: "x509: certificate signed by unknown authority"},
		{name: "wrong pin", base: srv.URL, tls: TLS{Fingerprint: wrong}, callErr: "fingerprint " + fp + ", not the pinned " + wrong},
		{name: "both", base: srv.URL, tls: TLS{CAFile: caFile, Fingerprint: fp}, setupErr: "give one"},
		{name: "plain", base: "http://127.0.0.1:1", tls: TLS{Fingerprint: fp}, setupErr: "is not https://"},
		{name: "CA missing", base: srv.URL, tls: TLS{CAFile: caFile + ".none"}, setupErr: "no such file"},
		{name: "CA not PEM", base: srv.URL, tls: TLS{CAFile: notPEM}, setupErr: "no PEM certificate"},
		{name: "bad pin", base: srv.URL, tls: TLS{Fingerprint: "zz"}, setupErr: "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.base).WithTLS(tt.tls)
			if tt.setupErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.setupErr) {
					t.Fatalf("WithTLS: %v, want %q", err, tt.setupErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Testbeds(context.Background())
			if tt.callErr == "" {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.callErr) {
				t.Fatalf("call: %v, want %q", err, tt.callErr)
			}
			var fe *FingerprintError
			if tt.tls.Fingerprint != "" && !errors.As(err, &fe) {
				t.Errorf("call: %T is not a FingerprintError", err)
			}
		})
	}
	got, err := ServerCertificate(context.Background(), srv.URL)
	if err != nil || tlscert.Fingerprint(got.Raw) != fp {
		t.Errorf("ServerCertificate: %v", err)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestWithTransport: calls, streamed ones too, go through the transport
// given, with the token; the client it came from is left as it was.
func TestWithTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("[]"))
	}))
	defer srv.Close()
	var seen []string
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		return http.DefaultTransport.RoundTrip(r)
	})
	base := New(srv.URL).WithToken("tok")
	c := base.WithTransport(rt)
	if _, err := c.DiskImages(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDiskImage(context.Background(), "img", &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"/api/v1/disk-images Bearer tok", "/api/v1/disk-images/img Bearer tok"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("through the transport: %q, want %q", seen, want)
	}
	if _, err := base.DiskImages(context.Background()); err != nil || len(seen) != 2 {
		t.Errorf("the original client: %v, %d calls through the transport; want its own, 2", err, len(seen))
	}
}
