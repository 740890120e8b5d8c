package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/initramfs"
	"github.com/orbit-lab/netboot/initramfs/nodebin"
	"github.com/orbit-lab/netboot/internal/modroot"
)

// imageBuild builds the orbit-pxe RAM image locally; it needs no running
// appliance unless --server is given, which registers the image there too.
func (k *cli) imageBuild(ctx context.Context, args []string, server string, serverSet bool) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	name := fs.String("name", "", "image name, e.g. orbit-2.0.0 (required)")
	kernelDir := fs.String("kernel-dir", "", "an unpacked Debian kernel package (make kernel) (required)")
	modules := fs.String("modules", strings.Join(initramfs.DefaultModules(), ","), "comma-separated kernel modules; their dependencies are added")
	out := fs.String("out", "", "TFTP root to write into (required)")
	sshKey := fs.String("ssh-key", "", "authorized key file for the debug shell")
	appendArgs := fs.String("append", "", "extra kernel arguments, e.g. orbit.am=http://10.18.0.1:5054")
	description := fs.String("description", "orbit-pxe RAM image", "description registered with --server")
	root := fs.String("module-root", "", "source tree to compile orbit-init and orbit-rc from, with Go, instead of the programs embedded in nbctl (default without them: the tree holding the current directory)")
	efiImg := fs.Bool("efi-img", false, "also write efi/<name>.img, the UEFI HTTP Boot RAM disk (shim, GRUB, kernel, initramfs) that DHCP hands linked UEFI HTTP Boot nodes")
	shim := fs.String("shim", initramfs.DebianShim, "signed shim for --efi-img (Debian: shim-signed)")
	grub := fs.String("grub-efi", initramfs.DebianGrub, "signed GRUB for --efi-img, loaded by shim from the RAM disk (Debian: grub-efi-amd64-signed)")
	register := fs.Bool("register", false, "register the image in the appliance's inventory (implied by --server)")
	fs.StringVar(&server, "server", server, "appliance URL to register the image with")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	serverSet = serverSet || given(fs, "server")
	if *name == "" || *kernelDir == "" || *out == "" {
		return fmt.Errorf("--name, --kernel-dir and --out are required: %w", errUsage)
	}
	progs, err := nodeProgs(*root, k.errOut)
	if err != nil {
		return err
	}
	var mods []string
	for _, m := range strings.Split(*modules, ",") {
		if m = strings.TrimSpace(m); m != "" {
			mods = append(mods, m)
		}
	}
	var loaders *initramfs.EFILoaders
	if *efiImg {
		loaders = &initramfs.EFILoaders{Shim: *shim, Grub: *grub}
	} else if given(fs, "shim") || given(fs, "grub-efi") {
		return fmt.Errorf("--shim and --grub-efi go with --efi-img: %w", errUsage)
	}
	res, err := initramfs.Build(ctx, initramfs.Options{
		Name: *name, KernelDir: *kernelDir, Modules: mods, OutDir: *out, SSHKeyFile: *sshKey,
		Append: strings.Fields(*appendArgs), ModuleRoot: progs.root, Programs: progs.embedded,
		EFIImg: loaders,
		Log:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	files := []initramfs.File{res.Config, res.GrubConfig, res.IPXEEntry, res.Kernel, res.Initramfs}
	if *efiImg {
		files = append(files, res.EFIImg)
	}
	for _, f := range files {
		fmt.Fprintf(k.out, "%-60s %9d  sha256:%s\n", f.Path, f.Size, f.SHA256)
	}
	fmt.Fprintf(k.out, "modules (load order): %s\nbuilt in %s\n", strings.Join(res.Modules, " "), res.Duration.Round(1e6))
	if !serverSet && !*register {
		return nil
	}
	if err := k.c.PutImage(ctx, apiv1.Image{Name: *name, Description: *description}); err != nil {
		return fmt.Errorf("registering %s: %w", *name, err)
	}
	fmt.Fprintf(k.out, "registered %s with %s\n", *name, server)
	return nil
}

// nodeSource is where an image's programs come from: compiled in root, or
// the ones embedded in nbctl.
type nodeSource struct {
	root     string
	embedded *initramfs.Programs
}

// nodeProgs picks the programs: --module-root wins (a developer changing
// them), else those embedded by make build, else the source tree holding
// the current directory, which is said on errOut since it needs Go.
func nodeProgs(root string, errOut io.Writer) (nodeSource, error) {
	if root != "" {
		return nodeSource{root: root}, nil
	}
	progs, err := nodebin.Programs()
	if err == nil {
		return nodeSource{embedded: &progs}, nil
	}
	if !errors.Is(err, nodebin.ErrNotEmbedded) {
		return nodeSource{}, fmt.Errorf("image build: %w", err)
	}
	r, ferr := modroot.Find()
	if ferr != nil {
		return nodeSource{}, fmt.Errorf("%w, and %w: give --module-root", err, ferr)
	}
	fmt.Fprintf(errOut, "nbctl: %v: compiling orbit-init and orbit-rc in %s with go\n", err, r)
	return nodeSource{root: r}, nil
}
