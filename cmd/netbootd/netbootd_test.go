package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
)

const seed = `images:
  - { name: orbit-2.0.0 }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01" }
      - { hrn: node1-2.sb8, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02" }
      - { hrn: node1-3.sb8, control_ip: 10.18.1.3, control_mac: "00:03:1d:0c:01:03" }
`

// runToExit runs netbootd with cfg and returns its output, failing if it
// is still running after 10 s.
func runToExit(t *testing.T, bin, cfg string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netbootd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "netbootd"), "--config", path).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("netbootd kept running on a bad config:\n%s", out)
	}
	return string(out), err
}

func TestRefusesBadConfig(t *testing.T) {
	bin := apptest.Binaries(t)
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	base := "state_dir: " + filepath.Join(dir, "state") + "\ntftp_root: " + dir + "\ntftp: { listen: \"\" }\ninventory: { seed: \"\" }\n"
	tests := []refusal{
		{"unknown key", base + "htttp: { listen: \":1\" }\n", "line 5: field htttp not found"},
		{"unknown nested key", base + "pxe:\n  cfg_dir: x\n  lifetime: 3s\n", "line 7: field lifetime not found"},
		{"bad CIDR", base + "dhcp: { subnet: 10.18.0.0/40 }\n", `dhcp.subnet: "10.18.0.0/40" is not a CIDR prefix`},
		{"missing tftp_root", strings.Replace(base, "tftp_root: "+dir, "tftp_root: /nonexistent/tftpboot", 1), "tftp_root: open /nonexistent/tftpboot: no such file or directory"},
		{"port in use", base + "http: { listen: \"" + busy.Addr().String() + "\" }\n", "address already in use"},
		{"missing inventory file", strings.Replace(base, `seed: ""`, "file: /nonexistent/inventory.yaml", 1),
			`inventory file /nonexistent/inventory.yaml: open /nonexistent/inventory.yaml: no such file or directory (write it, or set inventory.file: "" in netbootd's config`},
		{"inventory file and seed", strings.Replace(base, `seed: ""`, "seed: /a.yaml, file: /b.yaml", 1), "inventory: file and seed are both set"},
		{"broken seed", strings.Replace(base, `seed: ""`, "seed: "+writeFile(t, "testbeds: [{domain: x, nodes: [{hrn: a, control_ip: 1.2.3, control_mac: zz}]}]"), 1), `control_ip "1.2.3"`},
	}
	checkRefusals(t, bin, tests)
}

// refusal is a config netbootd must refuse at start, and what it says.
type refusal struct{ name, cfg, want string }

func checkRefusals(t *testing.T, bin string, tests []refusal) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runToExit(t, bin, tt.cfg)
			if err == nil {
				t.Fatalf("netbootd accepted it:\n%s", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCleanShutdown: SIGTERM (systemd) and SIGINT (Ctrl-C) both stop
// netbootd in order, with exit status 0.
func TestCleanShutdown(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			a := apptest.New(t, apptest.Options{Inventory: seed, Images: []string{"orbit-2.0.0"}, TFTP: true})
			a.Start()
			// The ready file names the ports netbootd chose for port 0: its AM
			// answers on the one, its TFTP server holds the other.
			ready, err := os.ReadFile(a.ReadyFile)
			if err != nil {
				t.Fatal(err)
			}
			var bound struct{ HTTP, TFTP string }
			if err := json.Unmarshal(ready, &bound); err != nil || strings.HasSuffix(bound.HTTP, ":0") || strings.HasSuffix(bound.TFTP, ":0") {
				t.Fatalf("ready file %q: %v", ready, err)
			}
			if r := apptest.Call(t, http.MethodGet, "http://"+bound.HTTP+"/api/v1/testbeds", "", a.Authorized(nil)); r.Status != http.StatusOK {
				t.Errorf("the AM at the ready file's %s: %d %s", bound.HTTP, r.Status, r.Body)
			}
			if c, err := net.ListenPacket("udp4", bound.TFTP); err == nil {
				c.Close()
				t.Errorf("the ready file's TFTP address %s is free: netbootd does not hold it", bound.TFTP)
			}
			if err := a.StopWith(sig); err != nil {
				t.Fatalf("exit after %v: %v\n%s", sig, err, a.Log)
			}
			if _, err := os.Stat(a.ReadyFile); err == nil {
				t.Errorf("the ready file outlived netbootd")
			}
			if !strings.Contains(a.Log.String(), "netbootd stopped") {
				t.Errorf("no orderly stop logged:\n%s", a.Log)
			}
		})
	}
}

func TestJSONLogs(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: seed, Args: []string{"--log-format", "json"}})
	a.Start()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(a.Log.String()), "\n")
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil {
			t.Errorf("not a JSON log record: %q", l)
		}
	}
	if len(lines) < 3 {
		t.Errorf("too few log lines: %q", lines)
	}
	out, err := runToExitArgs(t, a.Bin, "--config", a.Config, "--log-format", "xml")
	if err == nil || !strings.Contains(out, `--log-format "xml"`) {
		t.Fatalf("bad log format accepted: %v %s", err, out)
	}
}

func runToExitArgs(t *testing.T, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "netbootd"), args...).CombinedOutput()
	return string(out), err
}

// TestRestartReconciles kills netbootd as a crash would, disturbs cfg_dir,
// and checks that the next start puts it back as the database says.
func TestRestartReconciles(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: seed, Images: []string{"orbit-2.0.0"}})
	a.Start()
	for hrn, lifetime := range map[string]string{"node1-1.sb8": "300s", "node1-2.sb8": "300s", "node1-3.sb8": "1s"} {
		if out, err := a.Nbctl("boot", "set", "--lifetime", lifetime, hrn); err != nil {
			t.Fatalf("nbctl boot set: %v\n%s", err, out)
		}
	}
	a.Kill()
	os.Remove(filepath.Join(a.CfgDir, "0A120101"))                 // lost
	for _, name := range []string{"0A1201FF", ".netboot-tmp-xy"} { // unknown, half-made
		if err := os.Symlink("./orbit-2.0.0", filepath.Join(a.CfgDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // node1-3's link expires while down

	a.Start()
	got := map[string]string{}
	entries, _ := os.ReadDir(a.CfgDir)
	for _, e := range entries {
		if e.Name() == ".netboot-links" { // the link templates, not a link
			continue
		}
		target, _ := os.Readlink(filepath.Join(a.CfgDir, e.Name()))
		got[e.Name()] = target
	}
	want := map[string]string{"0A120101": "./orbit-2.0.0", "0A120102": "./orbit-2.0.0", "default": "", "orbit-2.0.0": ""}
	if len(got) != len(want) {
		t.Errorf("cfg_dir after restart = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s -> %q, want %q", k, got[k], v)
		}
	}
	out, _ := a.Nbctl("boot", "list")
	if !strings.Contains(out, "node1-1.sb8") || strings.Contains(out, "node1-3.sb8") {
		t.Errorf("boot list after restart:\n%s", out)
	}
}

// TestLogLevel: --log-level keeps the lines of its level and above and
// drops the others. The AM logs a read at debug, a change at info and a
// failing power driver at warn.
func TestLogLevel(t *testing.T) {
	const inv = `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", power: "qemu:/nonexistent/qmp.sock" }
`
	var (
		debugLine = []string{"level=DEBUG", "msg=http", "method=GET", "path=/api/v1/images"}
		infoLine  = []string{"level=INFO", "msg=http", "method=PUT", "path=/api/v1/nodes/node1-1.sb8/boot"}
		warnLine  = []string{"level=WARN", "msg=power", "hrn=node1-1.sb8", "QEMU is not running"}
	)
	for _, tt := range []struct {
		level           string // "" is the default
		debug, info, wr bool
	}{
		{"debug", true, true, true},
		{"", false, true, true},
		{"info", false, true, true},
		{"warn", false, false, true},
		{"error", false, false, false},
	} {
		t.Run("level="+tt.level, func(t *testing.T) {
			var args []string
			if tt.level != "" {
				args = []string{"--log-level", tt.level}
			}
			a := apptest.New(t, apptest.Options{Inventory: inv, Images: []string{"orbit-2.0.0"}, Args: args})
			a.Start()
			for _, c := range []struct {
				method, path, body string
				want               int
			}{
				{"GET", "/api/v1/images", "", 200},
				{"PUT", "/api/v1/nodes/node1-1.sb8/boot", "{}", 200},
				{"POST", "/api/v1/nodes/node1-1.sb8/power", `{"action":"on"}`, 502},
			} {
				if r := a.Call(t, c.method, c.path, c.body, nil); r.Status != c.want {
					t.Fatalf("%s %s = %d, want %d", c.method, c.path, r.Status, c.want)
				}
			}
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
			log := a.Log.String()
			for _, w := range []struct {
				name  string
				want  bool
				parts []string
			}{
				{"debug", tt.debug, debugLine},
				{"info", tt.info, infoLine},
				{"warn", tt.wr, warnLine},
				// Every line of a level below the threshold is dropped, not only these.
				{"any debug", tt.debug, []string{"level=DEBUG"}},
				{"any info", tt.info, []string{"level=INFO"}},
			} {
				if got := apptest.HasLine(log, w.parts...); got != w.want {
					t.Errorf("%s line %q logged: %v, want %v\n%s", w.name, w.parts, got, w.want, log)
				}
			}
		})
	}
	a := apptest.New(t, apptest.Options{})
	out, err := runToExitArgs(t, a.Bin, "--config", a.Config, "--log-level", "loud")
	if err == nil || !strings.Contains(out, "--log-level") || !strings.Contains(out, "loud") {
		t.Errorf("bad log level accepted: %v %s", err, out)
	}
}

// TestAbsoluteCfgDir: an absolute pxe.cfg_dir is used as it is, not below
// tftp_root: the default file and the links are made there, and the image
// files are looked up there.
func TestAbsoluteCfgDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pxe-configs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orbit-2.0.0"), []byte("DEFAULT boel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := apptest.New(t, apptest.Options{Inventory: seed, Extra: "pxe: { cfg_dir: " + dir + " }\n"})
	a.Start()
	req, _ := http.NewRequest("PUT", a.URL+"/api/v1/nodes/node1-1.sb8/boot", strings.NewReader(`{"image":"orbit-2.0.0"}`))
	req.Header = a.Authorized(nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("boot set = %d\n%s", resp.StatusCode, a.Log)
	}
	if target, err := os.Readlink(filepath.Join(dir, "0A120101")); err != nil || target != "./orbit-2.0.0" {
		t.Errorf("link in %s: %q, %v; want ./orbit-2.0.0", dir, target, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "default")); err != nil {
		t.Errorf("no default file in the absolute cfg_dir: %v", err)
	}
	// Nothing under tftp_root: apptest made its usual pxelinux.cfg, empty.
	if entries, err := os.ReadDir(a.CfgDir); err != nil || len(entries) != 0 {
		t.Errorf("tftp_root/pxelinux.cfg = %v, %v; want it left empty", entries, err)
	}
	// Nothing else either, but GRUB's grub.cfg: GRUB's prefix is fixed at
	// <tftp_root>/grub, wherever cfg_dir is.
	var stray []string
	if err := filepath.WalkDir(a.TFTPRoot, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != filepath.Join(a.TFTPRoot, "grub", "grub.cfg") {
			stray = append(stray, p)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if len(stray) != 0 {
		t.Errorf("files made under tftp_root: %q", stray)
	}
}

// TestNoReseed: the seed is imported into an empty database only. After a
// restart with a changed seed, the inventory is what the database held: a
// node deleted meanwhile stays deleted, a node the new seed changes keeps
// its stored fields, a node only the new seed has is not added.
func TestNoReseed(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: seed, Images: []string{"orbit-2.0.0"}})
	a.Start()
	if !strings.Contains(a.Log.String(), "inventory seeded") {
		t.Fatalf("first start did not seed:\n%s", a.Log)
	}
	req, _ := http.NewRequest("DELETE", a.URL+"/api/v1/nodes/node1-3.sb8", nil)
	req.Header = a.Authorized(nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("delete node1-3 = %d", resp.StatusCode)
	}
	before := export(t, a)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(seed, "10.18.1.1,", "10.18.9.1,", 1) +
		"      - { hrn: node9-9.sb8, control_ip: 10.18.9.9, control_mac: \"00:03:1d:0c:09:09\" }\n"
	if changed == seed {
		t.Fatal("the changed seed is the same")
	}
	if err := os.WriteFile(a.Seed, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Start()
	if after := export(t, a); after != before {
		t.Errorf("inventory after a restart with a changed seed:\n%s\nwant what the database held:\n%s", after, before)
	}
	if strings.Contains(a.Log.String(), "inventory seeded") {
		t.Errorf("seeded again:\n%s", a.Log)
	}
}

func export(t *testing.T, a *apptest.Appliance) string {
	t.Helper()
	r := a.Call(t, http.MethodGet, "/api/v1/inventory", "", nil)
	if r.Status != 200 {
		t.Fatalf("export = %d %s", r.Status, r.Body)
	}
	return r.Body
}
