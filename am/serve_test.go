package am

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/tlscert"
)

// TestServeListeners: Serve runs one handler on the plain listener, the
// TLS one, or both, and one cancel stops them all; a TLS port that is
// taken fails Serve and frees the plain port it had bound.
func TestServeListeners(t *testing.T) {
	cert, _, err := tlscert.Auto(filepath.Join(t.TempDir(), "tls"), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}}
	log := slog.New(slog.DiscardHandler)

	get := func(t *testing.T, url string) string {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%s HTTP/%d", b, resp.ProtoMajor)
	}
	tests := []struct {
		name          string
		plain, secure bool
	}{
		{"plain", true, false},
		{"TLS", false, true},
	}
	// Both, several times: which listener starts first is up to the
	// scheduler, and HTTP/2 must be served over TLS either way.
	for range 10 {
		tests = append(tests, struct {
			name          string
			plain, secure bool
		}{"both", true, true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}
			if tt.plain {
				cfg.Listen = "127.0.0.1:0"
			}
			if tt.secure {
				cfg.TLSListen, cfg.TLS = "127.0.0.1:0", tlsCfg
			}
			s := newServing(cfg, log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "tls="+map[bool]string{true: "yes", false: "no"}[r.TLS != nil])
			}))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx) }()
			<-s.Ready()
			if (s.Addr() != nil) != tt.plain || (s.TLSAddr() != nil) != tt.secure {
				t.Fatalf("Addr %v, TLSAddr %v", s.Addr(), s.TLSAddr())
			}
			if tt.plain {
				if got := get(t, "http://"+s.Addr().String()+"/"); got != "tls=no HTTP/1" {
					t.Errorf("plain: %q", got)
				}
			}
			if tt.secure {
				if got := get(t, "https://"+s.TLSAddr().String()+"/"); got != "tls=yes HTTP/2" {
					t.Errorf("TLS: %q", got)
				}
			}
			client.CloseIdleConnections()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve after cancel: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return within 10s of cancel")
			}
			for _, a := range []net.Addr{s.Addr(), s.TLSAddr()} {
				if a != nil {
					if c, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
						c.Close()
						t.Errorf("%s still accepts after Serve returned", a)
					}
				}
			}
		})
	}

	t.Run("TLS port taken", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		s := newServing(Config{Listen: "127.0.0.1:0", TLSListen: busy.Addr().String(), TLS: tlsCfg}, log, http.NotFoundHandler())
		err = s.Serve(context.Background())
		if err == nil || !strings.Contains(err.Error(), "am: https listen "+busy.Addr().String()) {
			t.Fatalf("Serve: %v", err)
		}
		if s.Addr() != nil {
			t.Errorf("Addr %v after a failed start", s.Addr())
		}
	})
	t.Run("TLS listener without a config", func(t *testing.T) {
		s := newServing(Config{TLSListen: "127.0.0.1:0"}, log, http.NotFoundHandler())
		if err := s.Serve(context.Background()); err == nil {
			t.Fatal("Serve without a TLS config succeeded")
		}
	})
}

// newServing is a Server with handler h in place of the AM's routes:
// Serve's listeners are under test, not what they serve.
func newServing(cfg Config, log *slog.Logger, h http.Handler) *Server {
	return &Server{cfg: cfg, log: log, h: h, ready: make(chan struct{})}
}

// TestServerErrors: handshakes any client can break off are debug lines;
// net/http's other complaints stay visible.
func TestServerErrors(t *testing.T) {
	var b strings.Builder
	w := serverErrors{slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, line := range []string{
		"http: TLS handshake error from 127.0.0.1:5: remote error: tls: bad certificate\n",
		"http: superfluous response.WriteHeader call\n",
	} {
		if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	got := b.String()
	if !strings.Contains(got, `level=DEBUG msg="http: TLS handshake error`) || !strings.Contains(got, `level=WARN msg="http: superfluous`) {
		t.Errorf("log:\n%s", got)
	}
}
