package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/initramfs"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/imagename"
)

// TestLoaderLinks runs netbootd and follows one node's boot link through
// the loaders that have no pxelinux file, as they would fetch: the iPXE
// script (curl, as iPXE's HTTP), and GRUB's grub/grub.cfg (ours, written at
// start) and grub/grub.cfg-<HEX> (over HTTP, the same bytes GRUB gets over
// TFTP). Without a link: iPXE exits and there is no GRUB file; with one:
// the image's entries, rendered from one BootEntry; cleared: back.
func TestLoaderLinks(t *testing.T) {
	a := loopbackNode(t)
	entry := initramfs.BootEntry{Kernel: "linux-orbit-pxe-6.1.0-57-amd64", Initrd: "initramfs-orbit-pxe-2.0.0.gz", Append: initramfs.DefaultAppend}
	kernel := []byte("not really a kernel")
	for name, data := range map[string][]byte{
		imagename.GrubConfig("orbit-2.0.0"): []byte(entry.GRUB()),
		imagename.IPXEScript("orbit-2.0.0"): []byte(entry.IPXE()),
		entry.Kernel:                        kernel,
	} {
		p := filepath.Join(a.TFTPRoot, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.Start()
	curl := func(url string) (status, body string) {
		t.Helper()
		out, err := exec.Command("curl", "-sS", "-w", "\n%{http_code}", url).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", url, err)
		}
		s := string(out)
		i := strings.LastIndexByte(s, '\n')
		return s[i+1:], s[:i]
	}
	const script = "/ipxe/7F000001"
	grubLink := "/boot/grub/grub.cfg-7F000001"

	if got, err := os.ReadFile(filepath.Join(a.TFTPRoot, "grub", "grub.cfg")); err != nil || string(got) != pxelink.GrubRootConfig {
		t.Errorf("grub/grub.cfg at start: %v\n%s", err, got)
	}
	if st, body := curl(a.URL + script); st != "200" || body != "#!ipxe\nexit\n" {
		t.Errorf("no link: iPXE script %s %q, want exit", st, body)
	}
	if st, _ := curl(a.URL + grubLink); st != "404" {
		t.Errorf("no link: GRUB file %s, want 404", st)
	}
	if st, body := curl(a.URL + "/ipxe/7f000001"); st != "404" || body == "" {
		t.Errorf("lower-case hex: %s %q, want 404 with a message", st, body)
	}

	if r := apptest.Call(t, http.MethodGet, a.URL+"/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8", "", nil); r.Status != 200 {
		t.Fatalf("setBootImageNS: %d %s", r.Status, r.Body)
	}
	st, body := curl(a.URL + script)
	base := a.URL + "/boot/"
	want := "#!ipxe\n# netbootd: node1-1.sb8 boots orbit-2.0.0\nset base " + base + "\nset appliance 127.0.0.1\n" + entry.IPXE()
	if st != "200" || body != want {
		t.Errorf("linked: iPXE script %s\n%s\nwant\n%s", st, body, want)
	}
	// What the script fetches is there, under the base it sets.
	if st, got := curl(base + entry.Kernel); st != "200" || got != string(kernel) {
		t.Errorf("the script's kernel %s: %s", base+entry.Kernel, st)
	}
	if st, got := curl(a.URL + grubLink); st != "200" || got != entry.GRUB() {
		t.Errorf("linked: GRUB file %s %q, want the image's GRUB config", st, got)
	}

	if r := apptest.Call(t, http.MethodGet, a.URL+"/pxe/clearBootImageNS?domain=sb8&ns=node1-1.sb8", "", nil); r.Status != 200 {
		t.Fatalf("clearBootImageNS: %d %s", r.Status, r.Body)
	}
	if st, body := curl(a.URL + script); st != "200" || body != "#!ipxe\nexit\n" {
		t.Errorf("cleared: iPXE script %s %q, want exit", st, body)
	}
	if st, _ := curl(a.URL + grubLink); st != "404" {
		t.Errorf("cleared: GRUB file %s, want 404", st)
	}
	// Both scripts are on the node's timeline: the linked one, and the exit
	// without a link (how nbctl load sees an imaged node go past netboot).
	wantEvs := []string{"http IPXE: image=orbit-2.0.0", "http IPXE: no link script=exit"}
	var evs []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		evs = httpEvents(t, a, "node1-1.sb8")
		if slices.Contains(evs, wantEvs[1]) || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range wantEvs {
		if !slices.Contains(evs, w) {
			t.Errorf("no %q on the timeline:\n%s", w, strings.Join(evs, "\n"))
		}
	}
}
