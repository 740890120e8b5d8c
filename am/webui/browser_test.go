package webui_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/browsertest"
	"github.com/orbit-lab/netboot/internal/qmp/qmptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
)

// The browser tests run a real netbootd (internal/apptest) and drive the
// web view in headless Chromium. Node 1's control IP is 127.0.0.1, so the
// boot files fetched over HTTP from loopback, and a real orbit-rc, land on
// its timeline; the other nodes' addresses are further loopback ones
// (apptest.ClientFrom).
const (
	node1 = "node1-1.sb8"
	mac1  = "00:03:1d:0c:01:01"
)

// inventory is a 6 by 4 testbed, at x,y, and a second testbed without
// coordinates (laid out in order).
func inventory() string {
	var b strings.Builder
	b.WriteString("images:\n  - { name: orbit-2.0.0, description: ORBIT RAM image }\n  - { name: baseline-6.1, description: Debian baseline }\ntestbeds:\n  - domain: sb8\n    nodes:\n")
	for y := 1; y <= 4; y++ {
		for x := 1; x <= 6; x++ {
			i := (y-1)*6 + x
			ip := fmt.Sprintf("127.0.0.%d", 10+i)
			if i == 1 {
				ip = "127.0.0.1"
			}
			fmt.Fprintf(&b, "      - { hrn: node%d-%d.sb8, hostname: node%d-%d, control_ip: %s, control_mac: \"00:03:1d:0c:%02x:%02x\", x: %d, y: %d, disk: /dev/sda, pxe_image: orbit-2.0.0 }\n",
				x, y, x, y, ip, y, x, x, y)
		}
	}
	b.WriteString("  - domain: sb9\n    nodes:\n")
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, "      - { hrn: node%d.sb9, hostname: node%d, control_ip: 127.0.1.%d, control_mac: \"00:03:1d:0d:00:%02x\" }\n", i, i, i, i)
	}
	return b.String()
}

// token makes an API token of role with the admin token.
func token(t *testing.T, a *apptest.Appliance, role string) string {
	t.Helper()
	r := a.Call(t, http.MethodPost, "/api/v1/tokens", fmt.Sprintf(`{"name":"ui-%s","role":%q}`, role, role), nil)
	var tok apiv1.TokenCreated
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("token create %s: %d %s", role, r.Status, r.Body)
	}
	if err := json.Unmarshal([]byte(r.Body), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("token create %s: %v %s", role, err, r.Body)
	}
	return tok.Secret
}

// fetchBoot fetches a boot file over HTTP from ip, as a node's firmware
// or iPXE does: it lands on that node's timeline.
func fetchBoot(t *testing.T, a *apptest.Appliance, ip, file string) {
	t.Helper()
	r := apptest.CallWith(t, apptest.ClientFrom(ip), http.MethodGet, a.URL+"/boot/"+file, "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("boot file %s from %s: %d %s", file, ip, r.Status, r.Body)
	}
}

// startRC runs the real orbit-rc as node 1 (127.0.0.1), of MAC mac, until
// the test ends. It returns its directory, where disk* are the disks it
// may write.
func startRC(t *testing.T, a *apptest.Appliance, mac string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "orbit_image"), "orbit-2.0.0\n")
	cmd := exec.Command(filepath.Join(a.Bin, "orbit-rc"), "--am", a.URL, "--mac", mac, "--hostname", "node1-1",
		"--cmdline", "/dev/null", "--image-file", filepath.Join(dir, "orbit_image"), "--state-dir", filepath.Join(dir, "state"),
		"--disk-allow", filepath.Join(dir, "disk*"), "--efi-dir", filepath.Join(dir, "efi"),
		"--poll-wait", "5s", "--max-backoff", "1s", "--reboot-cmd", "true", "--poweroff-cmd", "true")
	out := &apptest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // fails only if it has exited: done says how
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("orbit-rc exited with %v on SIGINT\n%s", err, out)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("orbit-rc did not stop on SIGINT (killed: %v)\n%s", <-done, out)
		}
	})
	return dir
}

func newAppliance(t *testing.T) *apptest.Appliance {
	t.Helper()
	a := apptest.New(t, apptest.Options{Inventory: inventory(), Images: []string{"orbit-2.0.0", "baseline-6.1"},
		Extra: "http_boot: { prefix: /boot/ }\n"})
	for name, body := range map[string]string{"pxelinux.0": "pxelinux", "ldlinux.c32": "ldlinux", "linux-orbit-2.0.0": "kernel", "initramfs-orbit-2.0.0.gz": "initrd"} {
		testenv.WriteFile(t, filepath.Join(a.TFTPRoot, name), body)
	}
	a.Start()
	return a
}

// TestGridFollowsABoot: an operator signed in watches node 1 boot: its
// cell goes from boot files to kernel to enrolled as the events come, with
// no reload; Enter on the cell opens the node page with the timeline;
// "Set boot image" changes the node's link (the API and pxelinux.cfg say
// so).
func TestGridFollowsABoot(t *testing.T) {
	a := newAppliance(t)
	ctx, _ := browsertest.Start(t, 1280, 800)
	browsertest.SignIn(t, ctx, a.URL, token(t, a, "operator"))
	// A mark that a reload would wipe.
	browsertest.Do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	browsertest.Do(t, ctx, "the grid", wait(browsertest.CellState(node1, "unknown")), wait(`document.querySelectorAll('.cell').length === 27`))
	// The inventory's x,y: node 3-2 is in column 3, row 2.
	if pos := browsertest.Eval[string](t, ctx, `(c => c.style.gridColumn + "," + c.style.gridRow)(document.querySelector('.cell[data-hrn="node3-2.sb8"]'))`); pos != "3,2" {
		t.Errorf("node3-2's cell at %s, want 3,2", pos)
	}
	size := `(c => c.getBoundingClientRect().width + "x" + c.getBoundingClientRect().height)(document.querySelector('.cell[data-hrn="node1-1.sb8"]'))`
	before := browsertest.Eval[string](t, ctx, size)

	fetchBoot(t, a, "127.0.0.1", "pxelinux.0")
	browsertest.Do(t, ctx, "boot files", wait(browsertest.CellState(node1, "bootfiles")))
	fetchBoot(t, a, "127.0.0.1", "linux-orbit-2.0.0")
	browsertest.Do(t, ctx, "kernel", wait(browsertest.CellState(node1, "kernel")))
	rcDir := startRC(t, a, mac1)
	browsertest.Do(t, ctx, "enrolled", wait(browsertest.CellState(node1, "enrolled")))
	// Other nodes' boots, for the picture: boot files, a kernel.
	fetchBoot(t, a, "127.0.0.12", "pxelinux.0")
	fetchBoot(t, a, "127.0.0.13", "pxelinux.0")
	fetchBoot(t, a, "127.0.0.13", "linux-orbit-2.0.0")
	browsertest.Do(t, ctx, "other nodes", wait(browsertest.CellState("node2-1.sb8", "bootfiles")), wait(browsertest.CellState("node3-1.sb8", "kernel")))
	if !browsertest.Eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Error("the page reloaded")
	}
	if after := browsertest.Eval[string](t, ctx, size); after != before {
		t.Errorf("a cell's size changed with its state: %s, then %s", before, after)
	}
	if label := browsertest.Eval[string](t, ctx, `document.querySelector('.cell[data-hrn="node1-1.sb8"]').getAttribute("aria-label")`); label != "node1-1.sb8: enrolled" {
		t.Errorf("cell label %q", label)
	}
	// The legend counts the states.
	browsertest.Do(t, ctx, "the legend", wait(`document.querySelector('[data-count="enrolled"]').textContent === " 1" && document.querySelector('[data-count="kernel"]').textContent === " 1"`))
	browsertest.Screenshot(t, ctx, "grid.png")

	// Keyboard: the arrow keys move between cells as they lie, Enter
	// opens the node.
	browsertest.Do(t, ctx, "arrows", chromedp.Focus(chromedp.CSS(`.cell[data-hrn="node2-1.sb8"]`)), chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowLeft),
		chromedp.KeyEvent(kb.ArrowUp), wait(`document.activeElement.dataset.hrn === "node1-1.sb8"`))
	browsertest.Do(t, ctx, "open the node", chromedp.KeyEvent("\r"),
		wait(`location.hash === "#/node/node1-1.sb8"`),
		wait(`[...document.querySelectorAll("#timeline td")].some(td => td.textContent === "enrolled")`),
		wait(`document.querySelector("#rc dl") !== null`))
	if id := browsertest.Eval[string](t, ctx, `document.activeElement.id`); id != "view" {
		t.Errorf("after Enter on the cell, the focus is on %q, not the page", id)
	}
	timeline := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll("#timeline tbody tr")].map(r => r.children[3].textContent)`)
	if strings.Join(timeline, ",") != "pxelinux.0,linux-orbit-2.0.0,enrolled" {
		t.Errorf("timeline %q", timeline)
	}
	if d := browsertest.Eval[string](t, ctx, `document.querySelector("#timeline tbody tr:last-child").children[1].textContent`); !strings.HasSuffix(d, "s") {
		t.Errorf("no duration before enrolled: %q", d)
	}
	if got := browsertest.Eval[string](t, ctx, `document.getElementById("phases").textContent`); !regexp.MustCompile(`^Last boot: loading boot files → kernel \(\+[0-9.]+ (s|ms)\) → enrolled \(\+[0-9.]+ (s|ms)\); [0-9.]+ (s|ms) in all$`).MatchString(got) {
		t.Errorf("phases: %q", got)
	}
	if got := browsertest.Eval[string](t, ctx, `document.getElementById("node-state").dataset.state`); got != "enrolled" {
		t.Errorf("node page state %q", got)
	}
	if kernel := browsertest.Eval[string](t, ctx, `document.getElementById("rc").textContent`); !strings.Contains(kernel, "orbit-2.0.0") {
		t.Errorf("RC status without its RAM image: %q", kernel)
	}
	browsertest.Do(t, ctx, "set the boot image",
		chromedp.SetValue(chromedp.ID("boot-image"), "baseline-6.1"),
		chromedp.Click(chromedp.ID("set-boot")),
		wait(`document.getElementById("boot-link").textContent.includes("baseline-6.1")`))
	r := a.Call(t, http.MethodGet, "/api/v1/boot", "", nil)
	var links []apiv1.BootLink
	if err := json.Unmarshal([]byte(r.Body), &links); err != nil || len(links) != 1 || links[0].HRN != node1 || links[0].Image != "baseline-6.1" {
		t.Errorf("boot links after the click: %s", r.Body)
	}
	// The node's pxelinux.cfg entry, named by its IP in hex, is the image's.
	if got, want := testenv.ReadFile(t, filepath.Join(a.CfgDir, "7F000001")), testenv.ReadFile(t, filepath.Join(a.CfgDir, "baseline-6.1")); got != want {
		t.Errorf("pxelinux.cfg/7F000001 is %q, want baseline-6.1's %q", got, want)
	}
	browsertest.Screenshot(t, ctx, "node.png")

	browsertest.Do(t, ctx, "clear the boot image", chromedp.Click(chromedp.ID("clear-boot")),
		wait(`document.getElementById("boot-link").textContent.startsWith("No boot link")`))
	if r := a.Call(t, http.MethodGet, "/api/v1/boot", "", nil); strings.TrimSpace(r.Body) != "[]" {
		t.Errorf("boot links after clear: %s", r.Body)
	}

	// Load a disk image onto the node: the RC writes it, the page shows
	// the command and the timeline says so.
	raw := make([]byte, 1<<20)
	for i := range raw {
		raw[i] = byte(i * 7 / 5)
	}
	img := zstdtest.Compress(t, raw)
	sum := sha256.Sum256(img)
	if _, err := amclient.New(a.URL).WithToken(a.Token).PutDiskImage(context.Background(), "baseline", bytes.NewReader(img), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(rcDir, "disk0")
	testenv.WriteFile(t, disk, make([]byte, 2<<20))
	browsertest.Do(t, ctx, "load", chromedp.Evaluate[chromedp.Void](`location.hash = "#/"`), wait(`document.querySelector(".cell") !== null`),
		chromedp.Evaluate[chromedp.Void](`location.hash = "#/node/`+node1+`"`), wait(`document.querySelector("#load-image option") !== null`),
		chromedp.SetValue(chromedp.ID("load-image"), "baseline"), chromedp.SetValue(chromedp.ID("load-disk"), disk),
		chromedp.Click(chromedp.ID("load")))
	if err := chromedp.Do(ctx, wait(`[...document.querySelectorAll("#timeline td")].some(td => td.textContent === "image load done")`),
		wait(`[...document.querySelectorAll("#commands td")].some(td => td.textContent.startsWith("done"))`),
		wait(`document.getElementById("node-state").dataset.state === "enrolled"`)); err != nil {
		t.Fatalf("the load: %v; the page says %q", err, browsertest.Eval[string](t, ctx, `document.getElementById("error").textContent + " | " + document.getElementById("commands").textContent + " | " + document.getElementById("timeline").textContent`))
	}
	if got, err := os.ReadFile(disk); err != nil || !bytes.Equal(got[:len(raw)], raw) {
		t.Errorf("the disk after the load from the page: %v", err)
	}
}

// TestViewerSeesNoActions: a viewer token reads everything and is offered
// nothing to do.
func TestViewerSeesNoActions(t *testing.T) {
	a := newAppliance(t)
	if r := a.Call(t, http.MethodPut, "/api/v1/nodes/"+node1+"/boot", `{"image":"orbit-2.0.0"}`, nil); r.Status != http.StatusOK {
		t.Fatalf("set boot: %d %s", r.Status, r.Body)
	}
	_, tab := browsertest.Start(t, 1280, 800)
	for _, role := range []string{"viewer", "operator"} {
		ctx := tab()
		browsertest.SignIn(t, ctx, a.URL, token(t, a, role))
		if who := browsertest.Eval[string](t, ctx, `document.getElementById("who").textContent`); who != "ui-"+role+" ("+role+")" {
			t.Errorf("%s: signed in as %q", role, who)
		}
		for _, page := range []string{"#/node/" + node1, "#/links"} {
			browsertest.Do(t, ctx, role+" "+page, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", page)),
				wait(`document.querySelector("table") !== null && document.querySelector("#boot-link, #view table td a") !== null`))
			if page == "#/node/"+node1 {
				browsertest.Do(t, ctx, "node page", wait(`document.querySelector("#commands h3") !== null`))
			}
			n := browsertest.Eval[int](t, ctx, `document.querySelectorAll("button.action, #boot-image, #load-image").length`)
			switch {
			case role == "viewer" && n != 0:
				t.Errorf("viewer: %d action controls on %s", n, page)
			case role == "operator" && n == 0:
				t.Errorf("operator: no action on %s (the check would pass for nothing)", page)
			}
		}
	}
}

// TestGrid400: a 20 by 20 testbed in many states fits a laptop's screen
// (1366 by 768) without scrolling, each cell showing
// its state, and the legend counts them. Its screenshot is the README's.
func TestGrid400(t *testing.T) {
	sock := (&qmptest.Server{Handle: func(c *qmptest.Conn, cmd string, _ json.RawMessage) {
		if cmd == "query-status" {
			c.Return(map[string]any{"running": true, "status": "running"})
			return
		}
		c.Return(nil)
	}}).Start(t)
	var b strings.Builder
	b.WriteString("images:\n  - { name: orbit-2.0.0 }\ntestbeds:\n  - domain: grid\n    nodes:\n")
	ip := func(x, y int) string {
		if x == 1 && y == 1 {
			return "127.0.0.1"
		}
		return fmt.Sprintf("127.0.%d.%d", y, x)
	}
	for y := 1; y <= 20; y++ {
		for x := 1; x <= 20; x++ {
			fmt.Fprintf(&b, "      - { hrn: node%d-%d.grid, hostname: node%d-%d, control_ip: %s, control_mac: \"00:03:1d:0e:%02x:%02x\", x: %d, y: %d, power: \"qemu:%s\" }\n",
				x, y, x, y, ip(x, y), y, x, x, y, sock)
		}
	}
	a := apptest.New(t, apptest.Options{Inventory: b.String(), Images: []string{"orbit-2.0.0"}, Extra: "http_boot: { prefix: /boot/ }\n"})
	for name, body := range map[string]string{"pxelinux.0": "pxelinux", "linux-orbit-2.0.0": "kernel"} {
		testenv.WriteFile(t, filepath.Join(a.TFTPRoot, name), body)
	}
	a.Start()
	ctx, _ := browsertest.Start(t, 1366, 768)
	browsertest.SignIn(t, ctx, a.URL, token(t, a, "viewer"))
	browsertest.Do(t, ctx, "the grid", wait(`document.querySelectorAll('.cell').length === 400`))

	// A rack at a time, as a grid boots: racks 1-4 are off, 5-8 were
	// reset, 9-12 are loading boot files, 13-16 their kernel; node 1-1
	// enrolls; the rest have no events yet.
	want := map[string]int{"unknown": 0, "off": 0, "power": 0, "bootfiles": 0, "kernel": 0, "enrolled": 1}
	for x := 1; x <= 20; x++ {
		for y := 1; y <= 20; y++ {
			if x == 1 && y == 1 {
				continue
			}
			hrn := fmt.Sprintf("node%d-%d.grid", x, y)
			state := "unknown"
			switch {
			case x <= 4 && y <= 16:
				state = "off"
				power(t, a, hrn, "offHard")
			case x <= 8 && y <= 16:
				state = "power"
				power(t, a, hrn, "reset")
			case x <= 12 && y <= 18:
				state = "bootfiles"
				fetchBoot(t, a, ip(x, y), "pxelinux.0")
			case x <= 16 && y <= 18:
				state = "kernel"
				fetchBoot(t, a, ip(x, y), "pxelinux.0")
				fetchBoot(t, a, ip(x, y), "linux-orbit-2.0.0")
			}
			want[state]++
		}
	}
	fetchBoot(t, a, "127.0.0.1", "pxelinux.0")
	startRC(t, a, "00:03:1d:0e:01:01")
	for state, n := range want {
		if err := chromedp.Do(ctx, wait(fmt.Sprintf(`document.querySelectorAll('.cell[data-state=%q]').length === %d`, state, n))); err != nil {
			got := browsertest.Eval[map[string]int](t, ctx, `(() => { const m = {}; for (const c of document.querySelectorAll(".cell")) m[c.dataset.state] = (m[c.dataset.state] || 0) + 1; return m; })()`)
			t.Fatalf("%s: want %d; the cells: %v", state, n, got)
		}
		browsertest.Do(t, ctx, "count of "+state, wait(fmt.Sprintf(`document.querySelectorAll('.cell[data-state=%q]').length === %d && document.querySelector('[data-count=%q]').textContent === " %d"`, state, n, state, n)))
	}
	if s := browsertest.Eval[string](t, ctx, `document.querySelector('.cell[data-hrn="node6-3.grid"]').dataset.state`); s != "power" {
		t.Errorf("node6-3: %s, want power", s)
	}
	// Everything on one screen: the last row and column are in view.
	fits := browsertest.Eval[string](t, ctx, `(() => {
		let r = 0, b = 0;
		for (const c of document.querySelectorAll(".cell")) { const q = c.getBoundingClientRect(); r = Math.max(r, q.right); b = Math.max(b, q.bottom); }
		return r <= innerWidth && b <= innerHeight ? "ok" : "cells reach " + r + "x" + b + " in " + innerWidth + "x" + innerHeight;
	})()`)
	if fits != "ok" {
		t.Error(fits)
	}
	browsertest.Screenshot(t, ctx, "grid-400.png")
}

// power sends a power action as an operator does (the admin token).
func power(t *testing.T, a *apptest.Appliance, hrn, action string) {
	t.Helper()
	if r := a.Call(t, http.MethodPost, "/api/v1/nodes/"+hrn+"/power", fmt.Sprintf(`{"action":%q}`, action), nil); r.Status != http.StatusOK {
		t.Fatalf("power %s %s: %d %s", action, hrn, r.Status, r.Body)
	}
}

// TestNoMarkupFromData: text from the API is shown as text: an image's
// description written as markup neither runs nor becomes an element.
func TestNoMarkupFromData(t *testing.T) {
	a := newAppliance(t)
	evil := `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`
	body, err := json.Marshal(apiv1.Image{Name: "baseline-6.1", Description: evil})
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Call(t, http.MethodPut, "/api/v1/images/baseline-6.1", string(body), nil); r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("put image: %d %s", r.Status, r.Body)
	}
	ctx, _ := browsertest.Start(t, 1280, 800)
	browsertest.SignIn(t, ctx, a.URL, token(t, a, "operator"))
	for _, page := range []string{"#/images", "#/node/" + node1} {
		browsertest.Do(t, ctx, page, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", page)),
			wait(fmt.Sprintf(`[...document.querySelectorAll("#view td, #view option")].some(e => e.textContent.includes(%q))`, evil)))
		if n := browsertest.Eval[int](t, ctx, `document.querySelectorAll("#view img, #view script").length`); n != 0 {
			t.Errorf("%s: the description became %d elements", page, n)
		}
	}
	if pwned := browsertest.Eval[bool](t, ctx, `window.pwned !== undefined`); pwned {
		t.Error("the description ran")
	}
}

// wait waits for a predicate on the page, for up to 30 s.
func wait(expr string) chromedp.Action[chromedp.Void] { return browsertest.Wait(expr, 0) }

// TestClassify: the page's state of a node after an event, given the
// state before, for each kind of event the services record.
func TestClassify(t *testing.T) {
	a := newAppliance(t)
	ctx, _ := browsertest.Start(t, 800, 600)
	browsertest.SignIn(t, ctx, a.URL, a.Token)
	tests := []struct {
		source, what, detail, prev, want string
	}{
		{"power", "on", "state=on", "off", "power"},
		{"power", "reset", "state=on", "enrolled", "power"},
		{"power", "offHard", "state=off", "enrolled", "off"},
		{"power", "offSoft", "failed: no answer", "enrolled", "failed"},
		{"power", "status", "", "kernel", "kernel"},
		{"dhcp", "DHCPDISCOVER", "arch=0", "off", "dhcp"},
		{"dhcp", "DHCPACK", "state=selecting ip=10.18.1.1 file=pxelinux.0 arch=0 loader=bios", "power", "dhcp"},
		{"dhcp", "DHCPACK", "state=selecting ip=10.18.1.1 file=pxelinux.0 arch=0 loader=bios", "enrolled", "dhcp"},
		{"dhcp", "DHCPACK", "state=selecting ip=10.18.1.1 file=pxelinux.0 loader=bios", "kernel", "kernel"},
		{"dhcp", "DHCPACK", "state=renewing ip=10.18.1.1", "enrolled", "enrolled"},
		{"dhcp", "DHCPACK", "state=selecting ip=10.18.1.1", "unknown", "dhcp"},
		{"tftp", "pxelinux.0", "42430 bytes", "dhcp", "bootfiles"},
		{"tftp", "pxelinux.cfg/0A120101", "208 bytes", "bootfiles", "bootfiles"},
		{"tftp", "linux-orbit-pxe-6.1.0-57-amd64", "8247232 bytes", "bootfiles", "kernel"},
		{"http", "efi/vmlinuz", "", "bootfiles", "kernel"},
		{"tftp", "initramfs-orbit-pxe-2.0.0.gz", "5755732 bytes", "kernel", "kernel"},
		{"tftp", "linux", "failed after 1408 bytes: timeout", "bootfiles", "failed"},
		{"tftp", "no-boot-link.efi", "", "dhcp", "local"},
		{"http", "IPXE", "", "dhcp", "bootfiles"},
		{"rc", "enrolled", "orbit-2.0.0 firmware=bios", "kernel", "enrolled"},
		{"rc", "image multicast", "", "enrolled", "imaging"},
		{"rc", "image load done", "baseline /dev/sda", "imaging", "enrolled"},
		{"rc", "image load failed", "baseline /dev/sda: disk full", "imaging", "failed"},
		{"rc", "image save done", "", "enrolled", "enrolled"},
		{"rc", "reboot done", "", "enrolled", "power"},
		{"rc", "poweroff done", "", "enrolled", "off"},
		{"am", "anything", "", "enrolled", "enrolled"},
	}
	for _, tc := range tests {
		e, err := json.Marshal(apiv1.Event{Source: tc.source, What: tc.what, Detail: tc.detail})
		if err != nil {
			t.Fatal(err)
		}
		if got := browsertest.Eval[string](t, ctx, fmt.Sprintf("classify(%s, %q)", e, tc.prev)); got != tc.want {
			t.Errorf("%s %s %q after %s: %s, want %s", tc.source, tc.what, tc.detail, tc.prev, got, tc.want)
		}
	}
}

// TestImagingProgress: a node whose LOAD_IMAGE runs shows imaging with
// its percentage, on its cell and on the Loads page.
func TestImagingProgress(t *testing.T) {
	a := newAppliance(t)
	ctx, _ := browsertest.Start(t, 800, 600)
	browsertest.SignIn(t, ctx, a.URL, a.Token)
	// The command as GET /api/v1/commands answers it; the page's own
	// polling is stopped so that it does not replace it.
	set := `clearTimeout(app.poll); app.poll = 0;
		app.commands.set("node1-1.sb8", {id: 9, hrn: "node1-1.sb8", type: "LOAD_IMAGE", image: "baseline", disk: "/dev/sda", state: "running", progress: {done: 50, total: 200}});`
	got := browsertest.Eval[string](t, ctx, `(() => { `+set+` refreshCell("node1-1.sb8");
		const c = document.querySelector('.cell[data-hrn="node1-1.sb8"]');
		return c.dataset.state + "|" + c.querySelector(".mark").textContent + "|" + c.getAttribute("aria-label"); })()`)
	if got != "imaging|25%|node1-1.sb8: imaging 25%" {
		t.Errorf("the cell: %q", got)
	}
	browsertest.Do(t, ctx, "the loads page", chromedp.Evaluate[chromedp.Void](`location.hash = "#/loads"`),
		wait(`document.querySelector("#view progress") !== null`))
	if v := browsertest.Eval[string](t, ctx, `document.querySelector("#view progress").getAttribute("value") + "|" + document.querySelector("#view tbody").textContent`); v != "25|node1-1.sb8LOAD_IMAGEbaseline/dev/sdarunning 25% of 200 B" {
		t.Errorf("the loads page: %q", v)
	}
}

// TestPowerFromThePage: an operator's "Power off" on the node page
// reaches the node's power driver (a stand-in QEMU over QMP), the page
// shows the state it answered, and the node's cell turns off on the grid.
func TestPowerFromThePage(t *testing.T) {
	var mu sync.Mutex
	running := true
	sock := (&qmptest.Server{Handle: func(c *qmptest.Conn, cmd string, _ json.RawMessage) {
		mu.Lock()
		defer mu.Unlock()
		switch cmd {
		case "stop":
			running = false
		case "cont":
			running = true
		case "query-status":
			status := "paused"
			if running {
				status = "running"
			}
			c.Return(map[string]any{"running": running, "status": status})
			return
		}
		c.Return(nil)
	}}).Start(t)
	a := apptest.New(t, apptest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, hostname: node1-1, control_ip: 127.0.0.1, control_mac: "00:03:1d:0c:01:01", x: 1, y: 1, power: "qemu:` + sock + `" }
      - { hrn: node2-1.sb8, hostname: node2-1, control_ip: 127.0.0.12, control_mac: "00:03:1d:0c:01:02", x: 2, y: 1 }
`})
	a.Start()
	ctx, _ := browsertest.Start(t, 1280, 800)
	browsertest.SignIn(t, ctx, a.URL, token(t, a, "operator"))
	browsertest.Do(t, ctx, "power off", chromedp.Evaluate[chromedp.Void](`location.hash = "#/node/node1-1.sb8"`),
		wait(`document.querySelector('[data-power="offHard"]') !== null`),
		chromedp.Click(chromedp.CSS(`[data-power="offHard"]`)),
		wait(`document.getElementById("power-state").textContent === "Power state: off"`))
	mu.Lock()
	off := !running
	mu.Unlock()
	if !off {
		t.Error("the driver was not told to stop the machine")
	}
	// A node without a power driver offers no power buttons.
	browsertest.Do(t, ctx, "node 2", chromedp.Evaluate[chromedp.Void](`location.hash = "#/node/node2-1.sb8"`),
		wait(`document.querySelector("#power-state") !== null && document.querySelector("#timeline table") !== null`))
	if n := browsertest.Eval[int](t, ctx, `document.querySelectorAll("[data-power]").length`); n != 0 {
		t.Errorf("%d power buttons for a node without a driver", n)
	}
	browsertest.Do(t, ctx, "the grid", chromedp.Evaluate[chromedp.Void](`location.hash = "#/"`), wait(browsertest.CellState("node1-1.sb8", "off")))
}

// TestClearTextWarning: the sign-in form says a token pasted there would
// cross the network in clear when the page came over plain HTTP from
// another host, and says nothing when it came from this one. The other
// host is a name Chromium is told to map to loopback (no DNS lookup, no
// packet elsewhere): not loopback by its name, so not a secure context.
func TestClearTextWarning(t *testing.T) {
	a := newAppliance(t)
	_, port, err := net.SplitHostPort(a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := browsertest.Start(t, 1024, 700, chromedp.Flag("host-resolver-rules", "MAP netboot.test 127.0.0.1"))
	for _, tc := range []struct {
		base string
		warn bool
	}{
		{"http://netboot.test:" + port, true},
		{a.URL, false},
	} {
		browsertest.Do(t, ctx, "open "+tc.base, chromedp.Navigate(tc.base+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
		if shown := browsertest.Eval[bool](t, ctx, `!document.getElementById("cleartext").hidden`); shown != tc.warn {
			t.Errorf("%s: clear-text warning shown %v, want %v", tc.base, shown, tc.warn)
		}
		// Not signed in: no page links (the attribute alone once left
		// them shown).
		if visible := browsertest.Eval[bool](t, ctx, `document.getElementById("nav").checkVisibility()`); visible {
			t.Errorf("%s: the page links show before sign-in", tc.base)
		}
		if tc.warn {
			browsertest.Screenshot(t, ctx, "signin-cleartext.png")
		}
	}
}
