package bootpath

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/orbit-lab/netboot/internal/bootpath/boottree"
)

// FuzzResolve feeds request names through the resolver (Clean, then
// openIn in a tree with symlinks that escape) and checks the invariant
// that matters: whatever is opened is a regular file inside Root. Seeds:
// the names boot ROMs and loaders really ask for, and escapes. make test
// fuzzes it briefly, make fuzz for longer (scripts/fuzz.sh).
func FuzzResolve(f *testing.F) {
	for _, seed := range []string{
		"pxelinux.0",
		"/pxelinux.0",
		"/pxelinux.cfg/0A120102",
		`\pxelinux.cfg\0A120102`,
		"pxelinux.cfg/default",
		"pxelinux.cfg/01-52-54-00-12-34-56",
		"ipxe.efi",
		"grub/x86_64-efi/grub.cfg",
		// pxelinux's search order, lpxelinux's and GRUB's requests, iPXE's chain.
		"pxelinux.cfg/01-00-03-1d-0c-01-02",
		"pxelinux.cfg/0A1201",
		"pxelinux.cfg/0A",
		"ldlinux.c32",
		"::ldlinux.c32",
		"/boot/grub/x86_64-efi/command.lst",
		"grub/grub.cfg-01-52-54-00-12-34-56",
		"grub/grub.cfg-0A120102",
		"undionly.kpxe",
		"ipxe.efi\x00octet\x00blksize\x001468",
		"tftp://10.18.0.1/pxelinux.0",
		"linux-orbit-pxe",
		"initramfs-orbit-2.0.0.gz",
		`..\..\etc\passwd`,
		"../outside/secret",
		"/../outside/secret",
		"pxelinux.cfg/../../outside/secret",
		"pxelinux.cfg/escape",
		"escape",
		"escape-dir/secret",
		"escape-dir/../escape-dir/secret",
		"absolute-inside",
		"dangling",
		"....//....//outside/secret",
		"%2e%2e/outside/secret",
		"./././pxelinux.0",
		"pxelinux.0\x00../outside/secret",
		"C:\\boot\\pxelinux.0",
		"",
		"/",
		".",
		"..",
	} {
		f.Add(seed)
	}
	tr := boottree.New(f, nil)
	root, err := os.OpenRoot(tr.Root)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { root.Close() })
	realRoot, err := filepath.EvalSymlinks(tr.Root)
	if err != nil {
		f.Fatal(err)
	}
	secret, err := os.Stat(filepath.Join(tr.Outside, "secret"))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, name string) {
		clean, err := Clean(name)
		if err != nil {
			if !errors.Is(err, ErrAccess) {
				t.Fatalf("Clean(%q): %v does not wrap ErrAccess", name, err)
			}
			return
		}
		if !filepath.IsLocal(clean) || strings.ContainsAny(clean, `\`) || strings.HasPrefix(clean, "/") || len(clean) > MaxNameLen {
			t.Fatalf("Clean(%q) = %q: not a local '/'-separated path", name, clean)
		}
		for _, part := range strings.Split(clean, "/") {
			if part == "" || part == "." || part == ".." {
				t.Fatalf("Clean(%q) = %q: has component %q", name, clean, part)
			}
		}
		for _, r := range clean {
			if unicode.IsControl(r) {
				t.Fatalf("Clean(%q) = %q: control character %U", name, clean, r)
			}
		}

		file, fi, err := openIn(root, clean)
		if err != nil {
			if !errors.Is(err, ErrAccess) && !errors.Is(err, ErrNotFound) {
				t.Fatalf("openIn(%q): %v wraps neither ErrAccess nor ErrNotFound", clean, err)
			}
			return
		}
		defer file.Close()
		if !fi.Mode().IsRegular() {
			t.Fatalf("openIn(%q) opened a %v", clean, fi.Mode())
		}
		if os.SameFile(fi, secret) {
			t.Fatalf("openIn(%q) opened the file outside the root", clean)
		}
		// The kernel's name for the descriptor is where it really is.
		where, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(file.Fd())))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(where, realRoot+string(filepath.Separator)) {
			t.Fatalf("openIn(%q) opened %s, outside %s", clean, where, realRoot)
		}
	})
}
