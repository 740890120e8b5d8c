package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
)

// invNode is node1-i's line of a test inventory file.
func invNode(i int, extra string) string {
	return fmt.Sprintf("      - { hrn: node1-%d.sb8, control_ip: 10.18.1.%d, control_mac: \"00:03:1d:0c:01:%02x\"%s }\n", i, i, i, extra)
}

const invHead = "images:\n  - { name: orbit-2.0.0 }\ntestbeds:\n  - domain: sb8\n    nodes:\n"

// TestInventoryFileFollowed: with inventory.file, netbootd's inventory is
// the file's: read at start, read again on SIGHUP (a node added, a node
// given power:, a node removed, its boot link with it), and untouched where
// the file did not change (an unchanged node keeps its boot link and
// timeline). The API refuses to change nodes, saying how. A bad file on
// SIGHUP changes nothing and says which line, in the log and in nbctl
// inventory status; at start it stops netbootd, saying which line.
func TestInventoryFileFollowed(t *testing.T) {
	a := apptest.New(t, apptest.Options{FollowFile: true, Images: []string{"orbit-2.0.0"},
		Inventory: invHead + invNode(1, "") + invNode(2, "") + invNode(3, "")})
	a.Start()
	c := amclient.New(a.URL).WithToken(a.Token)
	ctx := t.Context()
	nodes := func() map[string]apiv1.Node {
		t.Helper()
		ns, err := c.Nodes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]apiv1.Node{}
		for _, n := range ns {
			out[n.HRN] = n
		}
		return out
	}
	if got := nodes(); len(got) != 3 {
		t.Fatalf("nodes at start: %v, want the file's 3", got)
	}
	st, err := c.InventoryStatus(ctx)
	if err != nil || st.Source != apiv1.InventoryFromFile || st.File != a.Seed || len(st.Added) != 3 || st.Error != "" {
		t.Fatalf("inventory status at start: %+v, %v", st, err)
	}
	for _, hrn := range []string{"node1-1.sb8", "node1-2.sb8", "node1-3.sb8"} {
		if _, err := c.SetBoot(ctx, hrn, "orbit-2.0.0", time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	// The API does not change a file's nodes: the next reading would undo it.
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPut, "/api/v1/nodes/node1-9.sb8", `{"domain":"sb8","control_ip":"10.18.1.99","control_mac":"00:03:1d:0c:01:99"}`},
		{http.MethodDelete, "/api/v1/nodes/node1-1.sb8", ""},
		{http.MethodPost, "/api/v1/inventory", invHead + invNode(9, "")},
	} {
		r := a.Call(t, tc.method, tc.path, tc.body, nil)
		if r.Status != http.StatusConflict || !strings.Contains(r.Body, "the inventory follows "+a.Seed) || !strings.Contains(r.Body, "reload netbootd") {
			t.Errorf("%s %s: %d %s, want 409 naming the file", tc.method, tc.path, r.Status, r.Body)
		}
	}
	if out, err := a.NbctlContext(ctx, "inventory", "import", a.Seed); err == nil || !strings.Contains(out, "edit that file, then reload netbootd") {
		t.Errorf("nbctl inventory import: %v\n%s", err, out)
	}
	// The power service says where power: goes.
	if _, err := c.Power(ctx, "node1-2.sb8", "reset"); err == nil || !strings.Contains(err.Error(), "has no power driver: set power: in its entry in "+a.Seed) {
		t.Errorf("reset without power: %v", err)
	}

	// reload writes the file, sends SIGHUP and waits for the reading's
	// outcome: the status changes once the reading is over.
	reload := func(t *testing.T, body string) apiv1.InventoryStatus {
		t.Helper()
		before, err := c.InventoryStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.Seed, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		a.Signal(syscall.SIGHUP)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st, err := c.InventoryStatus(ctx)
			if err == nil && (!st.LoadedAt.Equal(before.LoadedAt) || !st.FailedAt.Equal(before.FailedAt)) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reading within 30s of SIGHUP: %+v, %v\n%s", st, err, a.Log)
			}
		}
	}

	t.Run("edited file and SIGHUP", func(t *testing.T) {
		st := reload(t, invHead+invNode(1, "")+invNode(2, ", power: \"qemu:/run/netboot/node1-2.qmp\"")+invNode(4, ""))
		if st.Error != "" || !slices.Equal(st.Added, []string{"node1-4.sb8"}) || !slices.Equal(st.Changed, []string{"node1-2.sb8"}) ||
			!slices.Equal(st.Removed, []string{"node1-3.sb8"}) || st.Unchanged != 1 {
			t.Errorf("status after the edit: %+v", st)
		}
		got := nodes()
		if len(got) != 3 || got["node1-2.sb8"].Power != "qemu:/run/netboot/node1-2.qmp" || got["node1-4.sb8"].HRN == "" || got["node1-3.sb8"].HRN != "" {
			t.Errorf("nodes after the edit: %+v", got)
		}
		links, err := c.Boot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var linked []string
		for _, l := range links {
			linked = append(linked, l.HRN)
		}
		// node1-1 unchanged, node1-2 changed but not readdressed: kept.
		if !slices.Equal(linked, []string{"node1-1.sb8", "node1-2.sb8"}) {
			t.Errorf("boot links %v: want node1-1's and node1-2's kept, node1-3's gone", linked)
		}
		if _, err := os.Lstat(filepath.Join(a.CfgDir, "0A120103")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the removed node's link file: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(a.CfgDir, "0A120101")); err != nil {
			t.Errorf("the unchanged node's link file: %v", err)
		}
		out, err := a.NbctlContext(ctx, "inventory", "status")
		if err != nil || !apptest.HasLine(out, "follows "+a.Seed) || !apptest.HasLine(out, "1 added, 1 changed, 1 removed, 1 unchanged") ||
			!apptest.HasLine(out, "removed: node1-3.sb8") {
			t.Errorf("nbctl inventory status: %v\n%s", err, out)
		}
	})

	t.Run("bad file and SIGHUP: nothing changes, the line is named", func(t *testing.T) {
		good, err := c.ExportInventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, body, want, logged string }{
			// line 7: node1-2's control IP is node1-1's.
			{"duplicate IP", invHead + invNode(1, "") + strings.Replace(invNode(2, ""), "10.18.1.2", "10.18.1.1", 1),
				`line 7: testbeds[0] (sb8) nodes[1]: node "node1-2.sb8": duplicate control_ip 10.18.1.1 (already used by node "node1-1.sb8" at line 6)`,
				`problem="line 7: testbeds[0] (sb8) nodes[1]: node \"node1-2.sb8\": duplicate control_ip 10.18.1.1`},
			{"malformed field", invHead + invNode(1, "") + invNode(2, ", power: \"telnet:x\""),
				`line 7: testbeds[0] (sb8) nodes[1]: invalid inventory entry: node "node1-2.sb8": power "telnet:x"`,
				`problem="line 7: testbeds[0] (sb8) nodes[1]: invalid inventory entry`},
			{"YAML error", invHead + invNode(1, "") + "      - { hrn: node1-2.sb8, control_ip: [\n", "yaml: line 7", "yaml: line 7"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st := reload(t, tc.body)
				all := st.Error + "\n" + strings.Join(st.Problems, "\n")
				if st.FailedAt.IsZero() || !strings.Contains(all, tc.want) {
					t.Errorf("status: %+v\nwant a failure saying %q", st, tc.want)
				}
				if after, err := c.ExportInventory(ctx); err != nil || string(after) != string(good) {
					t.Errorf("a bad file changed the inventory: %v\n%s\nwant\n%s", err, after, good)
				}
				if !apptest.HasLine(a.Log.String(), "level=ERROR", "inventory file rejected", tc.logged) {
					t.Errorf("no error logged saying %q:\n%s", tc.logged, a.Log)
				}
				out, err := a.NbctlContext(ctx, "inventory", "status")
				if err == nil || !apptest.HasLine(out, "LAST READING FAILED") || !strings.Contains(out, tc.want) {
					t.Errorf("nbctl inventory status: %v\n%s", err, out)
				}
			})
		}
		// Fixed: the next reading clears the failure.
		if st := reload(t, string(good)); st.Error != "" || st.Unchanged != 3 {
			t.Errorf("status after the fix: %+v", st)
		}
	})

	t.Run("a bad file stops netbootd at start, naming the line", func(t *testing.T) {
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.Seed, []byte(invHead+invNode(1, "")+invNode(1, "")), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := os.ReadFile(a.Config)
		if err != nil {
			t.Fatal(err)
		}
		out, err := runToExit(t, a.Bin, string(cfg))
		if err == nil || !strings.Contains(out, "inventory file "+a.Seed) ||
			!strings.Contains(out, `line 7: testbeds[0] (sb8) nodes[1]: node "node1-1.sb8": duplicate hrn node1-1.sb8 (already used by node "node1-1.sb8" at line 6)`) {
			t.Errorf("netbootd with a bad inventory file: %v\n%s", err, out)
		}
	})
}
