package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

func TestInventoryImportExport(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}})
	a.Start()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`images:
  - { name: orbit-2.0.0, description: ORBIT RAM image for imaging }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 10.18.1.2,
          control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, pxe_image: orbit-2.0.0, disk: /dev/sda }
`), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8.orbit-lab.org, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:01" }
      - { hrn: node1-3.sb8.orbit-lab.org, control_ip: 10.18.1.3, control_mac: "00:03:1d:0c:01:02" }
      - { hrn: node1-3.sb8.orbit-lab.org, control_ip: 10.18.1.4, control_mac: "00:03:1d:0c:01:04" }
      - { hrn: node1-5.sb8.orbit-lab.org, control_ip: 10.18.1, control_mac: "00:03:1d:0c:01:05" }
      - { hrn: node1-6.sb8.orbit-lab.org, control_ip: 10.18.1.6, control_mac: "00:03:1d:0c:01" }
`), 0o644)

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
	os.WriteFile(again, []byte(exported), 0o644)
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

// TestImageBuild builds the orbit-pxe image from the kernel cache (make
// kernel) with nbctl, registers it, and points a node at it.
func TestImageBuild(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	kernels, _ := filepath.Glob(filepath.Join(root, ".cache/kernel/linux-image-*-amd64"))
	if len(kernels) == 0 {
		testenv.Missing(t, "no kernel in .cache/kernel: run make kernel (make test does)")
	}
	a := apptest.New(t, apptest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: a.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01" }
`})
	a.Start()
	// A cold build cache compiles the node's binaries: minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := a.NbctlContext(ctx, "image", "build", "--name", "orbit-9.9.9", "--kernel-dir", kernels[0],
		"--modules", "e1000,virtio_net,virtio_pci", "--out", a.TFTPRoot, "--module-root", root, "--register")
	if err != nil {
		t.Fatalf("image build: %v\n%s", err, out)
	}
	for _, want := range []string{"pxelinux.cfg/orbit-9.9.9", "initramfs-orbit-pxe-9.9.9.gz", "linux-orbit-pxe-", "virtio_net", "registered orbit-9.9.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(a.CfgDir, "orbit-9.9.9"))
	if err != nil || !strings.Contains(string(cfg), "initrd=initramfs-orbit-pxe-9.9.9.gz") || !strings.Contains(string(cfg), "IPAPPEND 2") {
		t.Errorf("pxelinux config: %v\n%s", err, cfg)
	}
	if out, _ := a.Nbctl("images"); !strings.Contains(out, "orbit-9.9.9") {
		t.Errorf("image not registered:\n%s", out)
	}
	if out, err := a.Nbctl("boot", "set", "--image", "orbit-9.9.9", "a.sb8"); err != nil {
		t.Errorf("boot set to the built image: %v\n%s", err, out)
	}
}
