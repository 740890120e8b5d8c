package amclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/orbit-lab/netboot/internal/tlscert"
)

// TLS says how the client checks an https appliance: by the system's
// roots (the zero TLS), by the certificates in CAFile, or by Fingerprint
// alone, the SHA-256 of the server's certificate (a self-signed http.tls:
// auto one), which replaces the chain and host name checks. At most one
// of the two is set.
type TLS struct {
	CAFile      string
	Fingerprint string
}

// WithTLS is a client that checks the appliance's certificate as t says.
// It is an error to give a CA or a fingerprint for an http:// appliance:
// nothing would be checked.
func (c *Client) WithTLS(t TLS) (*Client, error) {
	if t == (TLS{}) {
		return c, nil
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, fmt.Errorf("amclient: %w", err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("amclient: %s is not https://: a CA or a fingerprint checks nothing there", c.base)
	}
	cfg, err := t.config()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	cp := *c
	cp.http = &http.Client{Timeout: c.http.Timeout, Transport: tr}
	return &cp, nil
}

// config is the client's TLS config for t.
func (t TLS) config() (*tls.Config, error) {
	if t.CAFile != "" && t.Fingerprint != "" {
		return nil, errors.New("amclient: a CA file and a fingerprint: give one (a fingerprint replaces the CA's checks)")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		data, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("amclient: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("amclient: CA %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.Fingerprint != "" {
		want, err := tlscert.ParseFingerprint(t.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("amclient: %w", err)
		}
		// The pin is the whole check: it names one certificate, whoever
		// signed it and whatever names it carries.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(got[:], want) {
				return &FingerprintError{Got: tlscert.FormatSum(got[:]), Want: tlscert.FormatSum(want)}
			}
			return nil
		}
	}
	return cfg, nil
}

// FingerprintError is a server certificate that is not the pinned one.
type FingerprintError struct {
	Got, Want string
}

func (e *FingerprintError) Error() string {
	return fmt.Sprintf("the server's certificate has SHA-256 fingerprint %s, not the pinned %s: "+
		"not the appliance you pinned, or its certificate was replaced", e.Got, e.Want)
}

// ServerCertificate connects to an https appliance and returns the
// certificate it presents, unverified: for showing its fingerprint to an
// operator who compares it with netbootd's log before pinning it.
func ServerCertificate(ctx context.Context, base string) (*x509.Certificate, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("amclient: %w", err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("amclient: %s is not https://", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 30 * time.Second},
		// Unverified on purpose: the caller shows what it got and says so.
		Config: &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, //nolint:gosec // shown, not trusted
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("amclient: %w", err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("amclient: %s sent no certificate", addr)
	}
	return certs[0], nil
}
