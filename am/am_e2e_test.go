package am_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/qmp"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// These tests drive a real netbootd process over HTTP on loopback.

const inventoryYAML = `images:
  - { name: orbit-2.0.0, description: ORBIT RAM image for imaging }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8.orbit-lab.org, hostname: node1-1, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", x: 1, y: 1, pxe_image: orbit-2.0.0, disk: /dev/sda, cmc_ip: 10.1.1.1 }
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, pxe_image: orbit-2.0.0, disk: /dev/sda }
      - { hrn: node2-1.sb8.orbit-lab.org, hostname: node2-1, control_ip: 10.18.2.1, control_mac: "00:03:1d:0c:02:01", x: 2, y: 1, disk: /dev/hda }
  - domain: grid
    nodes:
      - { hrn: node1-1.grid.orbit-lab.org, hostname: node1-1, control_ip: 10.10.1.1, control_mac: "00:03:1d:0a:01:01", x: 1, y: 1 }
`

func start(t *testing.T, images ...string) *apptest.Appliance {
	t.Helper()
	return startInventory(t, inventoryYAML, images...)
}

// startRC starts an appliance whose inventory gives the nodes that tests
// enroll RCs for loopback control IPs: an RC enrolls only from its node's
// address (enrollFrom).
func startRC(t *testing.T) *apptest.Appliance {
	t.Helper()
	return startInventory(t, strings.NewReplacer("control_ip: 10.18.1.2,", "control_ip: "+rcIP["00:03:1d:0c:01:02"]+",",
		"control_ip: 10.10.1.1,", "control_ip: "+rcIP["00:03:1d:0a:01:01"]+",").Replace(inventoryYAML))
}

// rcIP is the control IP, in startRC's inventory, of the node of a MAC.
var rcIP = map[string]string{"00:03:1d:0c:01:02": "127.0.0.12", "00:03:1d:0a:01:01": "127.0.0.13"}

// enrollFrom enrolls an RC for mac from its node's address.
func enrollFrom(t *testing.T, a *apptest.Appliance, mac string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.URL+"/api/v1/rc/enroll", strings.NewReader(`{"macs":["`+mac+`"],"image":"orbit-2.0.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r := apptest.DoFrom(t, rcIP[mac], req); r.Status != http.StatusOK {
		t.Fatalf("enroll %s from %s: %d %s", mac, rcIP[mac], r.Status, r.Body)
	}
}

func startInventory(t *testing.T, inventory string, images ...string) *apptest.Appliance {
	t.Helper()
	if len(images) == 0 {
		images = []string{"orbit-2.0.0", "orbit-2.0.1", "default-image"}
	}
	a := apptest.New(t, apptest.Options{Inventory: inventory, Images: images, Extra: "pxe: { default_image: default-image }\n"})
	a.Start()
	return a
}

// get asks a for path with its admin token.
func get(t *testing.T, a *apptest.Appliance, path string) (int, string) {
	t.Helper()
	r := a.Call(t, http.MethodGet, path, "", nil)
	return r.Status, r.Body
}

// send sends body as JSON, with a's admin token.
func send(t *testing.T, a *apptest.Appliance, method, path, body string) (int, string) {
	t.Helper()
	r := a.Call(t, method, path, body, http.Header{"Content-Type": {"application/json"}})
	return r.Status, r.Body
}

// dirState describes cfg_dir: name -> link target, or "file".
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == ".netboot-links" { // the link templates, not a link
			continue
		}
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out[e.Name()] = target
		} else {
			out[e.Name()] = "file"
		}
	}
	return out
}

func links(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	for k, v := range dirState(t, dir) {
		if v != "file" {
			out[k] = v
		}
	}
	return out
}

func TestOMFPXEService(t *testing.T) {
	a := start(t)
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   string
		wantLinks  map[string]string
	}{
		{"set two nodes, one by hostname, each to the inventory's image",
			"/pxe/setBootImageNS?domain=sb8&ns=node1-2.sb8.orbit-lab.org,node1-1", 200,
			"<response status='OK'><action service='pxe' name='setBootImage'><nodes>" +
				"<node hrn='node1-2.sb8.orbit-lab.org' ip='10.18.1.2' img='orbit-2.0.0' hex='0A120102'/>" +
				"<node hrn='node1-1.sb8.orbit-lab.org' ip='10.18.1.1' img='orbit-2.0.0' hex='0A120101'/>" +
				"</nodes></action></response>",
			map[string]string{"0A120102": "./orbit-2.0.0", "0A120101": "./orbit-2.0.0"}},
		{"imgName overrides, also for a node the inventory gives no image",
			"/pxe/setBootImageNS?domain=sb8&ns=node1-2.sb8.orbit-lab.org,node2-1&imgName=orbit-2.0.1", 200,
			"<response status='OK'><action service='pxe' name='setBootImage'><nodes>" +
				"<node hrn='node1-2.sb8.orbit-lab.org' ip='10.18.1.2' img='orbit-2.0.1' hex='0A120102'/>" +
				"<node hrn='node2-1.sb8.orbit-lab.org' ip='10.18.2.1' img='orbit-2.0.1' hex='0A120201'/>" +
				"</nodes></action></response>",
			map[string]string{"0A120102": "./orbit-2.0.1", "0A120101": "./orbit-2.0.0", "0A120201": "./orbit-2.0.1"}},
		{"no image named, and the inventory gives a node none: all or nothing, no default",
			"/pxe/setBootImageNS?domain=sb8&ns=node1-2.sb8.orbit-lab.org,node2-1", 409,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: " +
				"no PXE image named for node(s) node2-1.sb8.orbit-lab.org, and the inventory names none</action></response>",
			map[string]string{"0A120102": "./orbit-2.0.1", "0A120101": "./orbit-2.0.0", "0A120201": "./orbit-2.0.1"}},
		{"clear",
			"/pxe/clearBootImageNS?domain=sb8&ns=node1-2.sb8.orbit-lab.org,node2-1.sb8.orbit-lab.org,node1-1", 200,
			"<response status='OK'><action service='pxe' name='clearBootImage'><nodes/></action></response>",
			map[string]string{}},
		{"the wiki's form, by hrn",
			"/pxe/setBootImage?node=node1-2.sb8.orbit-lab.org", 200,
			"<response status='OK'><action service='pxe' name='setBootImage'><nodes>" +
				"<node hrn='node1-2.sb8.orbit-lab.org' ip='10.18.1.2' img='orbit-2.0.0' hex='0A120102'/>" +
				"</nodes></action></response>",
			map[string]string{"0A120102": "./orbit-2.0.0"}},
		{"the wiki's form, by host name and image",
			"/pxe/setBootImage?node=node1-1&domain=grid&image=orbit-2.0.1", 200,
			"<response status='OK'><action service='pxe' name='setBootImage'><nodes>" +
				"<node hrn='node1-1.grid.orbit-lab.org' ip='10.10.1.1' img='orbit-2.0.1' hex='0A0A0101'/>" +
				"</nodes></action></response>",
			map[string]string{"0A120102": "./orbit-2.0.0", "0A0A0101": "./orbit-2.0.1"}},
		{"wiki clear",
			"/pxe/clearBootImage?node=node1-2.sb8.orbit-lab.org", 200,
			"<response status='OK'><action service='pxe' name='clearBootImage'><nodes/></action></response>",
			map[string]string{"0A0A0101": "./orbit-2.0.1"}},
		{"ambiguous host name", "/pxe/setBootImage?node=node1-1", 409,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>" +
				`setBootImage: node "node1-1": host name of 2 nodes: node1-1.grid.orbit-lab.org (domain grid), node1-1.sb8.orbit-lab.org (domain sb8): name the hrn or the domain: ambiguous</action></response>`,
			map[string]string{"0A0A0101": "./orbit-2.0.1"}},
		{"unknown nodes: all or nothing", "/pxe/setBootImageNS?domain=sb8&ns=node1-1,ghost1,node1-2,ghost2", 404,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>" +
				`setBootImageNS: unknown node(s) in domain "sb8": ghost1, ghost2: not found</action></response>`,
			map[string]string{"0A0A0101": "./orbit-2.0.1"}},
		{"unknown image: all or nothing", "/pxe/setBootImageNS?domain=sb8&ns=node1-1,node1-2&imgName=orbit-9", 404,
			"", map[string]string{"0A0A0101": "./orbit-2.0.1"}},
		{"missing ns", "/pxe/setBootImageNS?domain=sb8", 400,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: missing parameter \"ns\"</action></response>",
			map[string]string{"0A0A0101": "./orbit-2.0.1"}},
		{"missing domain", "/pxe/clearBootImageNS?ns=node1-1", 400,
			"<response status='ERROR'><action service='pxe' name='clearBootImage'>clearBootImageNS: missing parameter \"domain\"</action></response>",
			map[string]string{"0A0A0101": "./orbit-2.0.1"}},
		{"node of another domain", "/pxe/setBootImageNS?domain=sb8&ns=node1-1.grid.orbit-lab.org", 404, "",
			map[string]string{"0A0A0101": "./orbit-2.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			omfGet{tt.path, tt.wantStatus, tt.wantBody}.check(t, a)
			if diff := cmp.Diff(tt.wantLinks, links(t, a.CfgDir)); diff != "" {
				t.Errorf("links (-want +got):\n%s", diff)
			}
		})
	}
	if st := dirState(t, a.CfgDir)["default"]; st != "file" {
		t.Errorf("no default file written: %v", dirState(t, a.CfgDir))
	}
}

// omfGet is one OMF call and its answer: the status, and the body exactly
// unless wantBody is "" (then, for an error, only some message).
type omfGet struct {
	path       string
	wantStatus int
	wantBody   string
}

func (g omfGet) check(t *testing.T, a *apptest.Appliance) {
	t.Helper()
	status, body := get(t, a, g.path)
	if status != g.wantStatus {
		t.Errorf("GET %s: status %d, want %d; body %q", g.path, status, g.wantStatus, body)
	}
	if g.wantBody != "" && body != g.wantBody {
		t.Errorf("GET %s: body:\n got %q\nwant %q", g.path, body, g.wantBody)
	}
	if status >= 400 && strings.TrimSpace(body) == "" {
		t.Errorf("GET %s: error without a message", g.path)
	}
}

func TestOMFServiceListing(t *testing.T) {
	a := start(t)
	_, root := get(t, a, "/")
	want := "<?xml version='1.0'?>\n<serviceGroups>" +
		"<serviceGroup path='pxe' name='pxe'><info>Service to facilitate PXE to boot into specific image</info></serviceGroup>" +
		"<serviceGroup path='inventory' name='inventory'><info>Service to retrieve information about nodes or testbeds from the Inventory Database</info></serviceGroup>" +
		"<serviceGroup path='cmc' name='cmc'><info>Service to switch nodes on and off (Chassis Manager Controller)</info></serviceGroup>" +
		"</serviceGroups>"
	if root != want {
		t.Errorf("GET /:\n got %q\nwant %q", root, want)
	}
	_, pxe := get(t, a, "/pxe")
	for _, frag := range []string{
		"<services><serviceGroup name='pxe' prefix='/pxe'>",
		"<service name='setBootImageNS'><info>Get PXE to boot all nodes in 'nodeSet' into their respective PXE image.</info><args>" +
			"<arg name='domain' value='domain' isRequired='true'><info>domain for request.</info></arg>" +
			"<arg name='ns' value='nodeSet' isRequired='true'><info>list of nodes to boot from PXE</info></arg>" +
			"<arg name='imgName' value='[imageName]' isRequired='false'>",
		"<service name='clearBootImageNS'>",
	} {
		if !strings.Contains(pxe, frag) {
			t.Errorf("GET /pxe lacks %q:\n%s", frag, pxe)
		}
	}
	// Methods are listed sorted by name, as OMF did.
	if i, j := strings.Index(pxe, "name='clearBootImageNS'"), strings.Index(pxe, "name='setBootImageNS'"); i < 0 || j < i {
		t.Errorf("methods not sorted: %s", pxe)
	}
	_, inv := get(t, a, "/inventory")
	if !strings.Contains(inv, "<service name='getAllNodes'><info>Get detailed list of nodes defined in the inventory</info></service>") {
		t.Errorf("GET /inventory: %s", inv)
	}
}

func TestOMFInventoryService(t *testing.T) {
	a := start(t)
	for _, g := range []omfGet{
		{"/inventory/getControlIP?hrn=node1-2.sb8.orbit-lab.org&domain=sb8", 200, "<CONTROL_IP>10.18.1.2</CONTROL_IP>"},
		{"/inventory/getControlIP?hrn=nope&domain=sb8", 200, "<CONTROL_IP><ERROR>Inventory has no control IP for HRN 'nope' (domain: sb8)</ERROR></CONTROL_IP>"},
		{"/inventory/getControlIP?hrn=node1-2.sb8.orbit-lab.org", 400, "<CONTROL_IP><ERROR>getControlIP: missing parameter \"domain\"</ERROR></CONTROL_IP>"},
		{"/inventory/getPXEImage?hrn=node1-2.sb8.orbit-lab.org&domain=sb8", 200, "<PXE_IMAGE>orbit-2.0.0</PXE_IMAGE>"},
		{"/inventory/getPXEImage?hrn=node2-1.sb8.orbit-lab.org&domain=sb8", 200, "<PXE_IMAGE><ERROR>Inventory has no PXE Image info for node node2-1.sb8.orbit-lab.org (domain: sb8)</ERROR></PXE_IMAGE>"},
		{"/inventory/getCmcIP?hrn=node1-1.sb8.orbit-lab.org&domain=sb8", 200, "<CMC_IP>10.1.1.1</CMC_IP>"},
		{"/inventory/getCmcIP?hrn=node1-2.sb8.orbit-lab.org&domain=sb8", 200, "<CMC_IP><ERROR>Inventory has no CMC IP for HRN 'node1-2.sb8.orbit-lab.org' (domain: sb8)</ERROR></CMC_IP>"},
		{"/inventory/getDefaultDisk?hrn=node2-1.sb8.orbit-lab.org&domain=sb8", 200, "<disk>/dev/hda</disk>"},
		{"/inventory/getDefaultDisk?hrn=node1-1.grid.orbit-lab.org&domain=grid", 200, "<disk>/dev/sda</disk>"},
		{"/inventory/getHRN?hrn=node1-1&domain=grid", 200, "<HRN>node1-1.grid.orbit-lab.org</HRN>"},
		{"/inventory/getHRN?hrn=node9-9&domain=grid", 200, "<HRN><ERROR>Inventory has no HRN for host 'node9-9' (domain: grid)</ERROR></HRN>"},
		{"/inventory/getMacAddress?hrn=node1-2.sb8.orbit-lab.org&domain=sb8&ifname=eth1", 200, "<MAC_Address><eth1>00:03:1d:0c:01:02</eth1></MAC_Address>"},
		{"/inventory/getMacAddress?hrn=node1-2.sb8.orbit-lab.org&domain=sb8&ifname=ath0", 200, "<MAC_Address><ERROR>Inventory has no info on [ath0] for node [node1-2.sb8.orbit-lab.org] (domain: sb8)</ERROR></MAC_Address>"},
		{"/inventory/getListOfResources?domain=grid", 200, "<RESOURCES><NODE>node1-1.grid.orbit-lab.org</NODE></RESOURCES>"},
		{"/inventory/getListOfResources?domain=nowhere", 200, "<RESOURCES><ERROR>Inventory has no info for any resources on the domain: nowhere</ERROR></RESOURCES>"},
		{"/inventory/getAllTestbeds", 200, "<ALLTESTBEDS><TESTBED>grid</TESTBED><TESTBED>sb8</TESTBED></ALLTESTBEDS>"},
		{"/inventory/getAllNodes", 200, "<ALLNODES>" +
			"<NODE name='node1-1' hrn='node1-1.grid.orbit-lab.org' control_mac='00:03:1d:0a:01:01' control_ip='10.10.1.1' x='1' y='1' z='0' disk='/dev/sda' testbed='grid'/>" +
			"<NODE name='node1-1' hrn='node1-1.sb8.orbit-lab.org' control_mac='00:03:1d:0c:01:01' control_ip='10.18.1.1' x='1' y='1' z='0' disk='/dev/sda' testbed='sb8'/>" +
			"<NODE name='node1-2' hrn='node1-2.sb8.orbit-lab.org' control_mac='00:03:1d:0c:01:02' control_ip='10.18.1.2' x='1' y='2' z='0' disk='/dev/sda' testbed='sb8'/>" +
			"<NODE name='node2-1' hrn='node2-1.sb8.orbit-lab.org' control_mac='00:03:1d:0c:02:01' control_ip='10.18.2.1' x='2' y='1' z='0' disk='/dev/hda' testbed='sb8'/>" +
			"</ALLNODES>"},
	} {
		g.check(t, a)
	}
}

func TestJSONAPI(t *testing.T) {
	a := start(t)
	status, body := get(t, a, "/api/v1/nodes/node1-2.sb8.orbit-lab.org")
	if status != 200 || !strings.Contains(body, `"control_ip":"10.18.1.2"`) || !strings.Contains(body, `"domain":"sb8"`) {
		t.Fatalf("GET node = %d %s", status, body)
	}
	steps := []struct {
		method, path, body string
		wantStatus         int
		wantInBody         string
	}{
		{"GET", "/api/v1/nodes/ghost", "", 404, `"error":"node \"ghost\": not found"`},
		{"PUT", "/api/v1/nodes/node3-1.sb8.orbit-lab.org", `{"domain":"sb8","hostname":"node3-1","control_ip":"10.18.3.1","control_mac":"00:03:1D:0C:03:01","x":3,"y":1}`, 201, `"control_mac":"00:03:1d:0c:03:01"`},
		{"PUT", "/api/v1/nodes/node3-1.sb8.orbit-lab.org", `{"domain":"sb8","hostname":"node3-1","control_ip":"10.18.3.1","control_mac":"00:03:1d:0c:03:01","x":3,"y":1,"disk":"/dev/sdb"}`, 200, `"disk":"/dev/sdb"`},
		{"PUT", "/api/v1/nodes/node3-2.sb8.orbit-lab.org", `{"domain":"sb8","control_ip":"10.18.1.2","control_mac":"00:03:1d:0c:03:02"}`, 409, `already used by node \"node1-2.sb8.orbit-lab.org\"`},
		{"PUT", "/api/v1/nodes/node3-2.sb8.orbit-lab.org", `{"domain":"sb8","control_ip":"10.18.3.300","control_mac":"00:03:1d:0c:03:02"}`, 400, `control_ip \"10.18.3.300\"`},
		{"PUT", "/api/v1/nodes/node3-2.sb8.orbit-lab.org", `{"domain":"sb8","bogus":1}`, 400, `unknown field \"bogus\"`},
		{"PUT", "/api/v1/nodes/node3-2.sb8.orbit-lab.org", `{"hrn":"other","domain":"sb8"}`, 400, `differs`},
		{"PUT", "/api/v1/nodes/node3-1.sb8.orbit-lab.org/boot", `{"image":"orbit-2.0.1","lifetime":"120s"}`, 200, `"hex":"0A120301"`},
		{"PUT", "/api/v1/nodes/node3-1.sb8.orbit-lab.org/boot", `{"lifetime":"forever"}`, 400, `lifetime \"forever\"`},
		{"PUT", "/api/v1/nodes/node3-1.sb8.orbit-lab.org/boot", `{"image":"../../etc/passwd"}`, 400, `is not a valid name`},
		{"PUT", "/api/v1/nodes/node3-1.sb8.orbit-lab.org/boot", `{"image":"orbit-7"}`, 404, `no such PXE image`},
		{"PUT", "/api/v1/nodes/ghost/boot", `{}`, 404, `unknown node(s): ghost`},
		{"GET", "/api/v1/boot", "", 200, `"image":"orbit-2.0.1"`},
		{"GET", "/api/v1/testbeds", "", 200, `{"domain":"sb8","nodes":4}`},
		{"GET", "/api/v1/images", "", 200, `[{"name":"orbit-2.0.0","description":"ORBIT RAM image for imaging"}]`},
		{"GET", "/api/v1/nodes?domain=grid", "", 200, `"hrn":"node1-1.grid.orbit-lab.org"`},
		{"DELETE", "/api/v1/nodes/node3-1.sb8.orbit-lab.org", "", 204, ``},
		{"GET", "/api/v1/boot", "", 200, `[]`},
		{"DELETE", "/api/v1/nodes/node3-1.sb8.orbit-lab.org", "", 404, `not found`},
		{"DELETE", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/boot", "", 204, ``},
	}
	for _, s := range steps {
		status, body := send(t, a, s.method, s.path, s.body)
		if status != s.wantStatus || !strings.Contains(body, s.wantInBody) {
			t.Errorf("%s %s %s = %d %s\n want %d containing %s", s.method, s.path, s.body, status, body, s.wantStatus, s.wantInBody)
		}
	}
	if l := links(t, a.CfgDir); len(l) != 0 {
		t.Errorf("links left after the node was deleted: %v", l)
	}
	// A link set with a short lifetime disappears by itself.
	if status, body := send(t, a, "PUT", "/api/v1/nodes/node1-1.sb8.orbit-lab.org/boot", `{"lifetime":"1s"}`); status != 200 {
		t.Fatalf("set = %d %s", status, body)
	}
	if _, ok := links(t, a.CfgDir)["0A120101"]; !ok {
		t.Fatal("link not made")
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(links(t, a.CfgDir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if l := links(t, a.CfgDir); len(l) != 0 {
		t.Errorf("link did not expire: %v", l)
	}
	if _, body := get(t, a, "/api/v1/boot"); body != "[]" {
		t.Errorf("expired link still listed: %s", body)
	}
}

func TestBadInputTouchesNothing(t *testing.T) {
	a := start(t)
	// Something outside cfg_dir that an escape would hit.
	outside := filepath.Join(a.TFTPRoot, "precious")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, a.CfgDir)
	beforeRoot := dirState(t, a.TFTPRoot)
	huge := strings.Repeat("a", 10<<20)
	// param, where set, names the OMF parameter that holds a control
	// character, also where the value is not a name that other checks
	// would refuse (an interface name, a host name to look up): the 400
	// must name it, and the value must not reach a lookup, the log or an
	// XML answer.
	tests := []struct{ name, query, param string }{
		{"ns escaping", "/pxe/setBootImageNS?domain=sb8&ns=../../etc", ""},
		{"imgName escaping", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=../../../etc/passwd", ""},
		{"imgName absolute", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=/etc/passwd", ""},
		{"imgName with slash", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=sub/x", ""},
		{"NUL in ns", "/pxe/setBootImageNS?domain=sb8&ns=node1-1%00x", ""},
		{"NUL in imgName", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=orbit-2.0.0%00", ""},
		{"NUL in domain", "/pxe/clearBootImageNS?domain=sb8%00&ns=node1-1", ""},
		{"newline in node", "/pxe/setBootImage?node=node1-1%0Aevil", ""},
		{"10 MB ns", "/pxe/setBootImageNS?domain=sb8&ns=" + huge, ""},
		{"10 MB imgName", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=" + huge, ""},
		{"bad escape", "/pxe/setBootImageNS?domain=sb8&ns=%zz", ""},
		{"repeated ns", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&ns=node1-2", ""},
		{"only commas", "/pxe/setBootImageNS?domain=sb8&ns=,,,", ""},
		{"image named default", "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=default", ""},
		{"escaping hrn in JSON path", "/api/v1/nodes/..%2F..%2Fetc/boot", ""},
		{name: "NUL in ifname", query: "/inventory/getMacAddress?hrn=node1-1.sb8.orbit-lab.org&domain=sb8&ifname=eth1%00", param: "ifname"},
		{name: "escape sequence in ifname", query: "/inventory/getMacAddress?hrn=node1-1.sb8.orbit-lab.org&domain=sb8&ifname=%1b%5b2J", param: "ifname"},
		{name: "CR LF in hrn", query: "/inventory/getControlIP?hrn=node1-1.sb8.orbit-lab.org%0D%0Aevil&domain=sb8", param: "hrn"},
		{name: "tab in hrn", query: "/inventory/getHRN?hrn=node1-1%09&domain=sb8", param: "hrn"},
		{name: "DEL in domain", query: "/inventory/getListOfResources?domain=sb8%7f", param: "domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "GET"
			if strings.HasPrefix(tt.query, "/api/") {
				method = "PUT"
			}
			status, body := send(t, a, method, tt.query, "")
			if status != 400 && (status != 404 || !strings.HasPrefix(tt.query, "/api/")) {
				t.Errorf("status %d, want 400; body %.200q", status, body)
			}
			if tt.param != "" && (status != 400 || !strings.Contains(body, `parameter "`+tt.param+`" holds a control character`)) {
				t.Errorf("status %d, body %q; want 400 naming parameter %q", status, body, tt.param)
			}
			if len(strings.TrimSpace(body)) == 0 {
				t.Error("no message in the error body")
			}
			if diff := cmp.Diff(before, dirState(t, a.CfgDir)); diff != "" {
				t.Errorf("cfg_dir changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(beforeRoot, dirState(t, a.TFTPRoot)); diff != "" {
				t.Errorf("tftp_root changed (-before +after):\n%s", diff)
			}
		})
	}
	if data, _ := os.ReadFile(outside); string(data) != "x" {
		t.Error("file outside cfg_dir changed")
	}
}

// TestConcurrentSetClear fires 200 concurrent set/clear calls over
// overlapping nodes and checks that each node ends in the state of a call
// that no other call on it followed, with the directory and the database
// agreeing and nothing half-made left behind.
func TestConcurrentSetClear(t *testing.T) {
	const nodes, calls = 12, 200
	var inv strings.Builder
	inv.WriteString("testbeds:\n  - domain: grid\n    nodes:\n")
	for i := range nodes {
		fmt.Fprintf(&inv, "      - { hrn: n%d, control_ip: 10.10.0.%d, control_mac: \"02:00:00:00:00:%02x\" }\n", i, i+1, i+1)
	}
	images := make([]string, calls)
	for i := range images {
		images[i] = fmt.Sprintf("img-%d", i)
	}
	a := apptest.New(t, apptest.Options{Inventory: inv.String(), Images: images})
	a.Start()

	type call struct {
		set        bool
		image      string
		nodes      []int
		start, end time.Time
		status     int
	}
	cs := make([]call, calls)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range cs {
		cs[i] = call{set: rng.IntN(3) > 0, image: images[i]}
		cs[i].nodes = append(cs[i].nodes, rng.Perm(nodes)[:1+rng.IntN(4)]...)
	}
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: calls}}
	for i := range cs {
		wg.Add(1)
		go func(c *call) {
			defer wg.Done()
			var ns []string
			for _, n := range c.nodes {
				ns = append(ns, fmt.Sprintf("n%d", n))
			}
			q := url.Values{"domain": {"grid"}, "ns": {strings.Join(ns, ",")}}
			path := "/pxe/clearBootImageNS?"
			if c.set {
				path = "/pxe/setBootImageNS?"
				q.Set("imgName", c.image)
			}
			c.start = time.Now()
			resp, err := client.Get(a.URL + path + q.Encode())
			c.end = time.Now()
			if err != nil {
				t.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Error(err)
				return
			}
			c.status = resp.StatusCode
		}(&cs[i])
	}
	wg.Wait()

	state := dirState(t, a.CfgDir)
	var db []struct {
		HRN, Hex, Image string
	}
	_, body := get(t, a, "/api/v1/boot")
	if err := json.Unmarshal([]byte(body), &db); err != nil {
		t.Fatal(err)
	}
	inDB := map[string]string{}
	for _, l := range db {
		inDB[l.HRN] = l.Image
	}
	for name, target := range state {
		if strings.HasPrefix(name, ".") {
			t.Errorf("temporary file left: %s", name)
		}
		if target != "file" {
			if _, err := os.Stat(filepath.Join(a.CfgDir, name)); err != nil {
				t.Errorf("dangling link %s -> %s", name, target)
			}
		}
	}
	for n := range nodes {
		hrn := fmt.Sprintf("n%d", n)
		hex := fmt.Sprintf("0A0A00%02X", n+1)
		target, linked := state[hex]
		if img, ok := inDB[hrn]; ok != linked || (linked && target != "./"+img) {
			t.Errorf("%s: directory says %q, database says %q", hrn, target, img)
			continue
		}
		// Which calls could have been last on this node?
		var touching []call
		for _, c := range cs {
			if c.status != 200 {
				t.Errorf("a call failed with %d", c.status)
			}
			for _, cn := range c.nodes {
				if cn == n {
					touching = append(touching, c)
				}
			}
		}
		sort.Slice(touching, func(i, j int) bool { return touching[i].start.Before(touching[j].start) })
		ok := false
		for _, c := range touching {
			matches := (!linked && !c.set) || (linked && c.set && target == "./"+c.image)
			if !matches {
				continue
			}
			followed := false
			for _, d := range touching {
				if d.start.After(c.end) {
					followed = true
				}
			}
			if !followed {
				ok = true
			}
		}
		if len(touching) > 0 && !ok {
			t.Errorf("%s ended as %q, which is not the state of any call that could have been its last", hrn, target)
		}
	}
}

// TestPowerService drives a real QEMU (no machine, no network: only its
// power state) through the OMF cmc calls and the JSON API of a running
// netbootd, with the node's driver named in the inventory.
func TestPowerService(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testenv.Missing(t, "needs qemu-system-x86_64 (make test installs it)")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	vm := exec.Command(qemu, "-machine", "none", "-S", "-display", "none", "-nodefaults", "-no-shutdown",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = vm.Process.Kill() // it may have exited: nothing to do either way
		_ = vm.Wait()         // killed: its status says only that
	})
	// QEMU makes the socket file before it listens on it: wait for a
	// handshake, not for the file. A minute means hung.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := qmp.DialWait(ctx, sock)
	if err != nil {
		t.Fatalf("QEMU's QMP: %v", err)
	}
	q.Close()
	a := apptest.New(t, apptest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: vm1.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", power: "qemu:` + sock + `" }
      - { hrn: bare.sb8, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02" }
`})
	a.Start()
	steps := []struct {
		method, path, body string
		wantStatus         int
		wantBody           string
	}{
		{"GET", "/cmc/status?hrn=vm1.sb8&domain=sb8", "", 200, "<NODE_STATUS><STATUS>POWEROFF</STATUS></NODE_STATUS>"},
		{"GET", "/cmc/on?hrn=vm1.sb8&domain=sb8", "", 200, "OK"},
		{"GET", "/cmc/status?hrn=vm1.sb8&domain=sb8", "", 200, "<NODE_STATUS><STATUS>POWERON</STATUS></NODE_STATUS>"},
		{"POST", "/api/v1/nodes/vm1.sb8/power", `{"action":"offHard"}`, 200, `{"hrn":"vm1.sb8","action":"offHard","state":"off"}`},
		{"POST", "/api/v1/nodes/vm1.sb8/power", `{"action":"reset"}`, 200, `{"hrn":"vm1.sb8","action":"reset","state":"on"}`},
		{"POST", "/api/v1/nodes/vm1.sb8/power", `{"action":"explode"}`, 400, ""},
		{"POST", "/api/v1/nodes/bare.sb8/power", `{"action":"on"}`, 409, ""},
		{"POST", "/api/v1/nodes/ghost.sb8/power", `{"action":"on"}`, 404, ""},
		{"GET", "/cmc/on?hrn=bare.sb8&domain=sb8", "", 409, ""},
		{"GET", "/cmc/on?hrn=vm1.sb8", "", 400, ""},
	}
	for _, st := range steps {
		status, body := send(t, a, st.method, st.path, st.body)
		if status != st.wantStatus || (st.wantBody != "" && body != st.wantBody) {
			t.Errorf("%s %s %s = %d %q; want %d %q", st.method, st.path, st.body, status, body, st.wantStatus, st.wantBody)
		}
		if status >= 400 && strings.TrimSpace(body) == "" {
			t.Errorf("%s %s: error without a message", st.method, st.path)
		}
	}
	// The actions, not the status reads, are on the node's timeline.
	status, body := send(t, a, "GET", "/api/v1/nodes/vm1.sb8/events", "")
	var evs []store.Event
	if err := json.Unmarshal([]byte(body), &evs); status != 200 || err != nil {
		t.Fatalf("events: %d %v %s", status, err, body)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Source+" "+e.What+" "+e.Detail)
	}
	if diff := cmp.Diff([]string{"power on state=on", "power offHard state=off", "power reset state=on"}, got); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	// A malformed driver is refused when the node is written, not on the first call.
	status, body = send(t, a, "PUT", "/api/v1/nodes/bad.sb8", `{"domain":"sb8","control_ip":"10.18.1.3","control_mac":"00:03:1d:0c:01:03","power":"qemu:relative.sock"}`)
	if status != 400 || !strings.Contains(body, "power") {
		t.Errorf("bad power spec: %d %s", status, body)
	}
}

// TestOMFErrors: every OMF call that fails answers in its service's own
// XML (read here as an XML tree: the chain of elements down to the
// message, and their attributes), with the status OMF's client needs and a
// message that names the cause, and changes no boot link. The inventory's
// "nothing found" is a 200, as OMF's was: its client raises on any other
// status before it reads the message.
func TestOMFErrors(t *testing.T) {
	a := start(t)
	empty := apptest.New(t, apptest.Options{})
	empty.Start()
	// A link that a failed call must leave alone.
	omfGet{"/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=orbit-2.0.1", 200, ""}.check(t, a)
	want := map[string]string{"0A120101": "./orbit-2.0.1"}
	const (
		setNS    = "response status=ERROR > action name=setBootImage service=pxe"
		clearNS  = "response status=ERROR > action name=clearBootImage service=pxe"
		cmcError = "ERROR"
	)
	tests := []struct {
		name       string
		on         *apptest.Appliance
		path       string
		wantStatus int
		wantShape  string   // the elements from the root to the message, with their attributes
		wantIn     []string // in the message
	}{
		{"set: unknown nodes", a, "/pxe/setBootImageNS?domain=sb8&ns=node1-2,ghost1,ghost2", 404, setNS,
			[]string{"setBootImageNS: ", "unknown node", "ghost1, ghost2"}},
		{"set: node of another domain", a, "/pxe/setBootImageNS?domain=grid&ns=node1-2.sb8.orbit-lab.org", 404, setNS,
			[]string{"setBootImageNS: ", `in domain "grid"`, "node1-2.sb8.orbit-lab.org"}},
		{"set: unknown image", a, "/pxe/setBootImageNS?domain=sb8&ns=node1-1,node1-2&imgName=orbit-9", 404, setNS,
			[]string{"setBootImageNS: ", "no such PXE image", "orbit-9"}},
		{"set: a node the inventory gives no image, none named", a, "/pxe/setBootImageNS?domain=sb8&ns=node1-1,node2-1", 409, setNS,
			[]string{"setBootImageNS: ", "no PXE image", "node2-1.sb8.orbit-lab.org"}},
		{"wiki set: a node the inventory gives no image", a, "/pxe/setBootImage?node=node1-1&domain=grid", 409, setNS,
			[]string{"setBootImage: ", "no PXE image", "node1-1.grid.orbit-lab.org"}},
		{"set: invalid image name", a, "/pxe/setBootImageNS?domain=sb8&ns=node1-1&imgName=../x", 400, setNS,
			[]string{"setBootImageNS: ", "image", "not a valid name"}},
		{"set: missing ns", a, "/pxe/setBootImageNS?domain=sb8", 400, setNS,
			[]string{"setBootImageNS: ", `missing parameter "ns"`}},
		{"wiki set: ambiguous host name", a, "/pxe/setBootImage?node=node1-1", 409, setNS,
			[]string{"setBootImage: ", `"node1-1"`, "ambiguous"}},
		{"clear: unknown node", a, "/pxe/clearBootImageNS?domain=sb8&ns=node1-1,ghost", 404, clearNS,
			[]string{"clearBootImageNS: ", "ghost"}},
		{"wiki clear: missing node", a, "/pxe/clearBootImage", 400, clearNS,
			[]string{"clearBootImage: ", `missing parameter "node"`}},
		{"control IP: unknown node", a, "/inventory/getControlIP?hrn=ghost&domain=sb8", 200, "CONTROL_IP > ERROR",
			[]string{"Inventory has no control IP", "'ghost'", "sb8"}},
		{"control IP: unknown domain", a, "/inventory/getControlIP?hrn=node1-1.sb8.orbit-lab.org&domain=nowhere", 200, "CONTROL_IP > ERROR",
			[]string{"node1-1.sb8.orbit-lab.org", "nowhere"}},
		{"control IP: missing domain", a, "/inventory/getControlIP?hrn=node1-1.sb8.orbit-lab.org", 400, "CONTROL_IP > ERROR",
			[]string{"getControlIP: ", `missing parameter "domain"`}},
		{"PXE image: a node with none", a, "/inventory/getPXEImage?hrn=node2-1.sb8.orbit-lab.org&domain=sb8", 200, "PXE_IMAGE > ERROR",
			[]string{"no PXE Image", "node2-1.sb8.orbit-lab.org"}},
		{"PXE image: unknown node", a, "/inventory/getPXEImage?hrn=ghost&domain=sb8", 200, "PXE_IMAGE > ERROR",
			[]string{"no PXE Image", "ghost"}},
		{"CMC IP: a node with none", a, "/inventory/getCmcIP?hrn=node1-2.sb8.orbit-lab.org&domain=sb8", 200, "CMC_IP > ERROR",
			[]string{"no CMC IP", "node1-2.sb8.orbit-lab.org"}},
		{"default disk: unknown node", a, "/inventory/getDefaultDisk?hrn=ghost&domain=sb8", 200, "disk > ERROR",
			[]string{"no default disk", "ghost"}},
		{"HRN: unknown host", a, "/inventory/getHRN?hrn=node9-9&domain=grid", 200, "HRN > ERROR",
			[]string{"no HRN", "node9-9"}},
		{"MAC: unknown interface", a, "/inventory/getMacAddress?hrn=node1-2.sb8.orbit-lab.org&domain=sb8&ifname=ath0", 200, "MAC_Address > ERROR",
			[]string{"[ath0]", "node1-2.sb8.orbit-lab.org"}},
		{"MAC: unknown node", a, "/inventory/getMacAddress?hrn=ghost&domain=sb8", 200, "MAC_Address > ERROR",
			[]string{"[ghost]"}},
		{"resources: unknown domain", a, "/inventory/getListOfResources?domain=nowhere", 200, "RESOURCES > ERROR",
			[]string{"no info for any resources", "nowhere"}},
		{"resources: empty inventory", empty, "/inventory/getListOfResources?domain=sb8", 200, "RESOURCES > ERROR",
			[]string{"no info for any resources", "sb8"}},
		{"all nodes: empty inventory", empty, "/inventory/getAllNodes", 200, "ALLNODES > ERROR",
			[]string{"no nodes defined"}},
		{"all testbeds: empty inventory", empty, "/inventory/getAllTestbeds", 200, "ALLTESTBEDS > ERROR",
			[]string{"no testbeds defined"}},
		{"power: unknown node", a, "/cmc/on?hrn=ghost&domain=sb8", 404, cmcError,
			[]string{"on: ", "ghost"}},
		{"power: a node without a driver", a, "/cmc/reset?hrn=node1-1.sb8.orbit-lab.org&domain=sb8", 409, cmcError,
			[]string{"reset: ", "node1-1.sb8.orbit-lab.org", "no power driver"}},
		{"power: missing domain", a, "/cmc/status?hrn=node1-1.sb8.orbit-lab.org", 400, cmcError,
			[]string{"status: ", `missing parameter "domain"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(tt.on.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
				t.Errorf("Content-Type %q, want text/xml; body %q", ct, body)
			}
			shape, msg, err := xmlChain(body)
			if err != nil {
				t.Fatalf("%v: %q", err, body)
			}
			if shape != tt.wantShape {
				t.Errorf("elements %q, want %q; body %q", shape, tt.wantShape, body)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if tt.on == a {
				if diff := cmp.Diff(want, links(t, a.CfgDir)); diff != "" {
					t.Errorf("links changed (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// xmlElem is any XML element, read whole.
type xmlElem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Kids    []xmlElem  `xml:",any"`
}

// xmlChain reads an answer that is one chain of elements, each the only
// child of the one before: it returns the chain ("root a=1 b=2 > child"),
// attributes sorted by name, and the text of its last element.
func xmlChain(body []byte) (string, string, error) {
	var e xmlElem
	if err := xml.Unmarshal(body, &e); err != nil {
		return "", "", fmt.Errorf("not XML: %w", err)
	}
	var parts []string
	for {
		attrs := make([]string, 0, len(e.Attrs))
		for _, at := range e.Attrs {
			attrs = append(attrs, at.Name.Local+"="+at.Value)
		}
		sort.Strings(attrs)
		parts = append(parts, strings.Join(append([]string{e.XMLName.Local}, attrs...), " "))
		switch len(e.Kids) {
		case 0:
			return strings.Join(parts, " > "), e.Text, nil
		case 1:
			if strings.TrimSpace(e.Text) != "" {
				return "", "", fmt.Errorf("element %s has both text and a child", e.XMLName.Local)
			}
			e = e.Kids[0]
		default:
			return "", "", fmt.Errorf("element %s has %d children", e.XMLName.Local, len(e.Kids))
		}
	}
}
