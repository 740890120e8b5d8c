package rc_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
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
	testenv.Programs(t, "Debian: curl", "curl")
	l := newNetLab(t, 2)
	n1, n2 := l.nodes[0], l.nodes[1]
	ns2 := n2.ns
	node2IP := n2.ip
	mac1, hrn1 := n1.mac, n1.hrn
	a := l.appliance("")
	// rcIn runs a real orbit-rc in the namespace of node n, enrolling with mac.
	rcIn := func(n labNode, mac, hostname string) (*apptest.SyncBuffer, string) {
		t.Helper()
		out, dir := l.rc(a, n, mac, hostname)
		return out, filepath.Join(dir, "state")
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
	impostor, impostorState := rcIn(n2, mac1, "impostor")
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
	rcIn(n1, n1.mac, "node1")
	rcIn(n2, n2.mac, "node2")
	for _, n := range []struct{ hrn, hostname, addr string }{{n1.hrn, "node1", n1.ip}, {n2.hrn, "node2", n2.ip}} {
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
