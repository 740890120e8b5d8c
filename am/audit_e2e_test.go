package am_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/apptest"
)

// call sends a request from ip and returns the whole answer.
func call(t *testing.T, ip, method, url, body string, header http.Header) apptest.Response {
	t.Helper()
	return apptest.CallWith(t, apptest.ClientFrom(ip), method, url, body, header)
}

// TestAuditAndLimits drives a real netbootd with small limits: mutations
// and refusals are on record for nbctl audit and curl, reads and RC polls
// are not; floods of failed authentication, enrollment and OMF calls from
// one source are refused with 429 and Retry-After while other sources go
// on; each limited source is logged once, not per request.
func TestAuditAndLimits(t *testing.T) {
	// The nodes' control IPs are loopback addresses, so that this test's
	// RCs enroll from them (an RC enrolls only from its node's address).
	inv := strings.NewReplacer("control_ip: 10.18.1.1,", "control_ip: 127.0.0.4,", "control_ip: 10.18.1.2,", "control_ip: 127.0.0.5,").Replace(inventoryYAML)
	a := apptest.New(t, apptest.Options{Inventory: inv, Images: []string{"orbit-2.0.0", "default-image"},
		Extra: "pxe: { default_image: default-image }\n" +
			"limits: { enroll: { per_minute: 6, burst: 3 }, auth_fail: { per_minute: 6, burst: 3 }, omf: { per_minute: 6, burst: 4 } }\n"})
	a.Start()
	jsonHdr := http.Header{"Content-Type": {"application/json"}}
	const hrn = "node1-1.sb8.orbit-lab.org"

	// Mutations from 127.0.0.1, and reads that are not.
	if r := a.Call(t, "PUT", "/api/v1/nodes/node1-1/boot?domain=sb8", `{"image":"orbit-2.0.0"}`, jsonHdr); r.Status != 200 {
		t.Fatalf("boot set = %d %s", r.Status, r.Body)
	}
	if r := apptest.Call(t, "GET", a.URL+"/pxe/clearBootImageNS?domain=sb8&ns=node1-1,node1-2", "", nil); r.Status != 200 {
		t.Fatalf("OMF clear = %d %s", r.Status, r.Body)
	}
	apptest.Call(t, "GET", a.URL+"/api/v1/nodes", "", nil)
	apptest.Call(t, "GET", a.URL+"/inventory/getAllNodes", "", nil)

	t.Run("failed authentication", func(t *testing.T) {
		bad := http.Header{"Authorization": {"Bearer not-a-secret"}}
		for i := range 3 {
			if r := call(t, "127.0.0.2", "GET", a.URL+"/api/v1/rc/poll", "", bad); r.Status != 401 {
				t.Fatalf("bad bearer %d = %d %s, want 401", i, r.Status, r.Body)
			}
		}
		for range 3 { // refused on every try: one log line all the same
			r := call(t, "127.0.0.2", "GET", a.URL+"/api/v1/rc/poll", "", bad)
			var body apiv1.ErrorBody
			if r.Status != 429 || r.Header.Get("Retry-After") != "10" || json.Unmarshal([]byte(r.Body), &body) != nil ||
				body.Error != "too many failed authentications from 127.0.0.2: try again in 10 s" {
				t.Fatalf("bad bearer over the limit = %d Retry-After %q %s; want 429, 10, the reason", r.Status, r.Header.Get("Retry-After"), r.Body)
			}
		}
		// A good request from the limited source waits too: it is the
		// source that is refused, not the token.
		if r := call(t, "127.0.0.2", "GET", a.URL+"/api/v1/nodes", "", nil); r.Status != 429 {
			t.Errorf("read from the limited source = %d, want 429", r.Status)
		}
		if r := call(t, "127.0.0.3", "GET", a.URL+"/api/v1/rc/poll", "", bad); r.Status != 401 {
			t.Errorf("bad bearer from another source = %d %s, want 401", r.Status, r.Body)
		}
	})

	t.Run("enrollment flood", func(t *testing.T) {
		unknown := `{"macs":["02:00:00:00:00:99"]}`
		if r := call(t, "127.0.0.4", "POST", a.URL+"/api/v1/rc/enroll", unknown, jsonHdr); r.Status != 404 {
			t.Fatalf("enroll unknown MAC = %d %s, want 404", r.Status, r.Body)
		}
		for range 2 {
			if r := call(t, "127.0.0.4", "POST", a.URL+"/api/v1/rc/enroll", `{"macs":["00:03:1d:0c:01:01"]}`, jsonHdr); r.Status != 200 {
				t.Fatalf("enroll = %d %s, want 200", r.Status, r.Body)
			}
		}
		r := call(t, "127.0.0.4", "POST", a.URL+"/api/v1/rc/enroll", unknown, jsonHdr)
		if r.Status != 429 || r.Header.Get("Retry-After") != "10" || !strings.Contains(r.Body, "too many enrollments from 127.0.0.4") {
			t.Fatalf("4th enrollment = %d Retry-After %q %s; want 429, 10, the reason", r.Status, r.Header.Get("Retry-After"), r.Body)
		}
		if r := call(t, "127.0.0.5", "POST", a.URL+"/api/v1/rc/enroll", `{"macs":["00:03:1d:0c:01:02"]}`, jsonHdr); r.Status != 200 {
			t.Errorf("enrollment of another node from its own address = %d %s, want 200", r.Status, r.Body)
		}
	})

	t.Run("OMF flood", func(t *testing.T) {
		for i := range 4 {
			if r := call(t, "127.0.0.6", "GET", a.URL+"/inventory/getAllTestbeds", "", nil); r.Status != 200 {
				t.Fatalf("OMF call %d = %d %s, want 200", i, r.Status, r.Body)
			}
		}
		r := call(t, "127.0.0.6", "GET", a.URL+"/cmc/reset?hrn=node1-1&domain=sb8", "", nil)
		if want := "<ERROR>reset: too many OMF calls from 127.0.0.6: try again in 10 s</ERROR>"; r.Status != 429 ||
			r.Header.Get("Retry-After") != "10" || r.Body != want || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/xml") {
			t.Fatalf("OMF call over the limit = %d Retry-After %q %q %s; want 429, 10, %q", r.Status, r.Header.Get("Retry-After"),
				r.Header.Get("Content-Type"), r.Body, want)
		}
		if r := call(t, "127.0.0.7", "GET", a.URL+"/inventory/getAllTestbeds", "", nil); r.Status != 200 {
			t.Errorf("OMF call from another source = %d, want 200", r.Status)
		}
	})

	t.Run("one log line per limited source", func(t *testing.T) {
		for _, src := range []string{"127.0.0.2", "127.0.0.4", "127.0.0.6"} {
			n := 0
			for _, line := range strings.Split(a.Log.String(), "\n") {
				if strings.Contains(line, `msg="source rate-limited"`) && strings.Contains(line, " client="+src+" ") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d log lines about limiting %s, want 1\n%s", n, src, a.Log)
			}
		}
	})

	t.Run("nbctl audit", func(t *testing.T) {
		out, err := a.Nbctl("audit")
		if err != nil {
			t.Fatalf("nbctl audit: %v\n%s", err, out)
		}
		for _, want := range [][]string{
			{"TIME", "WHO", "ROLE", "ADDR", "CALL", "TARGET", "STATUS", "DETAIL"},
			{"127.0.0.1", "PUT /api/v1/nodes/:hrn/boot", hrn, "200"},
			{"127.0.0.1", "GET /pxe/clearBootImageNS", hrn + ",node1-2.sb8.orbit-lab.org", "200"},
			{"127.0.0.4", "POST /api/v1/rc/enroll", "02:00:00:00:00:99", "404"},
			{"127.0.0.4", "POST /api/v1/rc/enroll", hrn, "200"},
			{"127.0.0.4", "POST /api/v1/rc/enroll", "429", "too many enrollments"},
			{"127.0.0.6", "GET /cmc/reset", "node1-1", "429", "too many OMF calls"},
		} {
			if !apptest.HasLine(out, want...) {
				t.Errorf("nbctl audit has no line with %q:\n%s", want, out)
			}
		}
		for _, never := range []string{"/rc/poll", "getAllNodes", "getAllTestbeds", "GET /api/v1/nodes"} {
			if strings.Contains(out, never) {
				t.Errorf("nbctl audit shows %s, which changes nothing:\n%s", never, out)
			}
		}
		out, err = a.Nbctl("audit", "--since", "1h", "--node", "node1-2.sb8.orbit-lab.org")
		if err != nil {
			t.Fatalf("nbctl audit --node: %v\n%s", err, out)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 ||
			!apptest.HasLine(out, "clearBootImageNS", "200") || !apptest.HasLine(out, "POST /api/v1/rc/enroll", "127.0.0.5", "200") {
			t.Errorf("nbctl audit --node node1-2: want the header, the OMF clear naming it and its enrollment:\n%s", out)
		}
		if out, err := a.Nbctl("audit", "--since", "soon"); err == nil || !strings.Contains(out, `since: "soon"`) {
			t.Errorf("nbctl audit --since soon: %v\n%s; want the appliance's 400", err, out)
		}
	})

	t.Run("curl", func(t *testing.T) {
		out, err := exec.Command("curl", "-sS", "--fail-with-body", "-H", "Authorization: Bearer "+a.Token, a.URL+"/api/v1/audit?since=1h&node="+hrn+"&limit=2").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		var entries []apiv1.AuditEntry
		if err := json.Unmarshal(out, &entries); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// The newest two about the node: the enrollments from 127.0.0.4.
		if len(entries) != 2 || entries[0].Target != hrn || entries[1].Route != "/api/v1/rc/enroll" || entries[1].Status != 200 {
			t.Errorf("curl audit?node=%s&limit=2 = %+v", hrn, entries)
		}
		out, _ = exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer "+a.Token, a.URL+"/api/v1/audit?limit=-1").CombinedOutput()
		if string(out) != "400" {
			t.Errorf("curl audit?limit=-1 = %s, want 400", out)
		}
	})
}
