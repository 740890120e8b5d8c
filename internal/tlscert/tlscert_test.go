package tlscert

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFingerprint(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	colons := Fingerprint([]byte("x"))
	plain := hex.EncodeToString(sum[:])
	tests := []struct {
		in      string
		wantErr bool
	}{
		{in: colons},
		{in: strings.ToLower(colons)},
		{in: plain},
		{in: "sha256:" + plain},
		{in: "SHA256 Fingerprint=" + colons},
		{in: "  " + colons + "\n"},
		{in: plain[:62], wantErr: true},
		{in: plain + "00", wantErr: true},
		{in: strings.Replace(plain, plain[:1], "g", 1), wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseFingerprint(tt.in)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "64 hex digits") {
				t.Errorf("ParseFingerprint(%q) = %x, %v; want an error saying what it wants", tt.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != string(sum[:]) {
			t.Errorf("ParseFingerprint(%q) = %x, %v; want %x", tt.in, got, err, sum)
		}
	}
	if len(colons) != 95 || colons != strings.ToUpper(colons) {
		t.Errorf("Fingerprint = %q: want 32 uppercase hex pairs joined by colons", colons)
	}
}

// TestAuto: the first call makes the key (0600) and the certificate for
// the hosts; the second reuses them byte for byte; a broken pair is an
// error, not silently replaced.
func TestAuto(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	hosts := []string{"localhost", "127.0.0.1", "::1", "boot.example", "10.18.0.1"}
	c1, made, err := Auto(dir, hosts, now)
	if err != nil || !made {
		t.Fatalf("Auto: made %v, %v", made, err)
	}
	leaf, err := x509.ParseCertificate(c1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if m := Missing(leaf, hosts); len(m) > 0 {
		t.Errorf("certificate does not name %v", m)
	}
	if m := Missing(leaf, []string{"other.example", "10.18.0.2"}); len(m) != 2 {
		t.Errorf("Missing of names not in the certificate = %v", m)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || leaf.IsCA {
		t.Errorf("certificate: ext key usage %v, CA %v: want a server certificate, not a CA", leaf.ExtKeyUsage, leaf.IsCA)
	}
	for name, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v: want mode %v", name, fi.Mode(), err, want)
		}
	}
	c2, made, err := Auto(dir, []string{"other.example"}, now.Add(time.Hour))
	if err != nil || made {
		t.Fatalf("second Auto: made %v, %v: want the kept certificate", made, err)
	}
	if Fingerprint(c2.Certificate[0]) != Fingerprint(c1.Certificate[0]) {
		t.Error("second Auto: a different certificate")
	}

	// A key that is not the certificate's: refused, files kept.
	other := filepath.Join(t.TempDir(), "tls")
	if _, _, err := Auto(other, hosts, now); err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(other, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Auto(dir, hosts, now); err == nil || !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), "remove both") {
		t.Errorf("Auto with a mismatched key: %v", err)
	}

	// The key alone (a crash between the two writes): made again.
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	if _, made, err := Auto(dir, hosts, now); err != nil || !made {
		t.Errorf("Auto with the key alone: made %v, %v", made, err)
	}
}

func TestLoadFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	c, _, err := Auto(dir, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	got, err := LoadFiles(cert, key)
	if err != nil || Fingerprint(got.Certificate[0]) != Fingerprint(c.Certificate[0]) {
		t.Errorf("LoadFiles: %v", err)
	}
	if _, err := LoadFiles(cert+".missing", key); err == nil || !strings.Contains(err.Error(), "http.tls.cert") {
		t.Errorf("LoadFiles, no cert: %v", err)
	}
	if _, err := LoadFiles(cert, cert); err == nil || !strings.Contains(err.Error(), "http.tls: cert") {
		t.Errorf("LoadFiles, the cert as key: %v", err)
	}
}

func TestHosts(t *testing.T) {
	got := Hosts("boot", []string{"10.18.0.1:5443", "[::ffff:10.18.0.2]:5443", "boot.example:5443", "bad"}, []netip.Addr{netip.MustParseAddr("10.18.0.1"), {}})
	want := []string{"10.18.0.1", "10.18.0.2", "127.0.0.1", "::1", "boot", "boot.example", "localhost"}
	if !slices.Equal(got, want) {
		t.Errorf("Hosts = %v, want %v", got, want)
	}
	// Every address: the interfaces' addresses, loopback among them.
	if got := Hosts("", []string{":5443"}, nil); len(got) < 3 || !slices.Contains(got, "127.0.0.1") {
		t.Errorf("Hosts(:5443) = %v", got)
	}
}
