package am

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/guard"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// fuzzInventory has a hostname in two domains (ambiguous without domain=)
// and nodes with and without an image of their own.
const fuzzInventory = `images:
  - { name: orbit-2.0.0 }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8.orbit-lab.org, hostname: node1-1, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", x: 1, y: 1, pxe_image: orbit-2.0.0 }
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, cmc_ip: 10.1.1.2 }
      - { hrn: node2-1.sb8.orbit-lab.org, hostname: node2-1, control_ip: 10.18.2.1, control_mac: "00:03:1d:0c:02:01", x: 2, y: 1, pxe_image: missing-image }
  - domain: grid
    nodes:
      - { hrn: node1-1.grid.orbit-lab.org, hostname: node1-1, control_ip: 10.10.1.1, control_mac: "00:03:1d:0a:01:01", x: 1, y: 1 }
`

// omfFixture is an AM on a real store and cfg_dir, with one boot link set
// (node1-2 -> orbit-2.0.1) that every fuzz input starts from.
type omfFixture struct {
	srv   *Server
	st    *store.Store
	links *pxelink.Manager
	dir   string
	nodes map[string]inventory.Node // by hrn
}

// fuzzDefaultImage is the AM's default image: the JSON API's, never the
// OMF calls'.
const fuzzDefaultImage = "default-image"

var fuzzBaseline = []pxelink.Target{{HRN: "node1-2.sb8.orbit-lab.org", IP: "10.18.1.2", Image: "orbit-2.0.1"}}

func newOMFFixture(tb testing.TB) *omfFixture {
	ctx := context.Background()
	st, err := store.Open(ctx, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	inv, err := inventory.ParseFile([]byte(fuzzInventory))
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.Import(ctx, inv); err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(tb.TempDir(), "pxelinux.cfg")
	at := time.Unix(1_000_000, 0)
	log := slog.New(slog.DiscardHandler)
	links, err := pxelink.New(pxelink.Config{Dir: dir, Lifetime: time.Hour, Now: func() time.Time { return at }}, st, log)
	if err != nil {
		tb.Fatal(err)
	}
	for _, img := range []string{"orbit-2.0.0", "orbit-2.0.1", fuzzDefaultImage} {
		if err := os.WriteFile(filepath.Join(dir, img), []byte("DEFAULT x\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	gin.SetMode(gin.ReleaseMode)
	fx := &omfFixture{srv: New(Config{DefaultImage: fuzzDefaultImage, Guard: guard.New(guard.Config{OMFAllow: guard.DefaultOMFAllow()}, st)}, st, links, log), st: st, links: links, dir: dir, nodes: map[string]inventory.Node{}}
	all, err := st.Nodes(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range all {
		fx.nodes[n.HRN] = n
	}
	fx.reset(tb)
	return fx
}

// reset puts the links back to the baseline.
func (fx *omfFixture) reset(tb testing.TB) {
	ctx := context.Background()
	var all []pxelink.Target
	for _, n := range fx.nodes {
		all = append(all, pxelink.Target{HRN: n.HRN, IP: n.ControlIP})
	}
	if err := fx.links.Clear(ctx, all); err != nil {
		tb.Fatal(err)
	}
	if _, err := fx.links.Set(ctx, fuzzBaseline, 0); err != nil {
		tb.Fatal(err)
	}
}

// linkState is what a call may change: hex name -> image, as recorded in
// the database and as found in cfg_dir. The two must always agree.
func (fx *omfFixture) linkState(tb testing.TB) map[string]string {
	tb.Helper()
	recorded, err := fx.links.List(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	db := map[string]string{}
	for _, l := range recorded {
		db[l.Hex+" "+l.HRN] = l.Image
	}
	entries, err := os.ReadDir(fx.dir)
	if err != nil {
		tb.Fatal(err)
	}
	disk := map[string]string{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fx.dir, e.Name()))
		if err != nil {
			continue // an image file
		}
		disk[e.Name()] = strings.TrimPrefix(target, "./")
	}
	onDisk := map[string]string{}
	for k, img := range db {
		hex, _, _ := strings.Cut(k, " ")
		onDisk[hex] = img
	}
	if diff := cmp.Diff(onDisk, disk); diff != "" {
		tb.Fatalf("cfg_dir and the database disagree (-database +cfg_dir):\n%s", diff)
	}
	return db
}

// omfMethods are the calls whose query the fuzzer writes.
var omfMethods = []string{
	"/pxe/setBootImageNS", "/pxe/clearBootImageNS", "/pxe/setBootImage", "/pxe/clearBootImage",
	"/inventory/getControlIP", "/inventory/getPXEImage", "/inventory/getCmcIP", "/inventory/getDefaultDisk",
	"/inventory/getHRN", "/inventory/getMacAddress", "/inventory/getListOfResources",
}

type xmlSetReply struct {
	Status string `xml:"status,attr"`
	Nodes  []struct {
		HRN string `xml:"hrn,attr"`
		IP  string `xml:"ip,attr"`
		Img string `xml:"img,attr"`
		Hex string `xml:"hex,attr"`
	} `xml:"action>nodes>node"`
}

// FuzzOMFQuery sends fuzzed query strings to the OMF /pxe and /inventory
// calls of an AM on a real store and cfg_dir, as an Experiment Controller
// would (seeds: the queries OMF 5.4's EC and nbctl send). It checks:
//   - the query parser accepts only what it promises (every required
//     argument once, bounded, in UTF-8 that XML can carry, each value the
//     query's own) and the node-set parser yields valid names only, in a
//     form it parses back the same;
//   - every answer is 200, 400, 404 or 409 (never a 500 or a panic) in
//     XML that is well-formed whatever the query echoes back, and a
//     failure's message names the call;
//   - a refused call changes no boot link, in the database or in cfg_dir;
//     an accepted set links exactly the nodes it names in its answer, each
//     to the image asked for, else its own (never the default: the OMF
//     service has none), and leaves the others alone; an accepted clear
//     only removes links.
func FuzzOMFQuery(f *testing.F) {
	for _, q := range []struct {
		m     uint8
		query string
	}{
		{0, "domain=sb8&ns=node1-1.sb8.orbit-lab.org,node1-2.sb8.orbit-lab.org&imgName=orbit-2.0.0"},
		{0, "domain=sb8&ns=node1-1,%20node1-2,node2-1"},
		{0, "domain=grid&ns=node1-1"},
		{0, "domain=sb8&ns=node1-1,node1-1.sb8.orbit-lab.org,,&imgName=orbit-2.0.1"},
		{0, "domain=sb8&ns=node9-9&imgName=orbit-2.0.0"},
		{0, "domain=sb8&ns=node1-1&imgName=../../etc/passwd"},
		{0, "domain=sb8&ns=node1-1&imgName=0A120101"},
		{0, "domain=sb8&ns=node1-1&ns=node1-2"},
		{0, "domain=sb8;ns=node1-1"},
		{0, "domain=sb8&ns=node1-1%00&imgName=orbit-2.0.0"},
		{0, "domain=sb8&ns=node1-1%2Cnode1-2+"},
		{1, "domain=sb8&ns=node1-2.sb8.orbit-lab.org"},
		{1, "domain=sb8&ns=node1-1,node1-2"},
		{1, "domain=grid&ns=node1-2"},
		{2, "node=node1-1"},
		{2, "node=node1-1&domain=grid&image=orbit-2.0.0"},
		{2, "node=node1-2.sb8.orbit-lab.org&image=default"},
		{3, "node=node1-2&domain=sb8"},
		{3, "node=%ZZ"},
		{4, "hrn=node1-1.sb8.orbit-lab.org&domain=sb8"},
		{5, "hrn=node2-1.sb8.orbit-lab.org&domain=sb8"},
		{6, "hrn=node1-2.sb8.orbit-lab.org&domain=sb8"},
		{7, "hrn=node1-1.grid.orbit-lab.org&domain=grid"},
		{8, "hrn=node1-1&domain=sb8"},
		{9, "hrn=node1-1.sb8.orbit-lab.org&domain=sb8&ifname=eth1"},
		{9, "hrn=<x>&domain=sb8&ifname=<b>'&amp;"},
		{10, "domain=sb8"},
		{10, "domain=" + strings.Repeat("a", 2000)},
	} {
		f.Add(q.m, q.query)
	}
	fx := newOMFFixture(f)
	groups := fx.srv.omfGroups()
	argsOf := map[string][]omfArg{}
	for _, g := range groups {
		for _, m := range g.methods {
			argsOf["/"+g.name+"/"+m.name] = m.args
		}
	}
	f.Fuzz(func(t *testing.T, m uint8, query string) {
		path := omfMethods[int(m)%len(omfMethods)]
		checkOMFParams(t, query, argsOf[path])

		before := fx.linkState(t)
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = &url.URL{Path: path, RawQuery: query}
		req.RequestURI = req.URL.RequestURI()
		req.RemoteAddr = "127.0.0.1:40000" // an EC on this host: omf.allow's default
		rec := httptest.NewRecorder()
		fx.srv.Handler().ServeHTTP(rec, req)
		after := fx.linkState(t)
		body := rec.Body.String()

		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusConflict:
		default:
			t.Fatalf("%s?%s: %d %s", path, query, rec.Code, body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
			t.Fatalf("%s?%s: %d with Content-Type %q: %s", path, query, rec.Code, ct, body)
		}
		checkXML(t, body)
		if rec.Code != http.StatusOK {
			if msg := xmlText(t, body); !strings.HasPrefix(msg, path[strings.LastIndex(path, "/")+1:]+": ") {
				t.Fatalf("%s?%s: %d that does not name the call: %q", path, query, rec.Code, body)
			}
		}

		setCall := strings.HasPrefix(path, "/pxe/set")
		switch {
		case rec.Code != http.StatusOK || !strings.HasPrefix(path, "/pxe/"):
			if diff := cmp.Diff(before, after); diff != "" {
				t.Fatalf("%s?%s answered %d yet changed the links (-before +after):\n%s", path, query, rec.Code, diff)
			}
		case setCall:
			fx.checkSet(t, path, query, body, before, after)
		default: // an accepted clear
			for k, img := range after {
				if before[k] != img {
					t.Fatalf("%s?%s made or changed link %s -> %s", path, query, k, img)
				}
			}
		}
		if rec.Code == http.StatusOK && strings.HasPrefix(path, "/pxe/") {
			fx.reset(t)
		}
	})
}

// checkOMFParams checks the query parser alone against the query as Go's
// own parser reads it.
func checkOMFParams(t *testing.T, query string, args []omfArg) {
	p, err := omfParams(query, args)
	if err != nil {
		if apierr.Status(err) != http.StatusBadRequest || p != nil {
			t.Fatalf("omfParams(%q): %v (status %d), %v", query, err, apierr.Status(err), p)
		}
		return
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("omfParams accepted %q, which does not parse: %v", query, err)
	}
	for _, a := range args {
		v, ok := p[a.name]
		if !ok {
			if a.required() {
				t.Fatalf("omfParams(%q) accepted it without %q", query, a.name)
			}
			continue
		}
		limit := a.maxBytes
		if limit == 0 {
			limit = maxParam
		}
		if v == "" || len(v) > limit || strings.IndexFunc(v, unicode.IsControl) >= 0 || len(q[a.name]) != 1 || q[a.name][0] != v {
			t.Fatalf("omfParams(%q)[%q] = %q: empty, oversized, with a control character, or not the query's value %q", query, a.name, v, q[a.name])
		}
		if !utf8.ValidString(v) || strings.ContainsAny(v, "\uFFFE\uFFFF") {
			t.Fatalf("omfParams(%q)[%q] = %q: XML cannot carry it", query, a.name, v)
		}
		if a.name == "ns" || a.name == "node" {
			checkNodeSet(t, v)
		}
	}
	if len(p) > len(args) {
		t.Fatalf("omfParams(%q) = %v: more than its %d arguments", query, p, len(args))
	}
}

func checkNodeSet(t *testing.T, ns string) {
	names, err := splitNodeSet(ns)
	if err != nil {
		if apierr.Status(err) != http.StatusBadRequest {
			t.Fatalf("splitNodeSet(%q): %v is not a 400", ns, err)
		}
		return
	}
	if len(names) == 0 {
		t.Fatalf("splitNodeSet(%q) accepted no name", ns)
	}
	for _, n := range names {
		if !inventory.ValidName(n) || strings.ContainsAny(n, ", ") {
			t.Fatalf("splitNodeSet(%q) yields %q", ns, n)
		}
	}
	again, err := splitNodeSet(strings.Join(names, ","))
	if err != nil || !cmp.Equal(names, again) {
		t.Fatalf("splitNodeSet(%q) = %q, which joined parses to %q, %v", ns, names, again, err)
	}
}

// checkXML: the answer is one well-formed XML element.
func checkXML(t *testing.T, body string) {
	dec := xml.NewDecoder(strings.NewReader(body))
	depth, roots := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("answer is not well-formed XML: %v\n%s", err, body)
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if roots != 1 || depth != 0 {
		t.Fatalf("answer has %d root elements: %s", roots, body)
	}
}

// xmlText is the text an XML answer carries: an OMF error's message.
func xmlText(t *testing.T, body string) string {
	var b strings.Builder
	dec := xml.NewDecoder(strings.NewReader(body))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return b.String()
		}
		if err != nil {
			t.Fatalf("answer is not well-formed XML: %v\n%s", err, body)
		}
		if cd, ok := tok.(xml.CharData); ok {
			b.Write(cd)
		}
	}
}

// checkSet: an accepted set call linked exactly the nodes its answer lists,
// each to the right image, and touched no other link.
func (fx *omfFixture) checkSet(t *testing.T, path, query, body string, before, after map[string]string) {
	var r xmlSetReply
	if err := xml.Unmarshal([]byte(body), &r); err != nil || r.Status != "OK" || len(r.Nodes) == 0 {
		t.Fatalf("%s?%s: 200 %q (%v)", path, query, body, err)
	}
	q, _ := url.ParseQuery(query)
	asked := q.Get("imgName")
	if path == "/pxe/setBootImage" {
		asked = q.Get("image")
	}
	want := map[string]string{}
	for k, img := range before {
		want[k] = img
	}
	var hrns []string
	for _, n := range r.Nodes {
		node, ok := fx.nodes[n.HRN]
		if !ok {
			t.Fatalf("%s?%s linked unknown node %q", path, query, n.HRN)
		}
		img := asked
		if img == "" {
			img = node.PXEImage
		}
		hex, _ := pxelink.HexName(node.ControlIP)
		if n.IP != node.ControlIP || n.Img != img || n.Hex != hex {
			t.Fatalf("%s?%s: answer %+v for node %+v, want image %q", path, query, n, node, img)
		}
		want[hex+" "+n.HRN] = img
		hrns = append(hrns, n.HRN)
	}
	sort.Strings(hrns)
	for i := 1; i < len(hrns); i++ {
		if hrns[i] == hrns[i-1] {
			t.Fatalf("%s?%s: node %s twice in %s", path, query, hrns[i], body)
		}
	}
	if diff := cmp.Diff(want, after); diff != "" {
		t.Fatalf("%s?%s: links (-want +got):\n%s", path, query, diff)
	}
}
