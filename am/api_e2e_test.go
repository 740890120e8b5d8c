package am_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/store"
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
	_, inventoryBefore := get(t, a, "/api/v1/inventory")
	linksBefore := dirState(t, a.CfgDir)
	for _, tt := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/nodes/n7.sb8", padJSON(node, maxBody+1)},
		{"PUT", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/boot", padJSON(`{"image":"orbit-2.0.1"}`, maxBody+1)},
		{"POST", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/power", padJSON(`{"action":"status"}`, maxBody+1)},
		{"POST", "/api/v1/inventory", padYAML(doc, maxBody+1)},
	} {
		status, body := send(t, a, tt.method, tt.path, tt.body)
		if status != 413 || body != `{"error":"request body: larger than 16777216 bytes"}` {
			t.Errorf("%s %s with %d bytes = %d %.300q; want 413 and the limit", tt.method, tt.path, len(tt.body), status, body)
		}
	}
	if _, after := get(t, a, "/api/v1/inventory"); after != inventoryBefore {
		t.Errorf("inventory changed by refused bodies:\n%s", cmp.Diff(inventoryBefore, after))
	}
	if diff := cmp.Diff(linksBefore, dirState(t, a.CfgDir)); diff != "" {
		t.Errorf("cfg_dir changed by refused bodies (-before +after):\n%s", diff)
	}

	if status, body := send(t, a, "PUT", "/api/v1/nodes/n7.sb8", padJSON(node, maxBody)); status != 201 {
		t.Errorf("PUT with a body of exactly the limit = %d %.300q, want 201", status, body)
	}
	if status, body := send(t, a, "POST", "/api/v1/inventory", padYAML(doc, maxBody)); status != 200 {
		t.Errorf("import of exactly the limit = %d %.300q, want 200", status, body)
	}
	for _, hrn := range []string{"n7.sb8", "big.sb8"} {
		if status, _ := get(t, a, "/api/v1/nodes/"+hrn); status != 200 {
			t.Errorf("%s not stored from a body of exactly the limit: %d", hrn, status)
		}
	}
}

// TestImportProblems: a rejected import answers 400 with a summary and one
// problem per bad entry, each naming its entry, and changes nothing, not
// even the good entries of the same file.
func TestImportProblems(t *testing.T) {
	a := start(t)
	_, before := get(t, a, "/api/v1/inventory")
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
	status, body := send(t, a, "POST", "/api/v1/inventory", doc)
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
	if _, after := get(t, a, "/api/v1/inventory"); after != before {
		t.Errorf("a rejected import changed the inventory:\n%s", cmp.Diff(before, after))
	}
}

// TestNodeNames: every /api/v1 route about one node takes what OMF's calls
// take: the HRN, or a host name unique in the inventory, or in ?domain=;
// a host name of several nodes is a 409 naming them all, and a name
// found nowhere (or not in the domain named) a 404. inventoryYAML has
// node1-1 in sb8 and in grid.
func TestNodeNames(t *testing.T) {
	a := startRC(t)
	const (
		sb8  = "node1-2.sb8.orbit-lab.org"
		grid = "node1-1.grid.orbit-lab.org"
	)
	// Enrolled RCs give the nodes an event each and let them take
	// commands: every route's answer then names the node it found.
	for _, mac := range []string{"00:03:1d:0c:01:02", "00:03:1d:0a:01:01"} {
		enrollFrom(t, a, mac)
	}
	routes := []struct {
		method, tail, body string
		ok                 int  // the status of a node found
		named              bool // its answer names the node found
	}{
		{"GET", "", "", 200, true},
		{"GET", "/events", "", 200, true},
		{"PUT", "/boot", `{"image":"orbit-2.0.0"}`, 200, true},
		{"DELETE", "/boot", "", 204, false},
		{"POST", "/power", `{"action":"status"}`, 409, true}, // found, but no power driver
		{"GET", "/rc", "", 200, true},
		{"POST", "/commands", `{"type":"ENROLL","image":"orbit-2.0.0"}`, 202, true},
		{"GET", "/commands", "", 200, true},
	}
	names := []struct {
		name, query string
		found       string   // the HRN found, or "" for a failure:
		status      int      // its status
		want        []string // and what its message says
	}{
		{name: sb8, found: sb8},
		{name: "node1-2", found: sb8},
		{name: "node1-1", query: "?domain=grid", found: grid},
		{name: "node1-2", query: "?domain=sb8", found: sb8},
		{name: "node1-1", status: 409, want: []string{`host name of 2 nodes`, "node1-1.grid.orbit-lab.org (domain grid)", "node1-1.sb8.orbit-lab.org (domain sb8)", "name the hrn or the domain"}},
		{name: "ghost", status: 404, want: []string{"ghost", "not found"}},
		{name: "node1-2", query: "?domain=grid", status: 404, want: []string{`node1-2`, `grid`, "not found"}},
		{name: sb8, query: "?domain=grid", status: 404, want: []string{sb8, `grid`, "not found"}},
		{name: "node1-2", query: "?domain=no%20such", status: 400, want: []string{"domain", "not a valid name"}},
	}
	for _, r := range routes {
		for _, n := range names {
			t.Run(r.method+" "+r.tail+" "+n.name+n.query, func(t *testing.T) {
				status, body := send(t, a, r.method, "/api/v1/nodes/"+n.name+r.tail+n.query, r.body)
				want, says := n.status, n.want
				if n.found != "" {
					want, says = r.ok, nil
					if r.named {
						says = []string{n.found}
					}
				}
				if status != want {
					t.Fatalf("= %d %s, want %d", status, body, want)
				}
				for _, w := range says {
					if !strings.Contains(body, w) {
						t.Errorf("= %d %s, want it to say %q", status, body, w)
					}
				}
			})
		}
	}
}

// TestEventsAfter: GET /nodes/{node}/events?after=ID answers the events
// after that one, for a follower (nbctl nodes events --follow); a cursor
// that is no event ID is a 400.
func TestEventsAfter(t *testing.T) {
	a := startRC(t)
	const hrn = "node1-2.sb8.orbit-lab.org"
	for range 3 { // an RC enrolling is an event on the node's timeline
		enrollFrom(t, a, "00:03:1d:0c:01:02")
	}
	events := func(query string) []store.Event {
		t.Helper()
		status, body := get(t, a, "/api/v1/nodes/node1-2/events"+query)
		var evs []store.Event
		if err := json.Unmarshal([]byte(body), &evs); status != 200 || err != nil {
			t.Fatalf("events%s = %d %s, %v", query, status, body, err)
		}
		return evs
	}
	all := events("")
	if len(all) != 3 {
		t.Fatalf("timeline %+v, want 3 enrollments", all)
	}
	for _, tc := range []struct {
		after string
		want  []store.Event
	}{
		{"0", all},
		{fmt.Sprint(all[0].ID), all[1:]},
		{fmt.Sprint(all[2].ID), []store.Event{}},
	} {
		if got := events("?after=" + tc.after); !cmp.Equal(got, tc.want) {
			t.Errorf("after %s: %+v, want %+v", tc.after, got, tc.want)
		}
	}
	for _, bad := range []string{"-1", "x", ""} {
		if status, body := get(t, a, "/api/v1/nodes/"+hrn+"/events?after="+bad); status != 400 || !strings.Contains(body, "not an event id") {
			t.Errorf("after=%q: %d %s, want 400", bad, status, body)
		}
	}
}
