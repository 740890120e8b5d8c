package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc"
)

func TestInventoryImportExport(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}})
	a.Start()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	testenv.WriteFile(t, good, []byte(`images:
  - { name: orbit-2.0.0, description: ORBIT RAM image for imaging }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 10.18.1.2,
          control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, pxe_image: orbit-2.0.0, disk: /dev/sda }
`))
	bad := filepath.Join(dir, "bad.yaml")
	testenv.WriteFile(t, bad, []byte(`testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8.orbit-lab.org, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:01" }
      - { hrn: node1-3.sb8.orbit-lab.org, control_ip: 10.18.1.3, control_mac: "00:03:1d:0c:01:02" }
      - { hrn: node1-3.sb8.orbit-lab.org, control_ip: 10.18.1.4, control_mac: "00:03:1d:0c:01:04" }
      - { hrn: node1-5.sb8.orbit-lab.org, control_ip: 10.18.1, control_mac: "00:03:1d:0c:01:05" }
      - { hrn: node1-6.sb8.orbit-lab.org, control_ip: 10.18.1.6, control_mac: "00:03:1d:0c:01" }
`))

	if out, err := a.Nbctl("inventory", "import", good); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, err := a.Nbctl("inventory", "import", bad)
	if err == nil {
		t.Fatalf("bad import accepted:\n%s", out)
	}
	for _, want := range []string{
		`node "node1-1.sb8.orbit-lab.org": duplicate control_ip 10.18.1.2 (already used by node "node1-2.sb8.orbit-lab.org"`,
		`node "node1-3.sb8.orbit-lab.org": duplicate control_mac 00:03:1d:0c:01:02 (already used by node "node1-2.sb8.orbit-lab.org"`,
		`node "node1-3.sb8.orbit-lab.org": duplicate hrn node1-3.sb8.orbit-lab.org`,
		`control_ip "10.18.1" is not an IPv4 address`,
		`control_mac "00:03:1d:0c:01" is not an Ethernet MAC address`,
		"HTTP 400",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rejection lacks %q:\n%s", want, out)
		}
	}
	list, _ := a.Nbctl("nodes")
	if strings.Contains(list, "node1-1.sb8") || !strings.Contains(list, "node1-2.sb8.orbit-lab.org") {
		t.Errorf("a rejected import changed the inventory:\n%s", list)
	}

	exported, err := a.Nbctl("inventory", "export")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, exported)
	}
	want := `images:
  - {name: orbit-2.0.0, description: ORBIT RAM image for imaging}
testbeds:
  - domain: sb8
    nodes:
      - {hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, disk: /dev/sda, pxe_image: orbit-2.0.0}
`
	if exported != want {
		t.Errorf("export:\n%s\nwant:\n%s", exported, want)
	}
	// What export writes, import takes back unchanged.
	again := filepath.Join(dir, "again.yaml")
	testenv.WriteFile(t, again, []byte(exported))
	if out, err := a.Nbctl("inventory", "import", again); err != nil {
		t.Fatalf("re-import: %v\n%s", err, out)
	}
	if out, _ := a.Nbctl("inventory", "export"); out != exported {
		t.Errorf("re-import changed the inventory:\n%s", out)
	}
}

func TestBootCommands(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0", "other"}, Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: a.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", pxe_image: orbit-2.0.0 }
      - { hrn: b.sb8, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02" }
`})
	a.Start()
	out, err := a.Nbctl("boot", "set", "a.sb8")
	if err != nil || !strings.Contains(out, "a.sb8: 0A120101 -> orbit-2.0.0") {
		t.Fatalf("boot set: %v\n%s", err, out)
	}
	out, err = a.Nbctl("boot", "set", "--image", "other", "--lifetime", "10m", "b.sb8")
	if err != nil || !strings.Contains(out, "b.sb8: 0A120102 -> other") {
		t.Fatalf("boot set --image: %v\n%s", err, out)
	}
	if target, _ := os.Readlink(filepath.Join(a.CfgDir, "0A120102")); target != "./other" {
		t.Errorf("link 0A120102 -> %q", target)
	}
	out, _ = a.Nbctl("boot", "list")
	if !strings.Contains(out, "a.sb8") || !strings.Contains(out, "b.sb8") || !strings.Contains(out, "0A120102") {
		t.Errorf("boot list:\n%s", out)
	}
	out, err = a.Nbctl("boot", "set", "--image", "missing", "a.sb8")
	if err == nil || !strings.Contains(out, "no such PXE image") {
		t.Errorf("set of a missing image: %v\n%s", err, out)
	}
	if out, err := a.Nbctl("boot", "clear", "a.sb8", "b.sb8"); err != nil {
		t.Fatalf("boot clear: %v\n%s", err, out)
	}
	out, _ = a.Nbctl("boot", "list", "--json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("links after clear:\n%s", out)
	}
	if out, err := a.Nbctl("frobnicate"); err == nil || !strings.Contains(out, "usage: nbctl") {
		t.Errorf("unknown command: %v\n%s", err, out)
	}
}

// nodesInventory has two testbeds, so that --domain has something to
// leave out, and every field the node listing shows set.
const nodesInventory = `images:
  - { name: orbit-2.0.0 }
  - { name: other }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-2.sb8, hostname: n12, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, disk: /dev/sdb, pxe_image: other }
      - { hrn: node1-1.sb8, hostname: n11, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", x: 1, y: 1, disk: /dev/sda, pxe_image: orbit-2.0.0 }
  - domain: sb9
    nodes:
      - { hrn: node2-1.sb9, hostname: n21, control_ip: 10.19.2.1, control_mac: "00:03:1d:0d:02:01", cmc_ip: 10.1.2.1, x: 2, y: 1, z: 3, disk: /dev/nvme0n1, pxe_image: orbit-2.0.0 }
`

// The inventory nodesInventory makes, as the API gives it: by domain,
// then HRN.
var (
	node11 = inventory.Node{HRN: "node1-1.sb8", Domain: "sb8", Hostname: "n11", ControlIP: "10.18.1.1", ControlMAC: "00:03:1d:0c:01:01", X: 1, Y: 1, Disk: "/dev/sda", PXEImage: "orbit-2.0.0"}
	node12 = inventory.Node{HRN: "node1-2.sb8", Domain: "sb8", Hostname: "n12", ControlIP: "10.18.1.2", ControlMAC: "00:03:1d:0c:01:02", X: 1, Y: 2, Disk: "/dev/sdb", PXEImage: "other"}
	node21 = inventory.Node{HRN: "node2-1.sb9", Domain: "sb9", Hostname: "n21", ControlIP: "10.19.2.1", ControlMAC: "00:03:1d:0d:02:01", CmcIP: "10.1.2.1", X: 2, Y: 1, Z: 3, Disk: "/dev/nvme0n1", PXEImage: "orbit-2.0.0"}
)

// rcInventory is nodesInventory with loopback control IPs (rcIP) for the
// tests that run RCs: an RC enrolls only from its node's address, and a
// simulated one speaks from 127.0.0.N (apptest.ClientFrom).
var (
	rcIP        = map[string]string{node11.HRN: "127.0.0.11", node12.HRN: "127.0.0.12"}
	rcInventory = strings.NewReplacer("control_ip: "+node11.ControlIP+",", "control_ip: "+rcIP[node11.HRN]+",",
		"control_ip: "+node12.ControlIP+",", "control_ip: "+rcIP[node12.HRN]+",").Replace(nodesInventory)
)

// fields splits a table nbctl printed into its rows' columns.
func fields(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

// TestNodesAndTestbeds: what nodes, nodes show and testbeds print, in
// tables and JSON, against netbootd.
func TestNodesAndTestbeds(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0", "other"}, Inventory: nodesInventory})
	a.Start()
	header := []string{"HRN", "DOMAIN", "HOSTNAME", "CONTROL_IP", "CONTROL_MAC", "X,Y", "DISK", "PXE_IMAGE"}
	row := func(n inventory.Node) []string {
		return []string{n.HRN, n.Domain, n.Hostname, n.ControlIP, n.ControlMAC, fmt.Sprintf("%d,%d", n.X, n.Y), n.Disk, n.PXEImage}
	}
	tests := []struct {
		args  []string
		table [][]string       // stdout as a table, or
		nodes []inventory.Node // stdout as a JSON list of nodes, or
		node  *inventory.Node  // stdout as one JSON node
		err   string           // a piece of the error
	}{
		{args: []string{"nodes"}, table: [][]string{header, row(node11), row(node12), row(node21)}},
		{args: []string{"nodes", "list"}, table: [][]string{header, row(node11), row(node12), row(node21)}},
		{args: []string{"nodes", "--domain", "sb8"}, table: [][]string{header, row(node11), row(node12)}},
		{args: []string{"nodes", "--domain", "nosuch"}, table: [][]string{header}},
		{args: []string{"nodes", "--json"}, nodes: []inventory.Node{node11, node12, node21}},
		{args: []string{"nodes", "--domain", "sb9", "--json"}, nodes: []inventory.Node{node21}},
		{args: []string{"nodes", "--json", "--domain", "sb8"}, nodes: []inventory.Node{node11, node12}},
		{args: []string{"nodes", "--domain", "nosuch", "--json"}, nodes: []inventory.Node{}},
		{args: []string{"nodes", "--domain", "bad domain"}, err: "HTTP 400"},
		{args: []string{"nodes", "show", "node2-1.sb9"}, node: &node21},
		{args: []string{"nodes", "show", "node1-2.sb8"}, node: &node12},
		{args: []string{"nodes", "show", "node9-9.sb9"}, err: "HTTP 404"},
		{args: []string{"nodes", "show"}, err: "usage: nbctl nodes show [--domain D] NODE"},
		{args: []string{"nodes", "show", "n21"}, node: &node21},
		{args: []string{"nodes", "show", "--domain", "sb9", "n21"}, node: &node21},
		{args: []string{"nodes", "show", "--domain", "sb8", "n21"}, err: "HTTP 404"},
		{args: []string{"nodes", "frobnicate"}, err: `unknown command "nodes frobnicate"`},
		{args: []string{"testbeds", "extra"}, err: "usage: nbctl testbeds"},
		{args: []string{"nodes", "--bogus"}, err: "flag provided but not defined: -bogus\nusage: nbctl nodes [--domain D] [--json]"},
		{args: []string{"testbeds"}, table: [][]string{{"DOMAIN", "NODES"}, {"sb8", "2"}, {"sb9", "1"}}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, err := nbctl(t.Context(), a, tc.args...)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one saying %q\n%s%s", err, tc.err, out, errs)
				}
				return
			case err != nil:
				t.Fatalf("%v\n%s%s", err, out, errs)
			case tc.table != nil:
				if diff := cmp.Diff(tc.table, fields(out)); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			case tc.nodes != nil:
				var got []inventory.Node
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				if diff := cmp.Diff(tc.nodes, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			default:
				var got inventory.Node
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				if diff := cmp.Diff(*tc.node, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestRCExecAgainstNetbootd: nbctl rc exec through netbootd to an RC:
// the command's output on stdout and stderr, its exit code, --timeout.
func TestRCExecAgainstNetbootd(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0", "other"}, Inventory: rcInventory})
	a.Start()
	ctx := t.Context()
	stopRC := runRC(t, rc.Config{AM: a.URL, MACs: []string{node11.ControlMAC}, Hostname: "n11", ImageName: "orbit-2.0.0", HTTP: apptest.ClientFrom(rcIP[node11.HRN]),
		ImageFile: filepath.Join(t.TempDir(), "none"), PollWait: 2 * time.Second})
	defer stopRC()
	// node12's RAM image has no shell, as the default image has none.
	noShell := filepath.Join(t.TempDir(), "sh")
	stopRC12 := runRC(t, rc.Config{AM: a.URL, MACs: []string{node12.ControlMAC}, Hostname: "n12", ImageName: "orbit-2.0.0", HTTP: apptest.ClientFrom(rcIP[node12.HRN]),
		ImageFile: filepath.Join(t.TempDir(), "none"), PollWait: 2 * time.Second, Shell: noShell})
	defer stopRC12()
	c := amclient.New(a.URL).WithToken(a.Token)
	deadline := time.Now().Add(30 * time.Second)
	for _, hrn := range []string{node11.HRN, node12.HRN} {
		for {
			if s, err := c.RCStatus(ctx, hrn); err == nil && s.Enrolled {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the RC of %s did not enroll within 30s\n%s", hrn, a.Log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	tests := []struct {
		name           string
		args           []string
		stdout, stderr string // stdout exactly, a piece of stderr
		err            string // a piece of the error, "" for none
	}{
		{"output and success", []string{node11.HRN, "--", "printf", "%s-%s", "a", "b"}, "a-b", "", ""},
		// Without a shell, the words reach the program as they are.
		{"no shell: the words as they are", []string{node11.HRN, "--", "echo", "hi;", "$HOME", ">&2"}, "hi; $HOME >&2\n", "", ""},
		{"--shell: both streams and an exit code", []string{"--shell", node11.HRN, "--", "echo", "hi;", "echo", "oops", ">&2;", "exit", "3"},
			"hi\n", "oops\n", "exited with code 3"},
		{"--shell on an image without a shell", []string{"--shell", node12.HRN, "--", "echo", "hi"}, "", "",
			"this image has no shell (" + noShell + " does not exist"},
		{"no shell needed on an image without one", []string{node12.HRN, "--", "echo", "hi"}, "hi\n", "", ""},
		{"a program that does not exist", []string{node12.HRN, "--", "no-such-program"}, "", "", "executable file not found"},
		{"without --", []string{node11.HRN, "echo", "no", "dashes"}, "no dashes\n", "", ""},
		{"the node by host name", []string{"n11", "--", "echo", "by", "name"}, "by name\n", "", ""},
		{"the node by host name in its domain", []string{"--domain", "sb8", "n11", "--", "true"}, "", "", ""},
		{"a host name not in the domain named", []string{"--domain", "sb9", "n11", "--", "true"}, "", "", "HTTP 404"},
		// Without --timeout, the sleep would end by itself, successfully.
		{"--timeout kills the command", []string{"--timeout", "1s", node11.HRN, "--", "sleep", "60"}, "", "", "killed: timeout 1s reached"},
		{"a node without an RC", []string{node21.HRN, "--", "true"}, "", "", "HTTP 409"},
		{"an unknown node", []string{"node9-9.sb9", "--", "true"}, "", "", "HTTP 404"},
		{"no command", []string{node11.HRN}, "", "", "usage: nbctl rc exec"},
	}
	t.Run("output is printed as it comes, once", func(t *testing.T) {
		goOn := filepath.Join(t.TempDir(), "go-on")
		// The command waits until nbctl has printed its first line: so
		// that line came while the command ran, and nbctl reads the
		// command at least once more after printing it.
		out := &watchWriter{want: "a\n", then: func() { testenv.WriteFile(t, goOn, "") }}
		var errs bytes.Buffer
		err := run(ctx, []string{"--server", a.URL, "--token-file", a.TokenFile, "rc", "exec", "--shell", "--timeout", "60s", node11.HRN, "--",
			"echo a; while [ ! -e " + goOn + " ]; do sleep 0.05; done; echo b"}, out, &errs)
		if err != nil {
			t.Errorf("error %v\n%s", err, errs.String())
		}
		if got := out.buf.String(); got != "a\nb\n" {
			t.Errorf("stdout %q, want %q", got, "a\nb\n")
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, err := nbctl(ctx, a, append([]string{"rc", "exec"}, tc.args...)...)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v\n%s", err, errs)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one saying %q", err, tc.err)
			}
			if out != tc.stdout {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr %q, want it to say %q", errs, tc.stderr)
			}
		})
	}
}

// watchWriter keeps what is written and calls then once it holds want.
type watchWriter struct {
	buf   bytes.Buffer
	want  string
	then  func()
	fired bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if !w.fired && strings.Contains(w.buf.String(), w.want) {
		w.fired = true
		w.then()
	}
	return len(p), nil
}

// TestNodeNames: every nbctl command that names a node takes what OMF's
// calls take, resolved by netbootd: the HRN, or a host name unique in the
// inventory, or in the testbed --domain names. n1 is a host name in two
// testbeds.
func TestNodeNames(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, hostname: n1, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", pxe_image: orbit-2.0.0 }
      - { hrn: node1-2.sb8, hostname: n2, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02", pxe_image: orbit-2.0.0 }
  - domain: sb9
    nodes:
      - { hrn: node1-1.sb9, hostname: n1, control_ip: 10.19.1.1, control_mac: "00:03:1d:0d:01:01", pxe_image: orbit-2.0.0 }
`})
	a.Start()
	commands := []struct {
		cmd   string
		args  func(flags []string, node string) []string
		named bool // what it prints (or its error) names the node found
	}{
		{"nodes show", func(f []string, n string) []string { return append(append([]string{"nodes", "show"}, f...), n) }, true},
		{"nodes events", func(f []string, n string) []string { return append(append([]string{"nodes", "events"}, f...), n) }, false},
		{"boot set", func(f []string, n string) []string { return append(append([]string{"boot", "set"}, f...), n) }, true},
		{"boot clear", func(f []string, n string) []string { return append(append([]string{"boot", "clear"}, f...), n) }, false},
		{"rc status", func(f []string, n string) []string { return append(append([]string{"rc", "status"}, f...), n) }, true},
		// No RC is enrolled: the refusal names the node found.
		{"rc exec", func(f []string, n string) []string {
			return append(append([]string{"rc", "exec"}, f...), n, "--", "true")
		}, true},
		{"disk save", func(f []string, n string) []string { return append(append([]string{"disk", "save"}, f...), n, "img") }, true},
		// No node has a power driver: the refusal names each node found.
		{"load", func(f []string, n string) []string {
			return append([]string{"load", "--image", "none", "--nodes", n}, f...)
		}, true},
		{"save", func(f []string, n string) []string {
			return append([]string{"save", "--image", "new", "--node", n}, f...)
		}, true},
	}
	names := []struct {
		flags []string
		node  string
		found string   // the HRN found, or "" for a failure that says:
		want  []string // these
	}{
		{node: "node1-2.sb8", found: "node1-2.sb8"},
		{node: "n2", found: "node1-2.sb8"},
		{flags: []string{"--domain", "sb9"}, node: "n1", found: "node1-1.sb9"},
		{flags: []string{"--domain", "sb8"}, node: "n1", found: "node1-1.sb8"},
		{node: "n1", want: []string{"host name of 2 nodes: node1-1.sb8 (domain sb8), node1-1.sb9 (domain sb9)", "HTTP 409"}},
		{node: "ghost", want: []string{"ghost", "HTTP 404"}},
		{flags: []string{"--domain", "sb9"}, node: "n2", want: []string{"n2", "sb9", "HTTP 404"}},
	}
	for _, c := range commands {
		for _, n := range names {
			t.Run(c.cmd+" "+strings.Join(append(n.flags, n.node), " "), func(t *testing.T) {
				out, errs, err := nbctl(t.Context(), a, c.args(n.flags, n.node)...)
				said := out + errs + fmt.Sprint(err)
				if n.found == "" {
					if err == nil {
						t.Fatalf("no error\n%s", said)
					}
					for _, w := range n.want {
						if !strings.Contains(said, w) {
							t.Errorf("does not say %q:\n%s", w, said)
						}
					}
					return
				}
				if strings.Contains(said, "HTTP 404") || strings.Contains(said, "HTTP 409: host name") || strings.Contains(said, "usage") {
					t.Fatalf("the node was not found:\n%s", said)
				}
				if !c.named && err != nil {
					t.Fatalf("%v\n%s", err, said)
				}
				if c.named && !strings.Contains(said, n.found) {
					t.Errorf("does not name %s:\n%s", n.found, said)
				}
			})
		}
	}
}
