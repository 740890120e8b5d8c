package rc_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/netns"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc/proto"
)

// TestNodeIdentityInNamespaces: netbootd in one network namespace, two
// nodes in two others, all on one bridge, each node at its inventory
// control IP. A real orbit-rc on the second node that claims the first
// node's MAC (MACs are not secret) is refused with a 403 and gets no
// secret, and so is curl doing the same; the first node's own orbit-rc,
// from its own address, enrolls.
func TestNodeIdentityInNamespaces(t *testing.T) {
	testenv.Root(t, "network namespaces, a bridge, veths")
	testenv.Programs(t, "Debian: iproute2, curl", "ip", "curl")
	var rnd [3]byte
	rand.Read(rnd[:])
	id := "nbid-" + hex.EncodeToString(rnd[:])
	srv, ns1, ns2 := id+"-s", id+"-1", id+"-2"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{srv, ns1, ns2} {
		ip("netns", "add", ns)
		t.Cleanup(func() {
			if err := netns.Delete(ns); err != nil {
				t.Error(err)
			}
		})
	}
	const (
		applianceIP = "10.77.0.1"
		node1IP     = "10.77.0.11"
		node2IP     = "10.77.0.12"
		mac1, mac2  = "52:54:00:77:00:11", "52:54:00:77:00:12"
		hrn1, hrn2  = "node1.id.orbit-lab.org", "node2.id.orbit-lab.org"
	)
	ip("-n", srv, "link", "add", "br0", "type", "bridge")
	ip("-n", srv, "addr", "add", applianceIP+"/24", "dev", "br0")
	for _, n := range []struct{ ns, port, mac, addr string }{{ns1, "p1", mac1, node1IP}, {ns2, "p2", mac2, node2IP}} {
		ip("-n", srv, "link", "add", n.port, "type", "veth", "peer", "name", "eth0", "address", n.mac, "netns", n.ns)
		ip("-n", srv, "link", "set", n.port, "master", "br0")
		ip("-n", srv, "link", "set", n.port, "up")
		ip("-n", n.ns, "addr", "add", n.addr+"/24", "dev", "eth0")
		ip("-n", n.ns, "link", "set", "eth0", "up")
		ip("-n", n.ns, "link", "set", "lo", "up")
	}
	ip("-n", srv, "link", "set", "br0", "up")
	ip("-n", srv, "link", "set", "lo", "up")

	a := apptest.New(t, apptest.Options{Netns: srv, HTTPHost: applianceIP, Images: []string{ramImage}, Inventory: `testbeds:
  - domain: id
    nodes:
      - { hrn: ` + hrn1 + `, hostname: node1, control_ip: ` + node1IP + `, control_mac: "` + mac1 + `" }
      - { hrn: ` + hrn2 + `, hostname: node2, control_ip: ` + node2IP + `, control_mac: "` + mac2 + `" }
`})
	a.Start()
	bin := orbitRC(t)
	// rcIn runs a real orbit-rc in namespace ns, enrolling with mac.
	rcIn := func(ns, mac, hostname string) (*apptest.SyncBuffer, string) {
		t.Helper()
		dir := t.TempDir()
		state := filepath.Join(dir, "state")
		out := &apptest.SyncBuffer{}
		cmd := exec.Command("ip", "netns", "exec", ns, bin, "--am", a.URL, "--mac", mac, "--hostname", hostname,
			"--cmdline", "/dev/null", "--image-file", filepath.Join(dir, "none"), "--state-dir", state,
			"--disk-allow", filepath.Join(dir, "disk*"), "--poll-wait", "5s", "--max-backoff", "1s",
			"--reboot-cmd", "true", "--poweroff-cmd", "true", "--log-level", "debug")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill() // an error: it has exited
			_ = cmd.Wait()
		})
		return out, state
	}
	status := func(hrn string) proto.RCStatus {
		t.Helper()
		out, err := a.Nbctl("rc", "status", "--json", hrn)
		var s struct {
			RC proto.RCStatus `json:"rc"`
		}
		if err != nil || json.Unmarshal([]byte(out), &s) != nil {
			t.Fatalf("nbctl rc status %s: %v\n%s", hrn, err, out)
		}
		return s.RC
	}
	waitFor := func(what string, ok func() bool, diag func() string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s\n%s\n--- netbootd:\n%s", what, diag(), a.Log)
			}
		}
	}

	// The impostor: node2's namespace, node1's MAC.
	impostor, impostorState := rcIn(ns2, mac1, "impostor")
	waitFor("the impostor's enrollment refused", func() bool {
		return strings.Contains(impostor.String(), "HTTP 403") && strings.Contains(a.Log.String(), "rc: enrollment refused")
	}, impostor.String)
	if s := status(hrn1); s.Enrolled {
		t.Errorf("node1 after the impostor's attempts: %+v; want not enrolled", s)
	}
	if _, err := os.Stat(filepath.Join(impostorState, "enrollment.json")); err == nil {
		t.Errorf("the impostor kept an enrollment")
	}
	if !apptest.HasLine(a.Log.String(), "rc: enrollment refused", "hrn="+hrn1, "client="+node2IP) {
		t.Errorf("netbootd's log lacks the refusal of %s from %s:\n%s", hrn1, node2IP, a.Log)
	}
	// curl from node2, as node1: the answer says why, and holds no secret.
	curl := func(ns, mac string) (string, string) {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}",
			"-H", "Content-Type: application/json", "-d", `{"macs":["`+mac+`"],"image":"`+ramImage+`"}`, a.URL+"/api/v1/rc/enroll").CombinedOutput()
		if err != nil {
			t.Fatalf("curl from %s: %v\n%s", ns, err, out)
		}
		body, code, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return code, body
	}
	if code, body := curl(ns2, mac1); code != "403" || strings.Contains(body, "secret") || !strings.Contains(body, "not from "+node2IP) {
		t.Errorf("curl enroll as node1 from node2: %s %s; want 403 saying why, no secret", code, body)
	}

	// The real node1, from its own address, enrolls; so does node2 as
	// itself from the namespace the impostor used.
	rcIn(ns1, mac1, "node1")
	rcIn(ns2, mac2, "node2")
	for _, n := range []struct{ hrn, hostname, addr string }{{hrn1, "node1", node1IP}, {hrn2, "node2", node2IP}} {
		var s proto.RCStatus
		waitFor(n.hrn+" enrolled", func() bool {
			s = status(n.hrn)
			return s.Enrolled && s.Online
		}, impostor.String)
		if s.Hostname != n.hostname || !strings.Contains(strings.Join(s.Addresses, " "), n.addr) {
			t.Errorf("%s: %+v; want hostname %s, address %s", n.hrn, s, n.hostname, n.addr)
		}
	}
	// The impostor, still trying, never takes node1's enrollment.
	before := status(hrn1)
	mark := len(impostor.String())
	waitFor("another refusal of the impostor", func() bool { return strings.Contains(impostor.String()[mark:], "HTTP 403") }, impostor.String)
	if after := status(hrn1); after.Enrollment != before.Enrollment || after.Hostname != "node1" {
		t.Errorf("node1's enrollment changed under the impostor: %+v -> %+v", before, after)
	}
}
