package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/fatimg"
	"github.com/orbit-lab/netboot/internal/testenv"
)

func TestBootEntry(t *testing.T) {
	c := BootEntry{
		Kernel: "linux-orbit-pxe-6.1.0-56-amd64",
		Initrd: "initramfs-orbit-pxe-2.0.0.gz",
		Append: append(append([]string{}, DefaultAppend...), "orbit.am=http://10.18.0.1:5054"),
	}
	want := `DEFAULT orbit
PROMPT 0
TIMEOUT 1
LABEL orbit
  KERNEL linux-orbit-pxe-6.1.0-56-amd64
  APPEND initrd=initramfs-orbit-pxe-2.0.0.gz console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054
  IPAPPEND 3
`
	if diff := cmp.Diff(want, c.Text()); diff != "" {
		t.Errorf("pxelinux (-want +got):\n%s", diff)
	}
	wantGRUB := `set timeout=0
set default=orbit
menuentry orbit --id orbit {
  linux /linux-orbit-pxe-6.1.0-56-amd64 console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054 BOOTIF=01-${net_default_mac} ip=${net_default_ip}:${net_default_server}:0.0.0.0:0.0.0.0
  initrd /initramfs-orbit-pxe-2.0.0.gz
}
`
	if diff := cmp.Diff(wantGRUB, c.GRUB()); diff != "" {
		t.Errorf("GRUB (-want +got):\n%s", diff)
	}
	wantRAMDisk := `set timeout=0
set default=orbit
menuentry orbit --id orbit {
  linux /linux-orbit-pxe-6.1.0-56-amd64 console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054
  initrd /initramfs-orbit-pxe-2.0.0.gz
}
`
	if diff := cmp.Diff(wantRAMDisk, c.RAMDiskGRUB()); diff != "" {
		t.Errorf("RAM-disk GRUB (-want +got):\n%s", diff)
	}
	wantIPXE := `kernel ${base}linux-orbit-pxe-6.1.0-56-amd64 initrd=initramfs-orbit-pxe-2.0.0.gz console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054 BOOTIF=01-${netX/mac:hexhyp} ip=${netX/ip}:${appliance}:0.0.0.0:${netX/netmask}
initrd ${base}initramfs-orbit-pxe-2.0.0.gz
boot
`
	if diff := cmp.Diff(wantIPXE, c.IPXE()); diff != "" {
		t.Errorf("iPXE (-want +got):\n%s", diff)
	}
}

func TestCheckAppend(t *testing.T) {
	for _, ok := range [][]string{nil, {"orbit.am=http://h:5054"}, {"quiet", "orbit.ctl=eth0"}} {
		if err := checkAppend(ok); err != nil {
			t.Errorf("checkAppend(%q) = %v", ok, err)
		}
	}
	for _, bad := range [][]string{{""}, {"a b"}, {"x\nDEFAULT evil"}, {"initrd=other.gz"}} {
		if err := checkAppend(bad); err == nil {
			t.Errorf("checkAppend(%q): no error", bad)
		}
	}
}

func TestNameAndVersion(t *testing.T) {
	for _, tt := range []struct{ name, version string }{
		{"orbit-2.0.0", "2.0.0"},
		{"orbit-pxe-3", "pxe-3"},
		{"lab-test", "lab-test"},
		{"orbit", "orbit"},
		{"orbit-", "orbit-"},
	} {
		if err := CheckName(tt.name); err != nil {
			t.Errorf("CheckName(%q) = %v", tt.name, err)
		}
		if got := Version(tt.name); got != tt.version {
			t.Errorf("Version(%q) = %q, want %q", tt.name, got, tt.version)
		}
	}
	for _, bad := range []string{"", "default", "0A120102", "0A12", "01-52-54-00-99-00-32", ".hidden", "-x", "a/b", "../x", "a b", strings.Repeat("a", 65)} {
		if err := CheckName(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q) = %v, want ErrBadName", bad, err)
		}
	}
}

// readCPIO returns the headers and bodies of a gzipped newc archive (a
// symlink's target is in its header's Linkname), and checks that the archive
// is newc (070701) and that no header has a checksum.
func readCPIO(t *testing.T, gz []byte) ([]*cpio.Header, map[string][]byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	must(t, err)
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, mtime %v", zr.Name, zr.ModTime)
	}
	raw, err := io.ReadAll(zr)
	must(t, err)
	if !bytes.HasPrefix(raw, []byte("070701")) {
		t.Fatalf("archive starts with %q, want newc 070701", raw[:6])
	}
	r := cpio.NewReader(bytes.NewReader(raw))
	var hdrs []*cpio.Header
	bodies := map[string][]byte{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		b, err := io.ReadAll(r)
		must(t, err)
		hdrs = append(hdrs, h)
		bodies[h.Name] = b
		if h.Checksum != 0 {
			t.Errorf("%s: checksum %#x set", h.Name, h.Checksum)
		}
	}
	return hdrs, bodies
}

func TestArchiveDeterministic(t *testing.T) {
	build := func(order []int) []byte {
		a := NewArchive()
		adds := []func() error{
			func() error { return a.AddFile("/bin/orbit-rc", 0o755, []byte("rc")) },
			func() error { return a.AddFile("init", 0o755, []byte("init")) },
			func() error { return a.AddSymlink("/sbin/init", "../init") },
			func() error { return a.AddDir("/tmp", 0o1777) },
			func() error { return a.AddFile("/lib/modules/v/kernel/x.ko", 0o644, []byte("ko")) },
		}
		for _, i := range order {
			must(t, adds[i]())
		}
		var b bytes.Buffer
		_, err := a.WriteGzip(&b, ModTime)
		must(t, err)
		return b.Bytes()
	}
	one, two := build([]int{0, 1, 2, 3, 4}), build([]int{4, 3, 2, 1, 0})
	if !bytes.Equal(one, two) {
		t.Fatal("same entries added in another order give other bytes")
	}
	hdrs, _ := readCPIO(t, one)
	var got []string
	for _, h := range hdrs {
		got = append(got, h.Name+" "+h.Mode.String())
		if h.Uid != 0 || h.Guid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Guid, h.ModTime)
		}
	}
	want := []string{
		"bin 040755", "bin/orbit-rc 0100755", "init 0100755", "lib 040755", "lib/modules 040755",
		"lib/modules/v 040755", "lib/modules/v/kernel 040755", "lib/modules/v/kernel/x.ko 0100644",
		"sbin 040755", "sbin/init 0120777", "tmp 041777",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	for _, h := range hdrs {
		if h.Name == "sbin/init" && h.Linkname != "../init" {
			t.Errorf("symlink target %q", h.Linkname)
		}
	}
}

// fakeKernel writes an unpacked kernel package with fake modules.
func fakeKernel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteFile(t, filepath.Join(dir, "boot", "vmlinuz-6.1.0-99-amd64"), bytes.Repeat([]byte("kernel"), 1000))
	fakeModules(t, filepath.Join(dir, "lib", "modules", "6.1.0-99-amd64"))
	return dir
}

func sha(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles cmd/orbit-init and cmd/orbit-rc")
	}
	kdir := fakeKernel(t)
	key := filepath.Join(t.TempDir(), "id.pub")
	testenv.WriteFile(t, key, []byte("ssh-ed25519 AAAA test\n"))
	opts := Options{
		Name: "orbit-2.0.0", KernelDir: kdir, Modules: []string{"e1000", "virtio_net", "virtio_pci"},
		SSHKeyFile: key, ModuleRoot: "..", Append: []string{"orbit.am=http://10.18.0.1:5054"},
		EFIImg: &EFILoaders{Shim: filepath.Join(t.TempDir(), "shim"), Grub: filepath.Join(t.TempDir(), "grub")},
	}
	testenv.WriteFile(t, opts.EFIImg.Shim, []byte("MZ shim"))
	testenv.WriteFile(t, opts.EFIImg.Grub, []byte("MZ grub"))
	t.Setenv("SOURCE_DATE_EPOCH", "1704067200") // the RAM disk's volume label time
	var results []Result
	for range 2 {
		opts.OutDir = t.TempDir()
		res, err := Build(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	a, b := results[0], results[1]
	if a.Initramfs.SHA256 != b.Initramfs.SHA256 || a.Initramfs.Size != b.Initramfs.Size {
		t.Fatalf("two builds differ: %s (%d) vs %s (%d)", a.Initramfs.SHA256, a.Initramfs.Size, b.Initramfs.SHA256, b.Initramfs.Size)
	}
	if a.EFIImg.SHA256 != b.EFIImg.SHA256 || a.EFIImg.SHA256 != sha(t, a.EFIImg.Path) {
		t.Errorf("two RAM-disk images differ, or differ from their Result: %s, %s", a.EFIImg.SHA256, b.EFIImg.SHA256)
	}
	if got := sha(t, a.Initramfs.Path); got != a.Initramfs.SHA256 {
		t.Errorf("Result sha256 %s, file %s", a.Initramfs.SHA256, got)
	}

	out := filepath.Dir(a.Initramfs.Path)
	wantFiles := []string{"efi", "efi/orbit-2.0.0.img", "grub", "grub/orbit-2.0.0.cfg", "initramfs-orbit-pxe-2.0.0.gz", "ipxe", "ipxe/orbit-2.0.0.ipxe",
		"linux-orbit-pxe-6.1.0-99-amd64", "pxelinux.cfg", "pxelinux.cfg/orbit-2.0.0"}
	var files []string
	must(t, filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != out {
			rel, _ := filepath.Rel(out, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	}))
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files in OutDir, no temporary ones left (-want +got):\n%s", diff)
	}
	if a.Kernel.SHA256 != sha(t, filepath.Join(kdir, "boot", "vmlinuz-6.1.0-99-amd64")) {
		t.Error("kernel copy differs from the package's")
	}
	cfg, err := os.ReadFile(a.Config.Path)
	must(t, err)
	if !strings.Contains(string(cfg), "KERNEL linux-orbit-pxe-6.1.0-99-amd64\n") ||
		!strings.Contains(string(cfg), "APPEND initrd=initramfs-orbit-pxe-2.0.0.gz console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054\n") {
		t.Errorf("config:\n%s", cfg)
	}
	// The three loaders' files come from one entry: each names the same
	// kernel, initramfs and arguments.
	for _, f := range []File{a.GrubConfig, a.IPXEEntry} {
		b, err := os.ReadFile(f.Path)
		must(t, err)
		for _, s := range []string{"linux-orbit-pxe-6.1.0-99-amd64 ", "initramfs-orbit-pxe-2.0.0.gz\n", " console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054 BOOTIF=01-"} {
			if !strings.Contains(string(b), s) {
				t.Errorf("%s lacks %q:\n%s", f.Path, s, b)
			}
		}
	}
	// The RAM disk holds the loaders, the kernel and initramfs just
	// written, and the entry rendered for GRUB on a RAM disk.
	for p, want := range map[string]string{
		"EFI/BOOT/BOOTX64.EFI":           "MZ shim",
		"EFI/BOOT/grubx64.efi":           "MZ grub",
		"EFI/debian/grub.cfg":            "  linux /linux-orbit-pxe-6.1.0-99-amd64 console=tty0 console=ttyS0,115200 orbit.am=http://10.18.0.1:5054\n",
		"linux-orbit-pxe-6.1.0-99-amd64": a.Kernel.SHA256,
		"initramfs-orbit-pxe-2.0.0.gz":   a.Initramfs.SHA256,
	} {
		got, err := fatimg.ReadFile(a.EFIImg.Path, p)
		switch {
		case err != nil:
			t.Errorf("RAM disk: %s: %v", p, err)
		case strings.HasSuffix(p, ".gz") || strings.HasPrefix(p, "linux-"):
			if s := sha256.Sum256(got); hex.EncodeToString(s[:]) != want {
				t.Errorf("RAM disk: %s differs from the file in OutDir", p)
			}
		case !strings.Contains(string(got), want):
			t.Errorf("RAM disk: %s = %q, want it to hold %q", p, got, want)
		}
	}
	if diff := cmp.Diff([]string{"e1000", "failover", "net_failover", "virtio_ring", "virtio", "virtio_net",
		"virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"}, a.Modules); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}

	gz, err := os.ReadFile(a.Initramfs.Path)
	must(t, err)
	hdrs, bodies := readCPIO(t, gz)
	modes := map[string]cpio.FileMode{}
	var kos []string
	for _, h := range hdrs {
		modes[h.Name] = h.Mode
		if strings.HasSuffix(h.Name, ".ko") {
			kos = append(kos, filepath.Base(h.Name))
		}
	}
	for name, mode := range map[string]cpio.FileMode{
		"init": 0o100755, "bin/orbit-rc": 0o100755, "sbin/init": 0o120777, ".orbit_image": 0o100644,
		"etc/orbit/authorized_keys": 0o100600, "lib/modules/load.order": 0o100644, "dev": 0o40755, "tmp": 0o41777,
		"bin/sshd": 0o100755, "bin/gosh": 0o100755, "bin/sh": 0o120777, // with a key: the debug shell
	} {
		if modes[name] != mode {
			t.Errorf("%s: mode %v, want %v", name, modes[name], mode)
		}
	}
	if string(bodies[".orbit_image"]) != "orbit-2.0.0\n" {
		t.Errorf(".orbit_image = %q", bodies[".orbit_image"])
	}
	if !bytes.HasPrefix(bodies["init"], []byte("\x7fELF")) || !bytes.HasPrefix(bodies["bin/orbit-rc"], []byte("\x7fELF")) {
		t.Error("init or orbit-rc is not an ELF binary")
	}
	// Only the closure: not virtio-rng, unrelated, broken, needs_builtin.
	if len(kos) != 9 {
		t.Errorf("modules in the image: %v, want the 9 of the closure", kos)
	}
	order := strings.Split(strings.TrimSpace(string(bodies["lib/modules/load.order"])), "\n")
	if len(order) != 10 || order[1] != "/lib/modules/6.1.0-99-amd64/kernel/drivers/net/ethernet/intel/e1000/e1000.ko" ||
		order[9] != "/lib/modules/6.1.0-99-amd64/kernel/drivers/virtio/virtio_pci.ko" {
		t.Errorf("load.order:\n%s", bodies["lib/modules/load.order"])
	}
	if !bytes.HasPrefix(bodies["bin/sshd"], []byte("\x7fELF")) || !bytes.HasPrefix(bodies["bin/gosh"], []byte("\x7fELF")) {
		t.Error("sshd or gosh is not an ELF binary")
	}
	if _, ok := bodies["lib/modules/6.1.0-99-amd64/modules.dep"]; !ok {
		t.Error("no modules.dep in the image")
	}
}

func TestBuildBadInput(t *testing.T) {
	kdir := fakeKernel(t)
	out := t.TempDir()
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"bad name", Options{Name: "default", KernelDir: kdir, OutDir: out, ModuleRoot: ".."}, "bad image name"},
		{"unknown module", Options{Name: "orbit-1", KernelDir: kdir, OutDir: out, ModuleRoot: "..", Modules: []string{"nope"}}, "not found"},
		{"no kernel", Options{Name: "orbit-1", KernelDir: t.TempDir(), OutDir: out, ModuleRoot: ".."}, "no boot/vmlinuz"},
		{"bad append", Options{Name: "orbit-1", KernelDir: kdir, OutDir: out, ModuleRoot: "..", Append: []string{"a\nb"}}, "white space"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("failed builds wrote %d files", len(ents))
	}
}

// TestBuildPrograms builds from programs given (nbctl's embedded ones):
// nothing is compiled, and ModuleRoot, when given too, wins.
func TestBuildPrograms(t *testing.T) {
	kdir := fakeKernel(t)
	shell := DebugShell{SSHD: []byte("sshd-bytes"), Gosh: []byte("gosh-bytes")}
	full := &Programs{Binaries: Binaries{Init: []byte("init-bytes"), RC: []byte("rc-bytes")}, DebugShell: shell}
	noShell := &Programs{Binaries: full.Binaries}
	const noGo = "/nonexistent/go" // a build that compiles fails
	for _, tt := range []struct {
		name    string
		opts    Options
		wantErr string
		want    map[string]string // files of the initramfs and their contents
		lacks   []string
	}{
		{name: "programs", opts: Options{Programs: full},
			want:  map[string]string{"init": "init-bytes", "bin/orbit-rc": "rc-bytes"},
			lacks: []string{"bin/sshd", "bin/gosh", "bin/sh"}},
		{name: "programs with the debug shell", opts: Options{Programs: full, DebugShell: true},
			want: map[string]string{"init": "init-bytes", "bin/sshd": "sshd-bytes", "bin/gosh": "gosh-bytes"}},
		{name: "no debug shell given", opts: Options{Programs: noShell, DebugShell: true}, wantErr: "incomplete"},
		{name: "no init given", opts: Options{Programs: &Programs{Binaries: Binaries{RC: []byte("rc")}}}, wantErr: "incomplete"},
		{name: "neither programs nor module root", opts: Options{}, wantErr: "ModuleRoot"},
		{name: "module root wins", opts: Options{Programs: full, ModuleRoot: t.TempDir()}, wantErr: "go build ./cmd/orbit-init ./cmd/orbit-rc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			opts := tt.opts
			opts.Name, opts.KernelDir, opts.OutDir, opts.GoCmd = "orbit-1", kdir, out, noGo
			res, err := Build(context.Background(), opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if ents, _ := os.ReadDir(out); len(ents) != 0 {
					t.Errorf("a failed build wrote %d files", len(ents))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gz, err := os.ReadFile(res.Initramfs.Path)
			must(t, err)
			_, bodies := readCPIO(t, gz)
			for name, body := range tt.want {
				if got, ok := bodies[name]; !ok || string(got) != body {
					t.Errorf("%s = %q (present %v), want %q", name, got, ok, body)
				}
			}
			for _, name := range tt.lacks {
				if _, ok := bodies[name]; ok {
					t.Errorf("the image has %s", name)
				}
			}
		})
	}
}

func TestBuildRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles cmd/orbit-init and cmd/orbit-rc")
	}
	kdir := testenv.Kernel(t)
	for _, tt := range []struct {
		name       string
		debugShell bool
		budget     int64
	}{
		{"default", false, 6 << 20},
		// sshd and gosh add about 3.4 MB gzipped: over the default budget.
		{"debug shell", true, 9 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Build(context.Background(), Options{
				Name: "orbit-2.0.0", KernelDir: kdir, Modules: []string{"e1000", "virtio_net", "virtio_pci"},
				OutDir: t.TempDir(), ModuleRoot: "..", DebugShell: tt.debugShell,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("initramfs %d bytes (cpio %d), sha256 %s, took %v", res.Initramfs.Size, res.CPIOSize, res.Initramfs.SHA256, res.Duration)
			if res.Initramfs.Size > tt.budget {
				t.Errorf("initramfs is %d bytes, over the budget of %d", res.Initramfs.Size, tt.budget)
			}
		})
	}
}

func TestAssembleDebugShell(t *testing.T) {
	base := Contents{Name: "orbit-1", Init: []byte("init"), RC: []byte("rc"), KernelVersion: "6.1.0-99-amd64"}
	names := func(c Contents) map[string]string {
		t.Helper()
		a, err := Assemble(c)
		must(t, err)
		var b bytes.Buffer
		_, err = a.WriteGzip(&b, ModTime)
		must(t, err)
		hdrs, bodies := readCPIO(t, b.Bytes())
		got := map[string]string{}
		for _, h := range hdrs {
			got[h.Name] = string(bodies[h.Name]) + h.Linkname
		}
		return got
	}

	plain := names(base)
	for _, p := range []string{"bin/sshd", "bin/gosh", "bin/sh", "etc/orbit/authorized_keys"} {
		if _, ok := plain[p]; ok {
			t.Errorf("%s in an image without a debug shell", p)
		}
	}

	withShell := base
	withShell.SSHKey = []byte("ssh-ed25519 AAAA k\n")
	withShell.DebugShell = DebugShell{SSHD: []byte("sshd"), Gosh: []byte("gosh")}
	got := names(withShell)
	for p, want := range map[string]string{
		"bin/sshd": "sshd", "bin/gosh": "gosh", "bin/sh": "gosh", "etc/orbit/authorized_keys": "ssh-ed25519 AAAA k\n",
	} {
		if got[p] != want {
			t.Errorf("%s = %q, want %q", p, got[p], want)
		}
	}

	half := base
	half.DebugShell = DebugShell{SSHD: []byte("sshd")}
	if _, err := Assemble(half); err == nil {
		t.Error("Assemble with sshd but no gosh: no error")
	}
}
