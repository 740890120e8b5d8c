package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/orbit-lab/netboot/initramfs/nodebin"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/fatimg"
	"github.com/orbit-lab/netboot/internal/modroot"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestImageBuild builds the orbit-pxe image from the kernel cache (make
// kernel) with nbctl, with its UEFI HTTP Boot RAM disk, registers it, and
// points a node at it.
func TestImageBuild(t *testing.T) {
	root, kernel := testenv.SourceTree(t), testenv.Kernel(t)
	a := apptest.New(t, apptest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: a.sb8, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01" }
`})
	a.Start()
	// A cold build cache compiles the node's binaries: minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Stand-ins for the signed loaders: the layout is tested here, the
	// signatures by qemu-tests' TestUEFIHTTPBoot.
	shim, grubEFI := filepath.Join(t.TempDir(), "shim.efi"), filepath.Join(t.TempDir(), "grub.efi")
	testenv.WriteFile(t, shim, []byte("MZ shim"))
	testenv.WriteFile(t, grubEFI, []byte("MZ grub"))
	out, err := a.NbctlContext(ctx, "image", "build", "--name", "orbit-9.9.9", "--kernel-dir", kernel,
		"--modules", "e1000,virtio_net,virtio_pci", "--out", a.TFTPRoot, "--module-root", root, "--register",
		"--efi-img", "--shim", shim, "--grub-efi", grubEFI)
	if err != nil {
		t.Fatalf("image build: %v\n%s", err, out)
	}
	for _, want := range []string{"pxelinux.cfg/orbit-9.9.9", "grub/orbit-9.9.9.cfg", "ipxe/orbit-9.9.9.ipxe", "initramfs-orbit-pxe-9.9.9.gz", "linux-orbit-pxe-", "efi/orbit-9.9.9.img", "virtio_net", "registered orbit-9.9.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(a.CfgDir, "orbit-9.9.9"))
	if err != nil || !strings.Contains(string(cfg), "initrd=initramfs-orbit-pxe-9.9.9.gz") || !strings.Contains(string(cfg), "IPAPPEND 3") {
		t.Errorf("pxelinux config: %v\n%s", err, cfg)
	}
	if out, _ := a.Nbctl("images"); !strings.Contains(out, "orbit-9.9.9") {
		t.Errorf("image not registered:\n%s", out)
	}
	if out, err := a.Nbctl("boot", "set", "--image", "orbit-9.9.9", "a.sb8"); err != nil {
		t.Errorf("boot set to the built image: %v\n%s", err, out)
	}
	// The link reaches GRUB too: the node's GRUB file is the image's GRUB
	// config, which names the kernel and initramfs pxelinux's does.
	grub, err := os.ReadFile(filepath.Join(a.TFTPRoot, "grub", "grub.cfg-0A120101"))
	if err != nil || !strings.Contains(string(grub), "initrd /initramfs-orbit-pxe-9.9.9.gz\n") {
		t.Errorf("GRUB link of a.sb8: %v\n%s", err, grub)
	}
	// The RAM disk's GRUB config boots what the network GRUB's does, with
	// the same arguments less the network ones GRUB has only when it
	// netbooted; the appliance serves the disk as a UEFI RAM disk.
	img := filepath.Join(a.TFTPRoot, "efi", "orbit-9.9.9.img")
	ramCfg, err := fatimg.ReadFile(img, "EFI/debian/grub.cfg")
	linux, _, _ := strings.Cut(string(grub), " BOOTIF=")
	if err != nil || !strings.HasPrefix(string(ramCfg), linux+"\n  initrd /initramfs-orbit-pxe-9.9.9.gz\n") {
		t.Errorf("RAM disk's GRUB config: %v\n%s\nwant it to start as the network one:\n%s", err, ramCfg, grub)
	}
	if b, err := fatimg.ReadFile(img, "EFI/BOOT/BOOTX64.EFI"); err != nil || string(b) != "MZ shim" {
		t.Errorf("RAM disk's shim: %q, %v", b, err)
	}
	resp, err := http.Head(a.URL + "/boot/efi/orbit-9.9.9.img")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/vnd.efi-img" {
		t.Errorf("HEAD the RAM disk: %s, Content-Type %q; want 200, application/vnd.efi-img", resp.Status, ct)
	}
}

// buildEmbeddedNbctl builds nbctl as make build does (go generate in
// initramfs/nodebin, then the nodebin tag) into dir, without touching the
// source tree: the programs go to dir, and an overlay shows them to the
// embed patterns.
func buildEmbeddedNbctl(ctx context.Context, t *testing.T, root, dir string) string {
	t.Helper()
	progs := filepath.Join(dir, "progs")
	gen := exec.CommandContext(ctx, "go", "run", "./initramfs/nodebin/gen", progs)
	gen.Dir = root
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("nodebin gen: %v\n%s", err, out)
	}
	replace := map[string]string{}
	for _, name := range nodebin.Names() {
		replace[filepath.Join(root, "initramfs", "nodebin", nodebin.Dir, name)] = filepath.Join(progs, name)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "overlay.json")
	testenv.WriteFile(t, ov, overlay)
	bin := filepath.Join(dir, "nbctl")
	build := exec.CommandContext(ctx, "go", "build", "-tags", nodebin.Tag, "-trimpath", "-overlay", ov, "-o", bin, "./cmd/nbctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", nodebin.Tag, err, out)
	}
	return bin
}

// TestImageBuildWithoutSources runs nbctl image build as an operator does
// on the appliance: the nbctl make build makes, in a directory outside any
// source tree, with no go on PATH. Two builds give the same bytes, which
// are also what a build from the source tree gives; --module-root still
// compiles, and an nbctl without embedded programs says what it needs.
func TestImageBuildWithoutSources(t *testing.T) {
	root, kernel := testenv.SourceTree(t), testenv.Kernel(t)
	// A cold build cache compiles the programs: minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	embedded := buildEmbeddedNbctl(ctx, t, root, tmp)
	plain := filepath.Join(apptest.Binaries(t), "nbctl")

	outside := filepath.Join(tmp, "work")
	emptyBin := filepath.Join(tmp, "empty-bin")
	for _, d := range []string{outside, emptyBin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := modroot.From(outside); !errors.Is(err, modroot.ErrNotFound) {
		t.Fatalf("the temp directory %s is inside the source tree (%v): set TMPDIR elsewhere", outside, err)
	}
	noGo := []string{"PATH=" + emptyBin, "HOME=" + outside}
	key := filepath.Join(tmp, "key.pub")
	testenv.WriteFile(t, key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk8IGnZ1B9zkSKSjOwp4Hw4sTm8Y7cpbAnXV2b0Yd+r test\n")

	tests := []struct {
		name       string
		nbctl      string
		dir        string
		env        []string // nil: this test's environment
		args       []string
		wantErr    string   // in stderr, with a failing exit
		wantNote   string   // in stderr, with a good exit
		sameAs     string   // the case whose initramfs this one's must equal
		has, lacks []string // files of the initramfs
	}{
		{name: "embedded", nbctl: embedded, dir: outside, env: noGo, has: []string{"init", "bin/orbit-rc"}, lacks: []string{"bin/sshd", "bin/gosh"}},
		{name: "embedded again", nbctl: embedded, dir: outside, env: noGo, sameAs: "embedded"},
		{name: "embedded with the debug shell", nbctl: embedded, dir: outside, env: noGo, args: []string{"--ssh-key", key},
			has: []string{"init", "bin/orbit-rc", "bin/sshd", "bin/gosh", "etc/orbit/authorized_keys"}},
		{name: "module root wins", nbctl: embedded, dir: outside, env: noGo, args: []string{"--module-root", root},
			wantErr: `exec: "go": executable file not found`},
		{name: "not embedded, outside the tree", nbctl: plain, dir: outside, env: noGo,
			wantErr: nodebin.ErrNotEmbedded.Error() + ", and " + modroot.ErrNotFound.Error() + ": give --module-root"},
		{name: "not embedded, in the tree", nbctl: plain, dir: root,
			wantNote: "compiling orbit-init and orbit-rc in " + root + " with go", sameAs: "embedded"},
	}
	initrds := map[string][]byte{}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(tmp, "out", strings.Repeat("x", i+1))
			args := append([]string{"image", "build", "--name", "orbit-2.0.0", "--kernel-dir", kernel, "--out", out}, tt.args...)
			cmd := exec.CommandContext(ctx, tt.nbctl, args...)
			cmd.Dir, cmd.Env = tt.dir, tt.env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("want a failure saying %q, got %v\nstdout:\n%s\nstderr:\n%s", tt.wantErr, err, &stdout, &stderr)
				}
				return
			}
			if err != nil {
				t.Fatalf("nbctl image build: %v\n%s%s", err, &stdout, &stderr)
			}
			if tt.wantNote != "" && !strings.Contains(stderr.String(), tt.wantNote) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantNote, &stderr)
			}
			if tt.wantNote == "" && stderr.Len() > 0 {
				t.Errorf("stderr:\n%s", &stderr)
			}
			path := filepath.Join(out, "initramfs-orbit-pxe-2.0.0.gz")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if want := path + " "; !strings.Contains(stdout.String(), want) || !strings.Contains(stdout.String(), "sha256:"+hex.EncodeToString(sum[:])) {
				t.Errorf("output does not list %s with its sha256 %x:\n%s", path, sum, &stdout)
			}
			initrds[tt.name] = data
			if other, ok := initrds[tt.sameAs]; tt.sameAs != "" && (!ok || !bytes.Equal(data, other)) {
				t.Errorf("initramfs differs from that of %q (%d and %d bytes)", tt.sameAs, len(data), len(other))
			}
			files := cpioNames(t, data)
			for _, f := range tt.has {
				if !files[f] {
					t.Errorf("initramfs lacks %s", f)
				}
			}
			for _, f := range tt.lacks {
				if files[f] {
					t.Errorf("initramfs has %s", f)
				}
			}
		})
	}
}

// cpioNames lists the entries of a gzipped cpio archive.
func cpioNames(t *testing.T, gz []byte) map[string]bool {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	names := map[string]bool{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}
