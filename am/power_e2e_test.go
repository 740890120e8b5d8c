package am_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/qmp/qmptest"
	"github.com/orbit-lab/netboot/internal/store"
)

// fakeIpmitool is an ipmitool first in PATH (netbootd inherits the test's
// environment) that logs its arguments and answers as the real one does.
// It reads its behaviour from files, so that the test can change it while
// netbootd runs: "power" is what `chassis power status` prints, and while
// "fail" exists it fails as on a BMC that does not answer.
type fakeIpmitool struct{ dir string }

func newFakeIpmitool(t *testing.T) *fakeIpmitool {
	t.Helper()
	f := &fakeIpmitool{dir: t.TempDir()}
	script := `#!/bin/sh
d='` + f.dir + `'
echo "$*" >> "$d/args.log"
if [ -e "$d/fail" ]; then echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; exit 1; fi
eval verb=\${$#}
case "$verb" in
status) cat "$d/power";;
on|off|soft|cycle|reset) echo "Chassis Power Control: $verb";;
*) echo "unknown verb $verb" >&2; exit 1;;
esac
`
	if err := os.WriteFile(filepath.Join(f.dir, "ipmitool"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", f.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return f
}

// take returns the ipmitool command lines run since the last call.
func (f *fakeIpmitool) take(t *testing.T) []string {
	t.Helper()
	p := filepath.Join(f.dir, "args.log")
	data, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func (f *fakeIpmitool) setPower(t *testing.T, state string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "power"), []byte("Chassis Power is "+state+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeIpmitool) setFail(t *testing.T, fail bool) {
	t.Helper()
	p := filepath.Join(f.dir, "fail")
	if !fail {
		os.Remove(p)
		return
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// timeline returns the node's events as "source what detail", oldest first.
func timeline(t *testing.T, a *apptest.Appliance, hrn string) []string {
	t.Helper()
	status, body := get(t, a, "/api/v1/nodes/"+hrn+"/events")
	var evs []store.Event
	if err := json.Unmarshal([]byte(body), &evs); status != 200 || err != nil {
		t.Fatalf("events of %s: %d %v %s", hrn, status, err, body)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Source+" "+e.What+" "+e.Detail)
	}
	return out
}

// TestPowerActions runs every power action, through OMF's /cmc and through
// the JSON API, against a node whose BMC is a fake ipmitool: the driver gets
// the action's verb, the caller OMF's or the API's answer, and the node's
// timeline each action (not the status reads). A failing BMC is a 502 that
// carries the driver's message (for OMF in <ERROR>), and is on the timeline too.
func TestPowerActions(t *testing.T) {
	ipmi := newFakeIpmitool(t)
	ipmi.setPower(t, "on")
	const hrn = "bmc1.sb8"
	a := apptest.New(t, apptest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: ` + hrn + `, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", power: "ipmi:10.1.1.9:admin:/etc/netboot/bmc.pass" }
`})
	a.Start()
	const ipmiArgs = "-I lanplus -H 10.1.1.9 -U admin -f /etc/netboot/bmc.pass chassis power "
	omf := func(action string) string { return "/cmc/" + action + "?hrn=" + hrn + "&domain=sb8" }
	const api = "/api/v1/nodes/" + hrn + "/power"
	const okText = "OK"
	steps := []struct {
		name       string
		power      string // what status reports
		fail       bool   // the BMC does not answer
		method     string
		path, body string
		wantStatus int
		wantType   string // Content-Type prefix
		wantBody   string // exact, or with a "~" prefix: contained
		wantVerb   string // the ipmitool verb run
		wantEvent  string // "" for none
	}{
		{"OMF on", "on", false, "GET", omf("on"), "", 200, "text/plain", okText, "on", "power on state=on"},
		{"OMF offHard", "on", false, "GET", omf("offHard"), "", 200, "text/plain", okText, "off", "power offHard state=off"},
		{"OMF offSoft", "on", false, "GET", omf("offSoft"), "", 200, "text/plain", okText, "soft", "power offSoft state=unknown"},
		{"OMF reboot", "on", false, "GET", omf("reboot"), "", 200, "text/plain", okText, "cycle", "power reboot state=on"},
		{"OMF reset", "on", false, "GET", omf("reset"), "", 200, "text/plain", okText, "reset", "power reset state=on"},
		{"OMF status on", "on", false, "GET", omf("status"), "", 200, "text/xml", "<NODE_STATUS><STATUS>POWERON</STATUS></NODE_STATUS>", "status", ""},
		{"OMF status off", "off", false, "GET", omf("status"), "", 200, "text/xml", "<NODE_STATUS><STATUS>POWEROFF</STATUS></NODE_STATUS>", "status", ""},
		{"JSON on", "on", false, "POST", api, `{"action":"on"}`, 200, "application/json", `{"hrn":"bmc1.sb8","action":"on","state":"on"}`, "on", "power on state=on"},
		{"JSON offHard", "on", false, "POST", api, `{"action":"offHard"}`, 200, "application/json", `{"hrn":"bmc1.sb8","action":"offHard","state":"off"}`, "off", "power offHard state=off"},
		{"JSON offSoft", "on", false, "POST", api, `{"action":"offSoft"}`, 200, "application/json", `{"hrn":"bmc1.sb8","action":"offSoft","state":"unknown"}`, "soft", "power offSoft state=unknown"},
		{"JSON reboot", "on", false, "POST", api, `{"action":"reboot"}`, 200, "application/json", `{"hrn":"bmc1.sb8","action":"reboot","state":"on"}`, "cycle", "power reboot state=on"},
		{"JSON reset", "on", false, "POST", api, `{"action":"reset"}`, 200, "application/json", `{"hrn":"bmc1.sb8","action":"reset","state":"on"}`, "reset", "power reset state=on"},
		{"JSON status", "off", false, "POST", api, `{"action":"status"}`, 200, "application/json", `{"hrn":"bmc1.sb8","action":"status","state":"off"}`, "status", ""},
		{"OMF reset, BMC down", "on", true, "GET", omf("reset"), "", 502, "text/xml", "<ERROR>reset: power ipmi:10.1.1.9:admin reset: ipmitool: exit status 1: Error: Unable to establish IPMI v2 / RMCP+ session</ERROR>",
			"reset", "power reset failed: power ipmi:10.1.1.9:admin reset: ipmitool: exit status 1: Error: Unable to establish IPMI v2 / RMCP+ session"},
		{"OMF status, BMC down", "on", true, "GET", omf("status"), "", 502, "text/xml", "~<ERROR>status: power ipmi:10.1.1.9:admin status: ipmitool: exit status 1: Error: Unable to establish IPMI v2", "status", ""},
		{"JSON offHard, BMC down", "on", true, "POST", api, `{"action":"offHard"}`, 502, "application/json",
			`{"error":"power ipmi:10.1.1.9:admin offHard: ipmitool: exit status 1: Error: Unable to establish IPMI v2 / RMCP+ session"}`,
			"off", "power offHard failed: power ipmi:10.1.1.9:admin offHard: ipmitool: exit status 1: Error: Unable to establish IPMI v2 / RMCP+ session"},
		{"JSON status, BMC down", "on", true, "POST", api, `{"action":"status"}`, 502, "application/json", `~"error":"power ipmi:10.1.1.9:admin status: ipmitool`, "status", ""},
		{"the BMC is back", "on", false, "GET", omf("on"), "", 200, "text/plain", okText, "on", "power on state=on"},
	}
	var wantTimeline []string
	for _, st := range steps {
		ipmi.setPower(t, st.power)
		ipmi.setFail(t, st.fail)
		resp := a.Call(t, st.method, st.path, st.body, nil)
		body := resp.Body
		if resp.Status != st.wantStatus {
			t.Errorf("%s: status %d, want %d; body %q", st.name, resp.Status, st.wantStatus, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, st.wantType) {
			t.Errorf("%s: Content-Type %q, want %s", st.name, ct, st.wantType)
		}
		if want, ok := strings.CutPrefix(st.wantBody, "~"); ok {
			if !strings.Contains(body, want) {
				t.Errorf("%s: body %q lacks %q", st.name, body, want)
			}
		} else if body != want {
			t.Errorf("%s: body\n got %q\nwant %q", st.name, body, want)
		}
		if diff := cmp.Diff([]string{ipmiArgs + st.wantVerb}, ipmi.take(t)); diff != "" {
			t.Errorf("%s: ipmitool runs (-want +got):\n%s", st.name, diff)
		}
		if st.wantEvent != "" {
			wantTimeline = append(wantTimeline, st.wantEvent)
		}
		if diff := cmp.Diff(wantTimeline, timeline(t, a, hrn)); diff != "" {
			t.Errorf("%s: timeline (-want +got):\n%s", st.name, diff)
		}
	}
}

// fakeQMP answers QMP as a QEMU whose query-status names no run state: the
// one case in which the driver cannot tell on from off.
func fakeQMP(t *testing.T) string {
	t.Helper()
	return (&qmptest.Server{Handle: func(c *qmptest.Conn, cmd string, _ json.RawMessage) {
		if cmd == "query-status" {
			c.Return(map[string]any{"running": false, "singlestep": false})
			return
		}
		c.Return(nil)
	}}).Start(t)
}

// TestPowerStatusUnknown: a state the driver cannot tell is OMF's UNKNOWN
// and the API's "unknown", not a guess.
func TestPowerStatusUnknown(t *testing.T) {
	sock := fakeQMP(t)
	a := apptest.New(t, apptest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: vm1.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", power: "qemu:` + sock + `" }
`})
	a.Start()
	if status, body := get(t, a, "/cmc/status?hrn=vm1.sb8&domain=sb8"); status != 200 || body != "<NODE_STATUS><STATUS>UNKNOWN</STATUS></NODE_STATUS>" {
		t.Errorf("/cmc/status = %d %q, want UNKNOWN", status, body)
	}
	if status, body := send(t, a, "POST", "/api/v1/nodes/vm1.sb8/power", `{"action":"status"}`); status != 200 || body != `{"hrn":"vm1.sb8","action":"status","state":"unknown"}` {
		t.Errorf("JSON status = %d %q, want state unknown", status, body)
	}
}

// TestOMFCmcListing: GET /cmc describes the power service as OMF's AM did,
// methods sorted by name, each with its two required arguments.
func TestOMFCmcListing(t *testing.T) {
	a := start(t)
	status, body := get(t, a, "/cmc")
	args := "<args><arg name='hrn' value='hrn' isRequired='true'><info>HRN of the resource</info></arg>" +
		"<arg name='domain' value='domain' isRequired='true'><info>testbed/domain for this given node</info></arg></args>"
	want := "<?xml version='1.0'?>\n<services><serviceGroup name='cmc' prefix='/cmc'><info>Service to switch nodes on and off (Chassis Manager Controller)</info>" +
		"<service name='offHard'><info>Switch off a node at once (hard power off)</info>" + args + "</service>" +
		"<service name='offSoft'><info>Ask a node's OS to shut down (soft power off)</info>" + args + "</service>" +
		"<service name='on'><info>Switch on a node</info>" + args + "</service>" +
		"<service name='reboot'><info>Reboot a node (power cycle)</info>" + args + "</service>" +
		"<service name='reset'><info>Reset a node</info>" + args + "</service>" +
		"<service name='status'><info>Get the power state of a node</info>" + args + "</service>" +
		"</serviceGroup></services>"
	if status != 200 || body != want {
		t.Errorf("GET /cmc = %d\n got %q\nwant %q", status, body, want)
	}
}
