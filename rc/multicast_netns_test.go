package rc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

const (
	mcChunk  = 64 << 10
	mcChunks = 256 // a 16 MiB disk
)

// mcDisk is a disk of mcChunks chunks: zeros, random (from seed) and
// text chunks in a pattern.
func mcDisk(seed uint64) []byte {
	return zstdtest.MixedDisk(mcChunks*mcChunk, mcChunk, "zzrrrttt", seed)
}

// TestMulticastLoadInNamespaces is issue 16's test (a)-(d) with real
// processes: netbootd and 20 orbit-rc nodes, each in a network namespace
// of its own on one bridge, file-backed disks.
//
//	(a) one image onto 20 nodes in one multicast session, nftables dropping
//	    5% of the multicast datagrams to five of them: every disk byte-exact,
//	    and the appliance sent a fraction of what 20 HTTP streams would;
//	(b) a node that joins after the session began, and one whose multicast
//	    nftables drops entirely (it fetches over HTTP), both finish;
//	(c) a reload after 3 of 256 chunks changed writes exactly those;
//	(d) netbootd killed (-9) mid-session and started again: every load
//	    finishes, the disks byte-exact.
func TestMulticastLoadInNamespaces(t *testing.T) {
	testenv.Programs(t, "Debian: nftables, curl", "nft", "curl")
	const nodes = 20
	l := newNetLab(t, nodes)
	// A slow session, so that a late node and a kill find it under way.
	a := l.appliance("imaging: { multicast: 239.255.77.0/28, port_range: 41000-41015, rate: 40Mbit, source: " + applianceIP + ", fallback: 3s }\n")
	lossy, blocked, late := l.nodes[:5], l.nodes[5], l.nodes[6]
	nft := func(n labNode, rule string) {
		t.Helper()
		for _, args := range [][]string{
			{"add", "table", "inet", "loss"},
			{"add", "chain", "inet", "loss", "in", "{ type filter hook input priority 0; }"},
			{"add", "rule", "inet", "loss", "in", rule},
		} {
			if out, err := exec.Command("ip", append([]string{"netns", "exec", n.ns, "nft"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), n.ns, err, out)
			}
		}
	}
	for _, n := range lossy {
		nft(n, "ip daddr 239.0.0.0/8 numgen random mod 100 < 5 drop")
	}
	nft(blocked, "ip daddr 239.0.0.0/8 drop")

	// api calls the appliance from its own namespace with the admin token.
	api := func(method, path, body string) string {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", l.srv, "curl", "-sS", "--max-time", "30", "-X", method,
			"-H", "Authorization: Bearer "+a.Token, "-H", "Content-Type: application/json", "-d", body,
			"-o", "-", "-w", "\n%{http_code}", a.URL+path).CombinedOutput()
		text, code, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if err != nil || !strings.HasPrefix(code, "2") {
			t.Fatalf("%s %s: %v: %s %s", method, path, err, code, text)
		}
		return text
	}
	put := func(name string, raw []byte) int64 {
		t.Helper()
		file := filepath.Join(t.TempDir(), name+".raw")
		testenv.WriteFile(t, file, raw)
		if out, err := a.Nbctl("disk", "put", "--chunk-size", strconv.Itoa(mcChunk), name, file); err != nil {
			t.Fatalf("nbctl disk put: %v\n%s", err, out)
		}
		fi, err := os.Stat(filepath.Join(a.Dir, "state", "images", name+".nbi"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	sent := func() int64 {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", l.srv, "cat", "/sys/class/net/br0/statistics/tx_bytes").Output()
		n, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil || perr != nil {
			t.Fatalf("br0 tx_bytes: %v %v", err, perr)
		}
		return n
	}

	type rcNode struct {
		labNode
		out  *apptest.SyncBuffer
		disk string
	}
	rcs := map[string]*rcNode{}
	startRC := func(n labNode) {
		out, dir := l.rc(a, n, n.mac, n.hostname)
		disk := filepath.Join(dir, "disk0")
		// Half the disks hold something else, half are empty files.
		var old []byte
		if n.ip[len(n.ip)-1]%2 == 0 {
			old = mcDisk(99)
		}
		testenv.WriteFile(t, disk, old)
		rcs[n.hrn] = &rcNode{labNode: n, out: out, disk: disk}
	}
	online := func(ns ...labNode) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			var st []proto.RCStatus
			if err := json.Unmarshal([]byte(api("GET", "/api/v1/rc", "")), &st); err != nil {
				t.Fatal(err)
			}
			up := map[string]bool{}
			for _, s := range st {
				up[s.HRN] = s.Enrolled && s.Online
			}
			missing := 0
			for _, n := range ns {
				if !up[n.hrn] {
					missing++
				}
			}
			if missing == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d RCs not online within 60s\n--- netbootd:\n%s", missing, a.Log)
			}
		}
	}
	load := func(n labNode, image string) int64 {
		t.Helper()
		var st proto.CommandStatus
		body := fmt.Sprintf(`{"type":"LOAD_IMAGE","image":%q,"disk":%q,"multicast":true}`, image, rcs[n.hrn].disk)
		if err := json.Unmarshal([]byte(api("POST", "/api/v1/nodes/"+n.hrn+"/commands", body)), &st); err != nil {
			t.Fatal(err)
		}
		return st.ID
	}
	status := func(id int64) proto.CommandStatus {
		t.Helper()
		var st proto.CommandStatus
		if err := json.Unmarshal([]byte(api("GET", fmt.Sprintf("/api/v1/commands/%d", id), "")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// wait waits for every command to end and wants each done.
	wait := func(what string, ids map[string]int64) map[string]proto.CommandStatus {
		t.Helper()
		out := map[string]proto.CommandStatus{}
		for deadline := time.Now().Add(3 * time.Minute); len(out) < len(ids); time.Sleep(250 * time.Millisecond) {
			for hrn, id := range ids {
				if _, ok := out[hrn]; ok {
					continue
				}
				if st := status(id); proto.Terminal(st.State) {
					out[hrn] = st
					if st.State != proto.StateDone {
						t.Errorf("%s: %s's load %s: %s\n%s", what, hrn, st.State, st.Error, rcs[hrn].out)
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d loads over within 3 minutes\n--- netbootd:\n%s", what, len(out), len(ids), a.Log)
			}
		}
		return out
	}
	checkDisks := func(what string, raw []byte) {
		t.Helper()
		for hrn, n := range rcs {
			if got, err := os.ReadFile(n.disk); err != nil || !bytes.Equal(got, raw) {
				t.Errorf("%s: %s's disk differs from the image (%v)", what, hrn, err)
			}
		}
	}

	// (a), (b): the session, with a late node and one without multicast.
	raw1 := mcDisk(1)
	stored := put("grid-1", raw1)
	for _, n := range l.nodes {
		if n != late {
			startRC(n)
		}
	}
	online(l.nodes[:6]...)
	online(l.nodes[7:]...)
	before := sent()
	ids := map[string]int64{}
	for _, n := range l.nodes {
		if n != late {
			ids[n.hrn] = load(n, "grid-1")
		}
	}
	for deadline := time.Now().Add(time.Minute); status(ids[l.nodes[10].hrn]).Progress.Fetched == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no chunk fetched within a minute\n--- netbootd:\n%s", a.Log)
		}
	}
	startRC(late)
	online(late)
	ids[late.hrn] = load(late, "grid-1")
	done := wait("first load", ids)
	bytesSent := sent() - before
	checkDisks("first load", raw1)
	t.Logf("first load: the appliance sent %d bytes for a %d-byte image onto %d nodes (%.1fx the image; HTTP streams: %dx)",
		bytesSent, stored, nodes, float64(bytesSent)/float64(stored), nodes)
	if bytesSent > 5*stored {
		t.Errorf("the appliance sent %d bytes, %.1fx the image: multicast would send it about once, HTTP %d times",
			bytesSent, float64(bytesSent)/float64(stored), nodes)
	}
	if !strings.Contains(rcs[blocked.hrn].out.String(), "multicast: fetching the rest over HTTP") {
		t.Errorf("%s, multicast blocked, did not fall back to HTTP:\n%s", blocked.hrn, rcs[blocked.hrn].out)
	}
	for hrn, st := range done {
		if hrn != blocked.hrn && !strings.Contains(rcs[hrn].out.String(), "multicast: every needed chunk received") {
			t.Errorf("%s did not take its chunks by multicast (%+v):\n%s", hrn, st.Progress, rcs[hrn].out)
		}
	}

	// (c) delta: 3 chunks of 256 changed.
	raw2 := bytes.Clone(raw1)
	for _, i := range []int{3, 100, 202} { // random chunks: another seed changes them
		copy(raw2[i*mcChunk:(i+1)*mcChunk], mcDisk(7)[i*mcChunk:(i+1)*mcChunk])
	}
	put("grid-2", raw2)
	ids = map[string]int64{}
	for _, n := range l.nodes {
		ids[n.hrn] = load(n, "grid-2")
	}
	for hrn, st := range wait("delta load", ids) {
		if st.Progress.Written != 3*mcChunk || st.Progress.Skipped != int64(len(raw2))-3*mcChunk {
			t.Errorf("%s: delta load wrote %d, skipped %d; want 3 chunks (%d bytes) written, the rest skipped",
				hrn, st.Progress.Written, st.Progress.Skipped, 3*mcChunk)
		}
	}
	checkDisks("delta load", raw2)

	// (d) netbootd killed mid-session.
	raw3 := mcDisk(3)
	put("grid-3", raw3)
	ids = map[string]int64{}
	for _, n := range l.nodes {
		ids[n.hrn] = load(n, "grid-3")
	}
	for deadline := time.Now().Add(time.Minute); status(ids[l.nodes[10].hrn]).Progress.Fetched == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no chunk of grid-3 fetched within a minute\n--- netbootd:\n%s", a.Log)
		}
	}
	a.Kill()
	a.Start()
	wait("load across a netbootd kill", ids)
	checkDisks("load across a netbootd kill", raw3)
}
