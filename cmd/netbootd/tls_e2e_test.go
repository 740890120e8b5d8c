package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/tlscert"
)

// tlsSeed has a node whose control address is loopback, where the test's
// orbit-rc runs: the node's enrollment comes from the address the
// inventory gives it.
const tlsSeed = `images:
  - { name: orbit-2.0.0 }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, hostname: node1-1, control_ip: 127.0.0.1, control_mac: "00:03:1d:0c:01:01" }
`

var loggedFingerprint = regexp.MustCompile(`msg="TLS certificate" sha256=([0-9A-F:]{95}) `)

// fingerprintLogged is the fingerprint netbootd logged at its start.
func fingerprintLogged(t *testing.T, a *apptest.Appliance) string {
	t.Helper()
	m := loggedFingerprint.FindAllStringSubmatch(a.Log.String(), -1)
	if len(m) != 1 {
		t.Fatalf("want one \"TLS certificate\" line with its sha256 in netbootd's log, got %d:\n%s", len(m), a.Log)
	}
	return m[0][1]
}

// TestTLSAuto: http.tls: auto makes a certificate in state_dir once and
// logs its fingerprint; nbctl over HTTPS works with that fingerprint
// pinned (as printed by nbctl tls fingerprint, flag or environment) or
// with the certificate as its CA, and refuses a wrong pin and an
// unverifiable certificate; curl --cacert is served too; a restart keeps
// the certificate.
func TestTLSAuto(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: tlsSeed, TLS: "auto", Args: []string{"--log-level", "debug"}})
	a.Start()
	fp := fingerprintLogged(t, a)
	if !apptest.HasLine(a.Log.String(), "TLS: made a self-signed certificate", "127.0.0.1", "localhost") {
		t.Errorf("no line saying the certificate was made, for which names:\n%s", a.Log)
	}
	dir := filepath.Join(a.Dir, "state", "tls")
	certFile, keyFile := filepath.Join(dir, tlscert.CertFile), filepath.Join(dir, tlscert.KeyFile)
	for path, want := range map[string]os.FileMode{keyFile: 0o600, certFile: 0o644, dir: 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v: want mode %v", path, fi.Mode(), err, want)
		}
	}
	certPEM := testenv.ReadFile(t, certFile)
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || tlscert.Fingerprint(block.Bytes) != fp {
		t.Fatalf("the logged fingerprint %s is not that of %s", fp, certFile)
	}

	tlsServer := []string{"--server", a.TLSURL}
	nbctl := func(args ...string) (string, error) { return a.Nbctl(append(tlsServer, args...)...) }

	shown, err := nbctl("tls", "fingerprint")
	if err != nil || !strings.HasPrefix(shown, fp+"\n") || !strings.Contains(shown, "UNVERIFIED") {
		t.Fatalf("nbctl tls fingerprint: %v\n%s\nwant %s, said to be unverified", err, shown, fp)
	}
	lowerBare := strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	for _, pin := range []string{fp, lowerBare} {
		if out, err := nbctl("--fingerprint", pin, "nodes"); err != nil || !strings.Contains(out, "node1-1.sb8") {
			t.Errorf("nbctl --fingerprint %s nodes: %v\n%s\n--- netbootd:\n%s", pin, err, out, a.Log)
		}
	}
	if out, err := nbctl("--ca", certFile, "nodes"); err != nil || !strings.Contains(out, "node1-1.sb8") {
		t.Errorf("nbctl --ca %s nodes: %v\n%s", certFile, err, out)
	}
	// The environment, as an operator's shell profile sets it.
	cmd := a.NbctlCommand(context.Background(), append(tlsServer, "nodes")...)
	cmd.Env = append(cmd.Environ(), "NBCTL_FINGERPRINT="+fp)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "node1-1.sb8") {
		t.Errorf("NBCTL_FINGERPRINT nbctl nodes: %v\n%s", err, out)
	}

	wrong := "00" + fp[2:]
	if wrong == fp {
		wrong = "11" + fp[2:]
	}
	refusals := []struct {
		name string
		args []string
		want []string
	}{
		{"wrong pin", []string{"--fingerprint", wrong, "nodes"}, []string{"has SHA-256 fingerprint " + fp, "not the pinned " + wrong}},
		{"no verification", []string{"nodes"}, []string{"x509: certificate signed by unknown authority", "--ca FILE", "--fingerprint", "nbctl tls fingerprint"}},
		{"pin and CA", []string{"--fingerprint", fp, "--ca", certFile, "nodes"}, []string{"give one"}},
		{"pin on plain HTTP", []string{"--server", a.URL, "--fingerprint", fp, "nodes"}, []string{"is not https://"}},
		{"not a fingerprint", []string{"--fingerprint", "abc", "nodes"}, []string{"64 hex digits"}},
	}
	for _, r := range refusals {
		out, err := nbctl(r.args...)
		if err == nil || strings.Contains(out, "node1-1.sb8") {
			t.Errorf("%s: nbctl %v was not refused:\n%s", r.name, r.args, out)
		}
		for _, w := range r.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: nbctl %v: the error lacks %q:\n%s", r.name, r.args, w, out)
			}
		}
	}

	// A real client of another TLS stack, fetching a boot file (a path
	// that needs no credentials).
	testenv.Programs(t, "apt-get install curl openssl", "curl", "openssl")
	testenv.WriteFile(t, filepath.Join(a.TFTPRoot, "hello.txt"), "boot file over TLS\n")
	out, err := exec.Command("curl", "-sS", "--fail", "--cacert", certFile, a.TLSURL+"/boot/hello.txt").CombinedOutput()
	if err != nil || string(out) != "boot file over TLS\n" {
		t.Errorf("curl --cacert: %v\n%s\n--- netbootd:\n%s", err, out, a.Log)
	}
	out, err = exec.Command("curl", "-sS", a.TLSURL+"/boot/hello.txt").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "self-signed certificate") {
		t.Errorf("curl without the certificate: %v\n%s: want it refused", err, out)
	}
	out, err = exec.Command("openssl", "x509", "-in", certFile, "-noout", "-fingerprint", "-sha256").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "="+fp) {
		t.Errorf("openssl's fingerprint of the certificate: %v\n%s\nwant %s", err, out, fp)
	}

	// The kept certificate, not a new one.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	a.Start()
	if got := fingerprintLogged(t, a); got != fp {
		t.Errorf("after a restart the fingerprint is %s, was %s", got, fp)
	}
	if strings.Contains(a.Log.String(), "made a self-signed certificate") || testenv.ReadFile(t, certFile) != certPEM {
		t.Errorf("a restart made a new certificate:\n%s", a.Log)
	}
	if out, err := nbctl("--fingerprint", fp, "nodes"); err != nil {
		t.Errorf("after a restart, nbctl with the pin: %v\n%s\n--- netbootd:\n%s", err, out, a.Log)
	}
}

// TestTLSPlainServesNodes: with TLS on, the plain listener still serves
// the nodes and OMF: a real orbit-rc enrolls and polls over plain HTTP
// (its commands signed with its enrollment's secret), while the operator's
// command reaches it from nbctl over HTTPS; an OMF call answers on plain.
func TestTLSPlainServesNodes(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: tlsSeed, TLS: "auto"})
	a.Start()
	fp := fingerprintLogged(t, a)

	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "orbit_image"), "orbit-2.0.0\n")
	rcOut := &apptest.SyncBuffer{}
	rc := exec.Command(filepath.Join(a.Bin, "orbit-rc"), "--am", a.URL, "--mac", "00:03:1d:0c:01:01", "--hostname", "node1-1",
		"--cmdline", "/dev/null", "--image-file", filepath.Join(dir, "orbit_image"), "--state-dir", "",
		"--poll-wait", "5s", "--max-backoff", "1s", "--efi-dir", filepath.Join(dir, "efi"))
	rc.Stdout, rc.Stderr = rcOut, rcOut
	if err := rc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rc.Process.Kill()
		_ = rc.Wait()
	})

	tlsArgs := []string{"--server", a.TLSURL, "--fingerprint", fp}
	var out string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var err error
		out, err = a.Nbctl(append(tlsArgs, "rc", "status", "--json", "node1-1.sb8")...)
		if err == nil && strings.Contains(out, `"enrolled": true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orbit-rc did not enroll over plain HTTP within 60s: %v\n%s\n--- orbit-rc:\n%s\n--- netbootd:\n%s", err, out, rcOut, a.Log)
		}
	}
	out, err := a.Nbctl(append(tlsArgs, "rc", "exec", "--timeout", "60s", "node1-1.sb8", "--", "/bin/echo", "signed-and-run")...)
	if err != nil || !strings.Contains(out, "signed-and-run") {
		t.Errorf("nbctl rc exec over HTTPS, orbit-rc polling over plain HTTP: %v\n%s\n--- orbit-rc:\n%s", err, out, rcOut)
	}

	// OMF on the plain listener, as a stock EC calls it.
	r := apptest.Call(t, http.MethodGet, a.URL+"/inventory/getControlIP?hrn=node1-1.sb8&domain=sb8", "", nil)
	if r.Status != http.StatusOK || !strings.Contains(r.Body, "<CONTROL_IP>127.0.0.1</CONTROL_IP>") {
		t.Errorf("OMF getControlIP on the plain listener: %d %s", r.Status, r.Body)
	}
	// The TLS port speaks only TLS. The answer is net/http's, not the
	// API's: asked without apptest, which checks API answers against the
	// OpenAPI document.
	resp, err := http.Get("http://" + a.TLSAddr + "/api/v1/testbeds")
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(plain), "HTTPS") {
		t.Errorf("plain HTTP on the TLS port: %d %s", resp.StatusCode, plain)
	}
}

// TestTLSFiles: http.tls with a certificate and key an operator's CA
// issued: nbctl checks it against that CA (and by name), the logged
// fingerprint is the certificate's, and another CA is refused.
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t, "site CA")
	leaf := issue(t, ca, caKey, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	other, _ := newCA(t, "another CA")
	writePEM(t, filepath.Join(dir, "other-ca.pem"), "CERTIFICATE", other.Raw)

	a := apptest.New(t, apptest.Options{Inventory: tlsSeed,
		TLS: "{ cert: " + filepath.Join(dir, "cert.pem") + ", key: " + filepath.Join(dir, "key.pem") + " }"})
	a.Start()
	if got := fingerprintLogged(t, a); got != tlscert.Fingerprint(leaf) {
		t.Errorf("logged fingerprint %s, want the certificate's %s", got, tlscert.Fingerprint(leaf))
	}
	if !apptest.HasLine(a.Log.String(), "TLS certificate", "source=files") {
		t.Errorf("the log does not say the certificate came from files:\n%s", a.Log)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "state", "tls")); err == nil {
		t.Error("a certificate was made in state_dir although files were given")
	}
	if out, err := a.Nbctl("--server", a.TLSURL, "--ca", filepath.Join(dir, "ca.pem"), "nodes"); err != nil || !strings.Contains(out, "node1-1.sb8") {
		t.Errorf("nbctl --ca ca.pem: %v\n%s", err, out)
	}
	out, err := a.Nbctl("--server", a.TLSURL, "--ca", filepath.Join(dir, "other-ca.pem"), "nodes")
	if err == nil || !strings.Contains(out, "x509: certificate signed by unknown authority") {
		t.Errorf("nbctl --ca of another CA: %v\n%s: want it refused", err, out)
	}
	// By a name the certificate does not carry: refused under the CA, while
	// a pin does not look at names.
	_, port, _ := net.SplitHostPort(a.TLSAddr)
	byName := "https://" + net.JoinHostPort("localhost", port)
	out, err = a.Nbctl("--server", byName, "--ca", filepath.Join(dir, "ca.pem"), "nodes")
	if err == nil || !strings.Contains(out, "x509: certificate is not valid for any names, but wanted to match localhost") || !strings.Contains(out, "--fingerprint") {
		t.Errorf("nbctl --ca by a name not in the certificate: %v\n%s: want it refused, with a hint", err, out)
	}
	if out, err := a.Nbctl("--server", byName, "--fingerprint", tlscert.Fingerprint(leaf), "nodes"); err != nil {
		t.Errorf("nbctl --fingerprint by a name not in the certificate: %v\n%s", err, out)
	}
}

// TestTLSRefusesBadConfig: a TLS setup that cannot serve stops netbootd
// at start, saying why.
func TestTLSRefusesBadConfig(t *testing.T) {
	bin := apptest.Binaries(t)
	dir := t.TempDir()
	ca, caKey := newCA(t, "site CA")
	issue(t, ca, caKey, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	issue(t, ca, caKey, filepath.Join(dir, "cert2.pem"), filepath.Join(dir, "key2.pem"))
	testenv.WriteFile(t, filepath.Join(dir, "garbage.pem"), "not a certificate\n")
	base := "state_dir: " + filepath.Join(dir, "state") + "\ntftp_root: " + dir + "\ntftp: { listen: \"\" }\ninventory: { seed: \"\" }\n"
	httpTLS := func(tls string) string {
		return base + `http: { listen: "127.0.0.1:0", tls_listen: "127.0.0.1:0", tls: ` + tls + " }\n"
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	checkRefusals(t, bin, []refusal{
		{"cert missing", httpTLS("{ cert: " + f("none.pem") + ", key: " + f("key.pem") + " }"), "http.tls.cert: stat " + f("none.pem") + ": no such file or directory"},
		{"key missing", httpTLS("{ cert: " + f("cert.pem") + ", key: " + f("none.pem") + " }"), "http.tls.key: stat " + f("none.pem")},
		{"key of another certificate", httpTLS("{ cert: " + f("cert.pem") + ", key: " + f("key2.pem") + " }"), "private key does not match public key"},
		{"not PEM", httpTLS("{ cert: " + f("garbage.pem") + ", key: " + f("key.pem") + " }"), "http.tls: cert " + f("garbage.pem")},
		{"tls_listen without tls", base + `http: { tls_listen: "127.0.0.1:0" }` + "\n", `http.tls_listen: "127.0.0.1:0" needs http.tls`},
		{"tls without tls_listen", base + "http: { tls: auto }\n", "http.tls: set, but http.tls_listen is empty"},
		{"no listener", base + `http: { listen: "" }` + "\n", "http.listen and http.tls_listen: both empty"},
	})
	// Refused before the database was opened.
	if _, err := os.Stat(filepath.Join(dir, "state", "netboot.db")); err == nil {
		t.Error("a refused start created the database")
	}
	// A made certificate whose key was replaced is not silently made anew:
	// operators pinned it.
	state := filepath.Join(dir, "state2")
	if _, _, err := tlscert.Auto(filepath.Join(state, "tls"), []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(state, "tls", tlscert.KeyFile), testenv.ReadFile(t, f("key.pem")))
	cfg := strings.Replace(httpTLS("auto"), filepath.Join(dir, "state"), state, 1)
	if out, err := runToExit(t, bin, cfg); err == nil || !strings.Contains(out, "private key does not match public key (remove both to make a new certificate)") {
		t.Errorf("auto with a mismatched key: %v\n%s", err, out)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// issue writes a server certificate for 127.0.0.1 alone, signed by ca,
// and its key, and returns the certificate's DER.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "netboot.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return der
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := pem.Encode(&b, &pem.Block{Type: typ, Bytes: der}); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, path, b.Bytes())
}
