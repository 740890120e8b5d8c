package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/bootpath/boottree"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// loopbackNode is a netbootd (not started) with HTTP boot files under
// /boot/ and one node, node1-1.sb8, whose control IP is 127.0.0.1: what
// curl fetches lands on its timeline.
func loopbackNode(t *testing.T) *apptest.Appliance {
	t.Helper()
	testenv.Programs(t, "Debian: curl; make test installs it", "curl")
	return apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Extra: "http_boot: { prefix: /boot/ }\n", Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, control_ip: 127.0.0.1, control_mac: "00:03:1d:0c:01:01", pxe_image: orbit-2.0.0 }
`})
}

// TestHTTPBootFiles runs netbootd and fetches boot files from its AM
// listener with curl, as iPXE and UEFI HTTP Boot would: the node's link
// (a hard link of the image's symlink) through a doubled slash, a RAM-disk
// image whole, its headers, a range of it; escapes refused. The node's
// control IP is 127.0.0.1, so the fetches land on its timeline.
func TestHTTPBootFiles(t *testing.T) {
	a := loopbackNode(t)
	img := boottree.RandomBytes(14, 30<<20) // the size of a UEFI RAM-disk image
	shim := []byte("MZ not really shim")
	for name, data := range map[string][]byte{"orbit-2.0.0.img": img, "shimx64.efi": shim} {
		if err := os.WriteFile(filepath.Join(a.TFTPRoot, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.Start()
	if r := apptest.Call(t, http.MethodGet, a.URL+"/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8", "", nil); r.Status != 200 {
		t.Fatalf("setBootImageNS: %d %s", r.Status, r.Body)
	}

	dir := t.TempDir()
	// curl runs one request and says what it got: status, type, bytes.
	curl := func(out string, args ...string) string {
		t.Helper()
		args = append([]string{"-sS", "-o", filepath.Join(dir, out), "-w", "%{http_code} %{content_type} %{size_download}"}, args...)
		b, err := exec.Command("curl", args...).Output()
		if err != nil {
			t.Fatalf("curl %q: %v: %s", args, err, b)
		}
		return string(b)
	}
	read := func(out string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, out))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The link the EC set, through shim's doubled slash.
	cfg, err := os.ReadFile(filepath.Join(a.CfgDir, "orbit-2.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if got := curl("cfg", a.URL+"/boot//pxelinux.cfg/7F000001"); got != fmt.Sprintf("200 application/octet-stream %d", len(cfg)) || !bytes.Equal(read("cfg"), cfg) {
		t.Errorf("link: %s %q", got, read("cfg"))
	}
	// The RAM-disk image whole, byte for byte.
	if got, want := curl("img", a.URL+"/boot/orbit-2.0.0.img"), fmt.Sprintf("200 application/vnd.efi-img %d", len(img)); got != want {
		t.Errorf("image: %s, want %s", got, want)
	}
	if !bytes.Equal(read("img"), img) {
		t.Error("image: the bytes differ from the file")
	}
	if got := curl("shim", a.URL+"/boot/shimx64.efi"); got != fmt.Sprintf("200 application/efi %d", len(shim)) || !bytes.Equal(read("shim"), shim) {
		t.Errorf("shim: %s", got)
	}
	// HEAD, as UEFI HTTP Boot asks before its GET.
	curl("head", "-I", a.URL+"/boot/orbit-2.0.0.img")
	head := strings.ToLower(string(read("head")))
	for _, h := range []string{"http/1.1 200 ok", fmt.Sprintf("content-length: %d", len(img)), "content-type: application/vnd.efi-img", "accept-ranges: bytes", "last-modified: "} {
		if !strings.Contains(head, h) {
			t.Errorf("HEAD: no %q in %q", h, head)
		}
	}
	// A range.
	if got := curl("range", "-r", "1000-1999", a.URL+"/boot/orbit-2.0.0.img"); got != "206 application/vnd.efi-img 1000" || !bytes.Equal(read("range"), img[1000:2000]) {
		t.Errorf("range: %s", got)
	}
	// Refusals: escapes (curl sends the ".." as written), directories,
	// missing files, writes.
	for _, tc := range []struct{ args, want string }{
		{"--path-as-is " + a.URL + "/boot/../state/netboot.db", "403 "},
		{"--path-as-is " + a.URL + "/boot/pxelinux.cfg/../pxelinux.cfg/orbit-2.0.0", "403 "},
		{a.URL + "/boot/pxelinux.cfg/", "403 "},
		{a.URL + "/boot/", "403 "},
		{a.URL + "/boot/revocations_sku.efi", "404 "},
		{"-X PUT --data-binary x " + a.URL + "/boot/shimx64.efi", "405 "},
	} {
		if got := curl("refused", strings.Fields(tc.args)...); !strings.HasPrefix(got, tc.want) || len(read("refused")) == 0 {
			t.Errorf("curl %s: %s %q, want %s with a message", tc.args, got, read("refused"), tc.want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(a.TFTPRoot, "shimx64.efi")); err != nil || !bytes.Equal(got, shim) {
		t.Errorf("the PUT changed shimx64.efi: %v", err)
	}

	// The timeline: every GET of the node in order, the partial one as
	// such; no HEAD, no probe for a missing file. The events are written
	// once each answer is out, so wait for the last.
	want := []string{
		fmt.Sprintf("http pxelinux.cfg/7F000001: %d bytes", len(cfg)),
		fmt.Sprintf("http orbit-2.0.0.img: %d bytes", len(img)),
		fmt.Sprintf("http shimx64.efi: %d bytes", len(shim)),
		fmt.Sprintf("http orbit-2.0.0.img: partial: bytes=1000-1999, 1000 of %d bytes", len(img)),
		"http /boot/../state/netboot.db: failed after 0 bytes",
		"http /boot/pxelinux.cfg/../pxelinux.cfg/orbit-2.0.0: failed after 0 bytes",
		"http pxelinux.cfg: failed after 0 bytes",
		"http /boot/: failed after 0 bytes",
	}
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got = httpEvents(t, a, "node1-1.sb8")
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("timeline has %d http events, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d: %q, want it to start %q", i, got[i], want[i])
		}
	}
	if !apptest.HasLine(a.Log.String(), "http boot file", "file=orbit-2.0.0.img", "status=206", "outcome=partial", `range="bytes=1000-1999"`) {
		t.Errorf("no log line for the range request:\n%s", a.Log)
	}
}

// httpEvents is the node's timeline's http events, as "source what:
// detail".
func httpEvents(t *testing.T, a *apptest.Appliance, node string) []string {
	t.Helper()
	evs, err := amclient.New(a.URL).WithToken(a.Token).Events(context.Background(), node, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Source == "http" {
			out = append(out, e.Source+" "+e.What+": "+e.Detail)
		}
	}
	return out
}
