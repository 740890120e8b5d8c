package vtestbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/modroot"
)

// Image is an orbit-pxe RAM image in a TFTP root.
type Image struct {
	Name string
	Dir  string // the TFTP root it is in
	// Config, Kernel and Initrd are relative to Dir:
	// pxelinux.cfg/<Name>, linux-orbit-pxe-<kver>, initramfs-orbit-pxe-<ver>.gz;
	// Grub and IPXE are the image's other loaders' configs: grub/<Name>.cfg,
	// ipxe/<Name>.ipxe.
	Config, Kernel, Initrd string
	Grub, IPXE             string
	// EFIImg is the UEFI HTTP Boot RAM disk, efi/<Name>.img, when built
	// with ImageOptions.EFIImg; else "".
	EFIImg string
	Took   time.Duration // the build
}

// ImageOptions say what else an image build makes.
type ImageOptions struct {
	// EFIImg also makes the UEFI HTTP Boot RAM disk (nbctl image build
	// --efi-img) with Debian's signed shim and GRUB; it takes longer (the
	// FAT image is written whole) and needs shim-signed and
	// grub-efi-amd64-signed.
	EFIImg bool
}

// BuildImage builds the orbit-pxe image name from this source tree with
// `nbctl image build --name NAME --kernel-dir K --out OUT --append
// orbit.am=AMURL` (no --append when amURL is ""), plus --efi-img with
// o.EFIImg, where K is the Debian kernel in <root>/.cache/kernel (fetched
// if missing).
func BuildImage(t testing.TB, name, amURL, out string, o ImageOptions) (Image, error) {
	t.Helper()
	root, err := modroot.Find()
	if err != nil {
		return Image{}, err
	}
	kdir, err := KernelDir(root)
	if err != nil {
		return Image{}, err
	}
	nbctl := filepath.Join(apptest.Binaries(t), "nbctl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	args := []string{"image", "build", "--name", name, "--kernel-dir", kdir, "--out", out, "--module-root", root}
	if amURL != "" {
		args = append(args, "--append", "orbit.am="+amURL)
	}
	want := 5
	if o.EFIImg {
		args = append(args, "--efi-img")
		want = 6
	}
	cmd := exec.CommandContext(ctx, nbctl, args...)
	cmd.Dir = root
	output, err := cmd.CombinedOutput()
	if err != nil {
		return Image{}, fmt.Errorf("nbctl image build: %w\n%s", err, output)
	}
	img := Image{Name: name, Dir: out, Took: time.Since(start)}
	// One line per file: "<path> <size>  sha256:<hex>": the pxelinux, GRUB
	// and iPXE configs, kernel, initramfs, and with --efi-img the RAM disk.
	var files []string
	for _, line := range strings.Split(string(output), "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[2], "sha256:") {
			rel, err := filepath.Rel(out, f[0])
			if err != nil || strings.HasPrefix(rel, "..") {
				abs, _ := filepath.Abs(out)
				if rel, err = filepath.Rel(abs, f[0]); err != nil {
					return Image{}, fmt.Errorf("nbctl image build wrote %s outside %s", f[0], out)
				}
			}
			files = append(files, filepath.ToSlash(rel))
		}
	}
	if len(files) != want {
		return Image{}, fmt.Errorf("nbctl image build: want %d files in its output, got %d:\n%s", want, len(files), output)
	}
	img.Config, img.Grub, img.IPXE, img.Kernel, img.Initrd = files[0], files[1], files[2], files[3], files[4]
	if o.EFIImg {
		img.EFIImg = files[5]
	}
	t.Logf("image %s built in %v: %s, %s, %s", name, img.Took.Round(time.Millisecond), img.Config, img.Kernel, img.Initrd)
	return img, nil
}

// CopyTo copies the image's files into another TFTP root.
func (img Image) CopyTo(root string) (Image, error) {
	files := []string{img.Config, img.Grub, img.IPXE, img.Kernel, img.Initrd}
	if img.EFIImg != "" {
		files = append(files, img.EFIImg)
	}
	for _, f := range files {
		dst := filepath.Join(root, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return Image{}, err
		}
		if err := copyFile(filepath.Join(img.Dir, filepath.FromSlash(f)), dst); err != nil {
			return Image{}, err
		}
	}
	img.Dir = root
	return img, nil
}
