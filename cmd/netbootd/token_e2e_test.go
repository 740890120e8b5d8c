package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
)

// TestTokens: through netbootd and nbctl, the first start's admin token
// (a 0600 file, kept by a restart), tokens made, listed, revoked and
// expired, each refused once it no longer holds; nbctl says what a
// refusal needs.
func TestTokens(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: "testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: node1-1.sb8, control_ip: 10.18.1.1, control_mac: \"00:03:1d:0c:01:01\" }\n",
		Images: []string{"orbit-2.0.0"}})
	a.Start()
	file := filepath.Join(a.Dir, "state", AdminTokenFile)
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if !apptest.HasLine(a.Log.String(), "admin token", file) || strings.Contains(a.Log.String(), a.Token) {
		t.Errorf("want the file's path logged, never the token:\n%s", a.Log)
	}

	out, err := a.Nbctl("token", "create", "--name", "ec1", "--role", "operator")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	ec1 := lastLine(out)
	readerMade := time.Now()
	out, err = a.Nbctl("token", "create", "--name", "reader", "--role", "viewer", "--expires", "5s")
	if err != nil {
		t.Fatalf("token create --expires: %v\n%s", err, out)
	}
	reader := lastLine(out)
	if out, err := a.Nbctl("token", "create", "--name", "ec1", "--role", "admin"); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("a second ec1: %v\n%s", err, out)
	}

	as := func(token string, args ...string) (string, error) {
		cmd := a.NbctlCommand(t.Context(), args...)
		cmd.Env = append(cmd.Env, "NBCTL_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := as(ec1, "boot", "set", "node1-1.sb8"); err != nil {
		t.Errorf("operator sets a boot link: %v\n%s", err, out)
	}
	if out, err := as(reader, "nodes"); err != nil || !strings.Contains(out, "node1-1.sb8") {
		t.Errorf("viewer lists nodes: %v\n%s", err, out)
	}
	if out, err := as(reader, "boot", "clear", "node1-1.sb8"); err == nil || !strings.Contains(out, "needs operator") || !strings.Contains(out, "HTTP 403") {
		t.Errorf("viewer clears a boot link: %v\n%s", err, out)
	}
	if out, err := as(ec1, "token", "list"); err == nil || !strings.Contains(out, "needs admin") {
		t.Errorf("operator lists tokens: %v\n%s", err, out)
	}
	if out, err := as("", "nodes"); err == nil || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "NBCTL_TOKEN") {
		t.Errorf("no token: %v\n%s", err, out)
	}

	out, err = a.Nbctl("token", "list")
	if err != nil || !apptest.HasLine(out, "ec1", "operator", "never", "active") || !apptest.HasLine(out, "admin", "admin", "active") {
		t.Errorf("token list: %v\n%s", err, out)
	}
	if strings.Contains(out, ec1) || strings.Contains(out, a.Token) {
		t.Errorf("token list shows a secret:\n%s", out)
	}

	if out, err := a.Nbctl("token", "revoke", "ec1"); err != nil {
		t.Fatalf("token revoke: %v\n%s", err, out)
	}
	if out, err := as(ec1, "boot", "clear", "node1-1.sb8"); err == nil || !strings.Contains(out, `token "ec1" was revoked`) {
		t.Errorf("revoked token: %v\n%s", err, out)
	}
	time.Sleep(time.Until(readerMade.Add(5*time.Second + 100*time.Millisecond)))
	if out, err := as(reader, "nodes"); err == nil || !strings.Contains(out, `token "reader" expired`) {
		t.Errorf("expired token: %v\n%s", err, out)
	}
	out, _ = a.Nbctl("token", "list")
	if !apptest.HasLine(out, "ec1", "revoked") || !apptest.HasLine(out, "reader", "expired") {
		t.Errorf("token list after revoke and expiry:\n%s", out)
	}

	// A restart keeps the token the file holds, and makes no other.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	before := a.Token
	a.Start()
	if a.Token != before {
		t.Fatalf("restart made a new admin token")
	}
	if out, err := a.Nbctl("token", "list"); err != nil || strings.Count(out, "admin") != 2 {
		t.Errorf("after a restart: %v\n%s", err, out)
	}
}

// TestOMFAllow: with omf.allow narrowed to 127.0.0.1, a call from
// 127.0.0.2 is refused in the service's XML, saying why, and admitted
// with a token.
func TestOMFAllow(t *testing.T) {
	a := apptest.New(t, apptest.Options{
		Inventory: "testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: node1-1.sb8, control_ip: 10.18.1.1, control_mac: \"00:03:1d:0c:01:01\" }\n",
		Images:    []string{"orbit-2.0.0"},
		Extra:     "omf: { allow: [127.0.0.1/32], allow_read: [127.0.0.3] }\n",
	})
	a.Start()
	from := func(src, path, token string) (int, string) {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
		req, err := http.NewRequest(http.MethodGet, a.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const set = "/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8&imgName=orbit-2.0.0"
	const read = "/inventory/getControlIP?hrn=node1-1.sb8&domain=sb8"
	for _, tt := range []struct {
		name, src, path, token string
		want                   int
		body                   string
	}{
		{"allowed", "127.0.0.1", set, "", 200, "status='OK'"},
		{"not allowed", "127.0.0.2", set, "", 403, "<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: source 127.0.0.2 is not in omf.allow"},
		{"not allowed to read", "127.0.0.2", read, "", 403, "<CONTROL_IP><ERROR>getControlIP: source 127.0.0.2 is not in omf.allow or omf.allow_read"},
		{"allowed to read", "127.0.0.3", read, "", 200, "<CONTROL_IP>10.18.1.1</CONTROL_IP>"},
		{"allowed to read, not to set", "127.0.0.3", set, "", 403, "source 127.0.0.3 is not in omf.allow"},
		{"with a token", "127.0.0.2", set, a.Token, 200, "status='OK'"},
		{"with a bad token", "127.0.0.1", set, "nbt_forged", 401, "unknown token"},
	} {
		if status, body := from(tt.src, tt.path, tt.token); status != tt.want || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %d %q, want %d with %q", tt.name, status, body, tt.want, tt.body)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
