// Package tlscert holds the certificate of the AM's TLS listener: one an
// operator gives as PEM files, or one made once and kept in state_dir
// (http.tls: auto), and the SHA-256 fingerprint by which nbctl pins a
// self-signed one. netbootd and nbctl share the fingerprint's format here,
// so that what netbootd logs is what nbctl takes and prints.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/internal/atomicfile"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding, as
// uppercase hex pairs joined by colons (openssl x509 -fingerprint -sha256
// prints the same).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return FormatSum(sum[:])
}

// FormatSum writes a digest as Fingerprint does, for one ParseFingerprint
// read.
func FormatSum(sum []byte) string {
	pairs := make([]string, len(sum))
	for i, b := range sum {
		pairs[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(pairs, ":")
}

// ParseFingerprint reads a SHA-256 fingerprint as a user writes it: 64 hex
// digits, either case, with or without colons, optionally after "sha256:"
// or openssl's "SHA256 Fingerprint=".
func ParseFingerprint(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	if _, after, ok := strings.Cut(t, "="); ok {
		t = after
	}
	if len(t) > 7 && strings.EqualFold(t[:7], "sha256:") {
		t = t[7:]
	}
	t = strings.ReplaceAll(t, ":", "")
	b, err := hex.DecodeString(t)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want the certificate's SHA-256 as 64 hex digits (colons allowed)", s)
	}
	return b, nil
}

// LoadFiles reads a certificate chain and its key from PEM files, as
// http.tls: {cert, key} names them.
func LoadFiles(certFile, keyFile string) (tls.Certificate, error) {
	for _, f := range []struct{ key, path string }{{"cert", certFile}, {"key", keyFile}} {
		if _, err := os.Stat(f.path); err != nil {
			return tls.Certificate{}, fmt.Errorf("http.tls.%s: %w", f.key, err)
		}
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("http.tls: cert %s, key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// Auto file names, in Auto's directory.
const (
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// autoLifetime is how long a made certificate is valid: it is pinned or
// trusted by file, not checked by a public CA, and replacing it means
// telling every operator the new fingerprint, so it outlives the appliance.
const autoLifetime = 20 * 365 * 24 * time.Hour

// Auto returns the self-signed certificate kept in dir, making it first
// if dir holds none: an ECDSA P-256 key (mode 0600) and a certificate for
// hosts (names and addresses), each written whole or not at all. A kept
// certificate is reused as it is, so that its fingerprint stays what
// operators pinned; made reports whether it is new. A broken pair is an
// error, not replaced: removing both files is the operator's choice.
func Auto(dir string, hosts []string, now time.Time) (cert tls.Certificate, made bool, err error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	// The key is written first: a crash between the two leaves a key with
	// no certificate, which was never served and is made again.
	if certErr == nil && keyErr == nil {
		c, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %s, %s: %w (remove both to make a new certificate)", certPath, keyPath, err)
		}
		return c, false, nil
	}
	for _, err := range []error{certErr, keyErr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %w", err)
	}
	certPEM, keyPEM, err := selfSigned(hosts, now)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %w", err)
	}
	if err := atomicfile.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %w", err)
	}
	if err := atomicfile.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("http.tls auto: %w", err)
	}
	return c, true, nil
}

// selfSigned makes a key and a server certificate for hosts, PEM-encoded.
func selfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "netbootd", Organization: []string{"netboot appliance (self-signed)"}},
		// An hour back: a client whose clock is a little behind accepts it.
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(autoLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Not a CA: the certificate is its own trust anchor (nbctl --ca,
		// curl --cacert), and signs nothing else.
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// Hosts are the names a made certificate is for: localhost and the
// loopback addresses, the machine's host name, extra (the DHCP server
// address), and the address of each listen address; one that listens on
// every address (":5443", "0.0.0.0:5443") adds the addresses of the
// machine's interfaces. Sorted, no repeats.
func Hosts(hostname string, listen []string, extra []netip.Addr) []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	if hostname != "" {
		out = append(out, hostname)
	}
	for _, a := range extra {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	wildcard := false
	for _, l := range listen {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		switch {
		case host == "" || (err == nil && a.IsUnspecified()):
			wildcard = true
		case err == nil:
			out = append(out, a.Unmap().String())
		default:
			out = append(out, host)
		}
	}
	if wildcard {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range addrs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil && !p.Addr().IsLinkLocalUnicast() {
					out = append(out, p.Addr().String())
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Missing lists the hosts the certificate does not name: clients that
// reach the appliance by one of them and check names (nbctl --ca, curl)
// refuse it, while a pinned fingerprint still works.
func Missing(cert *x509.Certificate, hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			out = append(out, h)
		}
	}
	return out
}
