// Package initramfs builds the orbit-pxe RAM image that testbed nodes
// netboot: a Debian kernel, a gzipped newc initramfs holding the init
// (cmd/orbit-init), the Resource Controller (cmd/orbit-rc) and the kernel
// modules the node's NICs need, and the pxelinux config that boots them.
//
// Builds are reproducible: the same sources, kernel, modules, name and Go
// toolchain give byte-identical files (the UEFI RAM disk given
// $SOURCE_DATE_EPOCH, the time of its volume label).
package initramfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/initramfs/layout"
	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/internal/fatimg"
	"github.com/orbit-lab/netboot/internal/imagename"
)

// Options say what to build.
type Options struct {
	// Name is the image name, e.g. "orbit-2.0.0": the pxelinux config is
	// OutDir/pxelinux.cfg/<Name> (what the AM links nodes to), and the
	// initramfs is initramfs-orbit-pxe-<Version(Name)>.gz.
	Name string
	// KernelDir is an unpacked Debian kernel package (scripts/fetch-kernel.sh):
	// it holds exactly one boot/vmlinuz-<ver> and lib/modules/<ver>/.
	KernelDir string
	// Modules are the kernel modules to load at boot, e.g. e1000,
	// virtio_net, virtio_pci; their dependencies are added.
	Modules []string
	// OutDir is the TFTP root the files are written to.
	OutDir string
	// SSHKeyFile, if set, is an SSH public key file (authorized_keys
	// format) put into the image as /etc/orbit/authorized_keys; the image
	// then has the debug shell (see DebugShell).
	SSHKeyFile string
	// DebugShell adds u-root's sshd and gosh (/bin/sshd, /bin/gosh,
	// /bin/sh -> gosh) even without SSHKeyFile, so that a key given at boot
	// (orbit.sshkey=) can be used. The init starts sshd only when it has a
	// key. Without both, the image has no SSH server and no shell at all.
	DebugShell bool
	// Append are extra kernel arguments for the pxelinux config, after
	// DefaultAppend, e.g. "orbit.am=http://10.18.0.1:5054".
	Append []string
	// ModuleRoot is the root of this Go module (where go.mod is), from
	// which cmd/orbit-init and cmd/orbit-rc (and the debug shell) are
	// built when Programs does not give them.
	ModuleRoot string
	// Programs, when set, are the image's programs already built (nbctl's
	// embedded copies, see package nodebin): Build then compiles nothing
	// and needs neither ModuleRoot nor Go.
	Programs *Programs
	// GoCmd is the go command; default "go" from $PATH.
	GoCmd string
	// GOARCH of the image; default amd64 (the Debian kernel's).
	GOARCH string
	// Log receives progress; default: discard.
	Log *slog.Logger
	// EFIImg, when set, also makes the image's UEFI HTTP Boot RAM disk,
	// efi/<Name>.img, with these loaders.
	EFIImg *EFILoaders
}

// EFILoaders are the signed UEFI loaders of a RAM-disk image: shim, and
// the GRUB it loads from its own directory.
type EFILoaders struct {
	Shim string // default DebianShim
	Grub string // default DebianGrub
}

// Debian's signed loaders (packages shim-signed, grub-efi-amd64-signed).
// The RAM disk needs the GRUB that reads its config from the disk it was
// loaded from (prefix /EFI/debian), not grubnetx64, whose prefix is the
// TFTP server's /grub.
const (
	DebianShim = "/usr/lib/shim/shimx64.efi.signed"
	DebianGrub = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
)

// The RAM disk's layout: shim where the firmware looks on removable media,
// its GRUB beside it (shim asks for grubx64.efi in its own directory), the
// GRUB config where Debian's GRUB looks (its prefix); the kernel and the
// initramfs at the root under their TFTP root names, as the config names
// them.
const (
	ramDiskShim = "EFI/BOOT/BOOTX64.EFI"
	ramDiskGrub = "EFI/BOOT/grubx64.efi"
	ramDiskCfg  = "EFI/debian/grub.cfg"
)

// File is a written file.
type File struct {
	Path   string // absolute
	Size   int64
	SHA256 string // hex
}

// Result says what Build wrote.
type Result struct {
	Initramfs     File
	Kernel        File
	Config        File     // pxelinux.cfg/<Name>
	GrubConfig    File     // grub/<Name>.cfg
	IPXEEntry     File     // ipxe/<Name>.ipxe
	EFIImg        File     // efi/<Name>.img, with Options.EFIImg
	Version       string   // from the name: orbit-2.0.0 -> 2.0.0
	KernelVersion string   // 6.1.0-56-amd64
	Modules       []string // in load order, as in /lib/modules/load.order
	Builtin       []string // requested or needed modules built into the kernel
	CPIOSize      int64    // the initramfs uncompressed
	Duration      time.Duration
}

// ErrBadName is returned (wrapped) for an image name that cannot be used.
var ErrBadName = imagename.ErrBadPXE

// DefaultModules are the drivers an orbit-pxe image loads unless told
// otherwise, with their dependencies: the NICs of testbed nodes and of
// QEMU (e1000, virtio-net), and the disks that LOAD_IMAGE and SAVE_IMAGE
// write and read (SATA through ahci and IDE through ata_piix, both as
// /dev/sd*; virtio-blk as /dev/vd*). An image without a node's disk
// driver boots and enrolls, and then cannot image the disk. efivarfs (a
// module in Debian's kernel, CONFIG_EFIVAR_FS=m) lets the RC of a UEFI
// node read and report its SecureBoot variable.
func DefaultModules() []string {
	return []string{"e1000", "virtio_net", "virtio_pci", "virtio_blk", "ahci", "ata_piix", "sd_mod", "efivarfs"}
}

// CheckName reports whether name can be an image name (the PXE image rule,
// imagename.CheckPXE).
func CheckName(name string) error { return imagename.CheckPXE(name) }

// Version returns the version part of an image name, used in the initramfs
// file name: the name without a leading "orbit-" (orbit-2.0.0 -> 2.0.0), or
// the whole name when it has no such prefix (lab-test -> lab-test).
func Version(name string) string {
	if v, ok := strings.CutPrefix(name, "orbit-"); ok && v != "" {
		return v
	}
	return name
}

// InitrdFile names the initramfs of a version in the TFTP root.
func InitrdFile(version string) string { return "initramfs-orbit-pxe-" + version + ".gz" }

// KernelFile names the kernel of a kernel version in the TFTP root, beside
// the initramfs built for it.
func KernelFile(kernelVersion string) string { return "linux-orbit-pxe-" + kernelVersion }

// ModTime is the modification time of every archive entry.
var ModTime = time.Unix(0, 0)

// Build builds the image and writes it into opts.OutDir: the initramfs, the
// kernel, pxelinux.cfg/<Name>, grub/<Name>.cfg, ipxe/<Name>.ipxe and, with
// EFIImg, efi/<Name>.img (one BootEntry rendered for each loader). Each file is written under a temporary name
// and renamed, so a TFTP server never serves half a file.
func Build(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := CheckName(opts.Name); err != nil {
		return Result{}, err
	}
	if err := checkAppend(opts.Append); err != nil {
		return Result{}, err
	}
	if opts.OutDir == "" || opts.KernelDir == "" {
		return Result{}, errors.New("image build: OutDir and KernelDir are required")
	}
	if opts.Programs == nil && opts.ModuleRoot == "" {
		return Result{}, errors.New("image build: ModuleRoot (to compile the node's programs) or Programs is required")
	}
	res := Result{Version: Version(opts.Name)}

	kernel, kver, err := FindKernel(opts.KernelDir)
	if err != nil {
		return Result{}, err
	}
	res.KernelVersion = kver
	modDir := filepath.Join(opts.KernelDir, "lib", "modules", kver)
	set, err := ResolveModules(modDir, opts.Modules)
	if err != nil {
		return Result{}, err
	}
	for _, m := range set.Load {
		res.Modules = append(res.Modules, m.Name)
	}
	res.Builtin = set.Builtin
	log.Info("image build", "name", opts.Name, "kernel", kver, "modules", strings.Join(res.Modules, ","), "builtin", strings.Join(set.Builtin, ","))

	var sshKey []byte
	if opts.SSHKeyFile != "" {
		if sshKey, err = os.ReadFile(opts.SSHKeyFile); err != nil {
			return Result{}, fmt.Errorf("ssh key: %w", err)
		}
	}
	progs, err := programs(ctx, opts, opts.DebugShell || opts.SSHKeyFile != "")
	if err != nil {
		return Result{}, err
	}
	bins, shell := progs.Binaries, progs.DebugShell
	log.Info("image build: programs", "orbit-init", len(bins.Init), "orbit-rc", len(bins.RC), "sshd", len(shell.SSHD), "gosh", len(shell.Gosh))

	a, err := Assemble(Contents{
		Name:          opts.Name,
		Init:          bins.Init,
		RC:            bins.RC,
		KernelVersion: kver,
		ModulesDir:    modDir,
		Modules:       set.Load,
		SSHKey:        sshKey,
		DebugShell:    shell,
	})
	if err != nil {
		return Result{}, err
	}

	if err := os.MkdirAll(filepath.Join(opts.OutDir, "pxelinux.cfg"), 0o755); err != nil {
		return Result{}, err
	}
	initrd := InitrdFile(res.Version)
	res.Initramfs, err = writeAtomic(filepath.Join(opts.OutDir, initrd), func(w io.Writer) error {
		n, err := a.WriteGzip(w, ModTime)
		res.CPIOSize = n
		return err
	})
	if err != nil {
		return Result{}, err
	}
	kname := KernelFile(kver)
	if res.Kernel, err = copyAtomic(kernel, filepath.Join(opts.OutDir, kname)); err != nil {
		return Result{}, err
	}
	entry := BootEntry{Kernel: kname, Initrd: initrd, Append: append(append([]string{}, DefaultAppend...), opts.Append...)}
	if opts.EFIImg != nil {
		if res.EFIImg, err = writeEFIImg(filepath.Join(opts.OutDir, filepath.FromSlash(imagename.HTTPBootImage(opts.Name))), *opts.EFIImg, entry, res); err != nil {
			return Result{}, err
		}
	}
	// The GRUB config and iPXE entry first: a pxelinux config is what
	// makes an image linkable, and by then its other loaders' files exist.
	for _, f := range []struct {
		rel  string
		text string
		res  *File
	}{
		{imagename.GrubConfig(opts.Name), entry.GRUB(), &res.GrubConfig},
		{imagename.IPXEScript(opts.Name), entry.IPXE(), &res.IPXEEntry},
		{"pxelinux.cfg/" + opts.Name, entry.Text(), &res.Config},
	} {
		p := filepath.Join(opts.OutDir, filepath.FromSlash(f.rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return Result{}, err
		}
		if *f.res, err = writeAtomic(p, func(w io.Writer) error {
			_, err := io.WriteString(w, f.text)
			return err
		}); err != nil {
			return Result{}, err
		}
	}
	res.Duration = time.Since(start)
	log.Info("image build: done", "initramfs", res.Initramfs.Path, "size", res.Initramfs.Size,
		"sha256", res.Initramfs.SHA256, "kernel", res.Kernel.Path, "config", res.Config.Path, "took", res.Duration.Round(time.Millisecond))
	return res, nil
}

// FindKernel returns the path and version of the one boot/vmlinuz-<ver> of
// an unpacked kernel package that has lib/modules/<ver>.
func FindKernel(kernelDir string) (path, version string, err error) {
	matches, err := filepath.Glob(filepath.Join(kernelDir, "boot", "vmlinuz-*"))
	if err != nil {
		return "", "", err
	}
	switch len(matches) {
	case 0:
		return "", "", fmt.Errorf("kernel directory %s: no boot/vmlinuz-*", kernelDir)
	case 1:
	default:
		return "", "", fmt.Errorf("kernel directory %s: more than one kernel: %s", kernelDir, strings.Join(matches, " "))
	}
	version = strings.TrimPrefix(filepath.Base(matches[0]), "vmlinuz-")
	if fi, err := os.Stat(filepath.Join(kernelDir, "lib", "modules", version)); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("kernel directory %s: no lib/modules/%s for %s", kernelDir, version, matches[0])
	}
	return matches[0], version, nil
}

// Programs are every program an image may hold: the ones it always has
// and the debug shell's.
type Programs struct {
	Binaries
	DebugShell DebugShell
}

// programs returns opts.Programs (without the debug shell unless withShell),
// or compiles the programs in opts.ModuleRoot; opts.ModuleRoot wins when
// both are given, so that a developer's changed sources are what the image
// gets.
func programs(ctx context.Context, opts Options, withShell bool) (Programs, error) {
	if opts.ModuleRoot == "" {
		p := *opts.Programs
		if !withShell {
			p.DebugShell = DebugShell{}
		}
		if len(p.Init) == 0 || len(p.RC) == 0 || withShell && (len(p.DebugShell.SSHD) == 0 || len(p.DebugShell.Gosh) == 0) {
			return Programs{}, errors.New("image build: the given programs are incomplete")
		}
		return p, nil
	}
	var p Programs
	var err error
	if p.Binaries, err = CompileBinaries(ctx, opts.GoCmd, opts.ModuleRoot, opts.GOARCH); err != nil {
		return Programs{}, err
	}
	if withShell {
		if p.DebugShell, err = CompileDebugShell(ctx, opts.GoCmd, opts.ModuleRoot, opts.GOARCH); err != nil {
			return Programs{}, err
		}
	}
	return p, nil
}

// Binaries are the programs every image holds.
type Binaries struct {
	Init []byte // cmd/orbit-init
	RC   []byte // cmd/orbit-rc
}

// CompileBinaries builds cmd/orbit-init and cmd/orbit-rc of the module at
// root as static, stripped, reproducible binaries (CGO_ENABLED=0, -trimpath,
// -buildvcs=false, -ldflags='-s -w', GOAMD64=v1) for linux/goarch (default
// amd64), in one go build run. goCmd defaults to "go".
func CompileBinaries(ctx context.Context, goCmd, root, goarch string) (Binaries, error) {
	out, err := goBuild(ctx, goCmd, root, goarch, "", "./cmd/orbit-init", "./cmd/orbit-rc")
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Init: out["orbit-init"], RC: out["orbit-rc"]}, nil
}

// DebugShell are the debug shell's programs (u-root v0.15.0, the version
// the module requires; go.mod lists both as tools so that they stay there).
type DebugShell struct {
	SSHD []byte // github.com/u-root/u-root/cmds/core/sshd
	Gosh []byte // github.com/u-root/u-root/cmds/core/gosh, -tags goshsmall
}

// Packages of the debug shell, built from the module cache.
const (
	SSHDPackage = "github.com/u-root/u-root/cmds/core/sshd"
	GoshPackage = "github.com/u-root/u-root/cmds/core/gosh"
)

// CompileDebugShell builds u-root's sshd and gosh as CompileBinaries builds
// the init, in one go build run in the module at root. gosh gets the
// goshsmall tag: a plain line reader instead of the bubbline editor, which
// would add about 1 MB for tab completion.
func CompileDebugShell(ctx context.Context, goCmd, root, goarch string) (DebugShell, error) {
	out, err := goBuild(ctx, goCmd, root, goarch, "goshsmall", SSHDPackage, GoshPackage)
	if err != nil {
		return DebugShell{}, err
	}
	return DebugShell{SSHD: out["sshd"], Gosh: out["gosh"]}, nil
}

// goBuild builds the packages (main packages with distinct last elements)
// in one reproducible go build run and returns the binaries by that name.
func goBuild(ctx context.Context, goCmd, root, goarch, tags string, pkgs ...string) (map[string][]byte, error) {
	if goCmd == "" {
		goCmd = "go"
	}
	if goarch == "" {
		goarch = "amd64"
	}
	tmp, err := os.MkdirTemp("", "orbit-image-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}
	if tags != "" {
		args = append(args, "-tags="+tags)
	}
	args = append(args, "-o", tmp+string(filepath.Separator))
	cmd := exec.CommandContext(ctx, goCmd, append(args, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOAMD64=v1",
		"GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(pkgs, " "), root, err, strings.TrimSpace(out.String()))
	}
	bins := map[string][]byte{}
	for _, p := range pkgs {
		name := path.Base(p)
		if bins[name], err = os.ReadFile(filepath.Join(tmp, name)); err != nil {
			return nil, err
		}
	}
	return bins, nil
}

// Contents is what goes into an initramfs.
type Contents struct {
	Name          string     // image name, written to /.orbit_image
	Init, RC      []byte     // the programs
	KernelVersion string     // modules go to /lib/modules/<KernelVersion>/
	ModulesDir    string     // the kernel package's lib/modules/<ver> to read module files from
	Modules       []Module   // in load order (ResolveModules)
	SSHKey        []byte     // optional
	DebugShell    DebugShell // optional: both or neither
}

// Assemble lays out the image's file tree (see package layout):
//
//	/init                           orbit-init
//	/sbin/init -> ../init
//	/bin/orbit-rc
//	/.orbit_image                   "<name>\n"
//	/lib/modules/<kver>/<path>.ko   the module closure, as in the package
//	/lib/modules/<kver>/modules.dep for the modules of the image only
//	/lib/modules/load.order         absolute module paths, load order
//	/etc/orbit/authorized_keys      when an SSH key is given
//	/bin/sshd /bin/gosh             the debug shell, when given
//	/bin/sh -> gosh                 the shell sshd runs
//	/dev /proc /sys /tmp /run /root /etc /var  empty directories
//
// It holds no device nodes: the kernel's built-in initramfs already has
// /dev/console, and the init mounts devtmpfs on /dev.
func Assemble(c Contents) (*Archive, error) {
	a := NewArchive()
	for _, d := range []struct {
		p    string
		mode uint32
	}{
		{"bin", 0o755}, {"sbin", 0o755}, {"etc", 0o755}, {"lib", 0o755}, {"dev", 0o755},
		{"proc", 0o555}, {"sys", 0o555}, {"tmp", 0o1777}, {"run", 0o755}, {"root", 0o700}, {"var", 0o755},
	} {
		if err := a.AddDir(d.p, d.mode); err != nil {
			return nil, err
		}
	}
	if len(c.Init) == 0 || len(c.RC) == 0 {
		return nil, errors.New("image: init and rc binaries are required")
	}
	adds := []error{
		a.AddFile(layout.Init, 0o755, c.Init),
		a.AddSymlink(layout.SbinInit, "../init"),
		a.AddFile(layout.RC, 0o755, c.RC),
		a.AddFile(layout.ImageName, 0o644, []byte(c.Name+"\n")),
	}
	if len(c.SSHKey) > 0 {
		adds = append(adds, a.AddFile(layout.AuthorizedKeys, 0o600, c.SSHKey))
	}
	switch sh := c.DebugShell; {
	case len(sh.SSHD) > 0 && len(sh.Gosh) > 0:
		adds = append(adds,
			a.AddFile(layout.SSHD, 0o755, sh.SSHD),
			a.AddFile(layout.Shell, 0o755, sh.Gosh),
			a.AddSymlink(layout.Sh, path.Base(layout.Shell)))
	case len(sh.SSHD) > 0 || len(sh.Gosh) > 0:
		return nil, errors.New("image: the debug shell needs both sshd and gosh")
	}
	if err := errors.Join(adds...); err != nil {
		return nil, err
	}
	var order bytes.Buffer
	fmt.Fprintf(&order, "# Loaded by orbit-init in this order (dependencies first).\n")
	for _, m := range c.Modules {
		data, err := os.ReadFile(filepath.Join(c.ModulesDir, filepath.FromSlash(m.Path)))
		if err != nil {
			return nil, fmt.Errorf("module %q: %w", m.Name, err)
		}
		p := path.Join(layout.ModulesDir, c.KernelVersion, m.Path)
		if err := a.AddFile(p, 0o644, data); err != nil {
			return nil, err
		}
		fmt.Fprintln(&order, p)
	}
	if len(c.Modules) > 0 {
		if err := a.AddFile(path.Join(layout.ModulesDir, c.KernelVersion, "modules.dep"), 0o644, modulesDep(c.Modules)); err != nil {
			return nil, err
		}
	}
	if err := a.AddFile(layout.ModulesLoadOrder, 0o644, order.Bytes()); err != nil {
		return nil, err
	}
	return a, nil
}

// writeAtomic writes dst (0644) through fill, atomically, and describes it.
func writeAtomic(dst string, fill func(io.Writer) error) (File, error) {
	h := digest.New()
	var size int64
	err := atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		cw := &countWriter{w: io.MultiWriter(w, h)}
		err := fill(cw)
		size = cw.n
		return err
	})
	if err != nil {
		return File{}, fmt.Errorf("write %s: %w", dst, err)
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		return File{}, err
	}
	return File{Path: abs, Size: size, SHA256: h.Hex()}, nil
}

// writeEFIImg writes the UEFI HTTP Boot RAM disk: a FAT image of the
// loaders, the entry's RAM-disk GRUB config and the kernel and initramfs
// just written.
func writeEFIImg(dst string, l EFILoaders, entry BootEntry, res Result) (File, error) {
	if l.Shim == "" {
		l.Shim = DebianShim
	}
	if l.Grub == "" {
		l.Grub = DebianGrub
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return File{}, err
	}
	err := fatimg.Write(dst, []fatimg.File{
		{Path: ramDiskShim, Src: l.Shim},
		{Path: ramDiskGrub, Src: l.Grub},
		{Path: ramDiskCfg, Data: []byte(entry.RAMDiskGRUB())},
		{Path: entry.Kernel, Src: res.Kernel.Path},
		{Path: entry.Initrd, Src: res.Initramfs.Path},
	})
	if err != nil {
		return File{}, fmt.Errorf("image build: UEFI RAM disk: %w", err)
	}
	sum, size, err := digest.File(dst)
	if err != nil {
		return File{}, err
	}
	abs, err := filepath.Abs(dst)
	return File{Path: abs, Size: size, SHA256: sum}, err
}

// copyAtomic copies src to dst with writeAtomic, unless dst already has the
// same contents.
func copyAtomic(src, dst string) (File, error) {
	sum, size, err := digest.File(src)
	if err != nil {
		return File{}, err
	}
	if dsum, dsize, err := digest.File(dst); err == nil && dsum == sum && dsize == size {
		abs, err := filepath.Abs(dst)
		return File{Path: abs, Size: size, SHA256: sum}, err
	}
	return writeAtomic(dst, func(w io.Writer) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
}
