package am_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// maxBody is the request body limit the API documents in its 413 message.
const maxBody = 16 << 20

// padJSON makes a JSON object exactly size bytes long by trailing spaces.
func padJSON(obj string, size int) string { return obj + strings.Repeat(" ", size-len(obj)) }

// padYAML makes a YAML document exactly size bytes long by a comment.
func padYAML(doc string, size int) string {
	return doc + "#" + strings.Repeat("x", size-len(doc)-2) + "\n"
}

// TestBodyLimit: a body one byte over the limit is a 413 that says so, on
// every call that takes a body, and changes nothing; a body of exactly the
// limit is read.
func TestBodyLimit(t *testing.T) {
	a := start(t)
	const node = `{"domain":"sb8","control_ip":"10.18.7.1","control_mac":"00:03:1d:0c:07:01"}`
	const doc = "testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: big.sb8, control_ip: 10.18.7.2, control_mac: \"00:03:1d:0c:07:02\" }\n"
	_, inventoryBefore := get(t, a.URL+"/api/v1/inventory")
	linksBefore := dirState(t, a.CfgDir)
	for _, tt := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/nodes/n7.sb8", padJSON(node, maxBody+1)},
		{"PUT", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/boot", padJSON(`{"image":"orbit-2.0.1"}`, maxBody+1)},
		{"POST", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/power", padJSON(`{"action":"status"}`, maxBody+1)},
		{"POST", "/api/v1/inventory", padYAML(doc, maxBody+1)},
	} {
		status, body := send(t, tt.method, a.URL+tt.path, tt.body)
		if status != 413 || body != `{"error":"request body: larger than 16777216 bytes"}` {
			t.Errorf("%s %s with %d bytes = %d %.300q; want 413 and the limit", tt.method, tt.path, len(tt.body), status, body)
		}
	}
	if _, after := get(t, a.URL+"/api/v1/inventory"); after != inventoryBefore {
		t.Errorf("inventory changed by refused bodies:\n%s", cmp.Diff(inventoryBefore, after))
	}
	if diff := cmp.Diff(linksBefore, dirState(t, a.CfgDir)); diff != "" {
		t.Errorf("cfg_dir changed by refused bodies (-before +after):\n%s", diff)
	}

	if status, body := send(t, "PUT", a.URL+"/api/v1/nodes/n7.sb8", padJSON(node, maxBody)); status != 201 {
		t.Errorf("PUT with a body of exactly the limit = %d %.300q, want 201", status, body)
	}
	if status, body := send(t, "POST", a.URL+"/api/v1/inventory", padYAML(doc, maxBody)); status != 200 {
		t.Errorf("import of exactly the limit = %d %.300q, want 200", status, body)
	}
	for _, hrn := range []string{"n7.sb8", "big.sb8"} {
		if status, _ := get(t, a.URL+"/api/v1/nodes/"+hrn); status != 200 {
			t.Errorf("%s not stored from a body of exactly the limit: %d", hrn, status)
		}
	}
}

// TestImportProblems: a rejected import answers 400 with a summary and one
// problem per bad entry, each naming its entry, and changes nothing, not
// even the good entries of the same file.
func TestImportProblems(t *testing.T) {
	a := start(t)
	_, before := get(t, a.URL+"/api/v1/inventory")
	doc := `testbeds:
  - domain: sb8
    nodes:
      - { hrn: good.sb8, control_ip: 10.18.9.1, control_mac: "00:03:1d:0c:09:01" }
      - { hrn: takes-ip.sb8, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:09:02" }
      - { hrn: bad-ip.sb8, control_ip: 10.18.300.1, control_mac: "00:03:1d:0c:09:03" }
      - { hrn: bad-mac.sb8, control_ip: 10.18.9.4, control_mac: "zz:zz" }
      - { hrn: twice.sb8, control_ip: 10.18.9.5, control_mac: "00:03:1d:0c:09:05" }
      - { hrn: twice.sb8, control_ip: 10.18.9.6, control_mac: "00:03:1d:0c:09:06" }
      - { hrn: same-ip.sb8, control_ip: 10.18.9.1, control_mac: "00:03:1d:0c:09:07" }
`
	status, body := send(t, "POST", a.URL+"/api/v1/inventory", doc)
	var got struct {
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != 400 || err != nil {
		t.Fatalf("import = %d %v %s; want 400 with JSON", status, err, body)
	}
	// One problem per bad entry, and each names the entry it is about.
	for _, entry := range []string{"takes-ip.sb8", "10.18.300.1", "zz:zz", "twice.sb8", "same-ip.sb8"} {
		n := 0
		for _, p := range got.Problems {
			if strings.Contains(p, entry) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d problems name %q, want 1: %q", n, entry, got.Problems)
		}
	}
	if len(got.Problems) != 5 {
		t.Errorf("%d problems, want 5: %q", len(got.Problems), got.Problems)
	}
	for _, p := range got.Problems {
		if strings.Contains(p, "good.sb8") && !strings.Contains(p, "same-ip.sb8") {
			t.Errorf("a problem with the good entry: %q", p)
		}
	}
	if want := "inventory rejected, nothing changed: 5 problem(s)"; got.Error != want {
		t.Errorf("error = %q, want %q", got.Error, want)
	}
	if _, after := get(t, a.URL+"/api/v1/inventory"); after != before {
		t.Errorf("a rejected import changed the inventory:\n%s", cmp.Diff(before, after))
	}
}
