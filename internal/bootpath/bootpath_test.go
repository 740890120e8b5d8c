package bootpath

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orbit-lab/netboot/internal/bootpath/boottree"
)

func TestClean(t *testing.T) {
	// Names served, and the path below the root each is cleaned to.
	cleaned := map[string]string{
		"pxelinux.0":                 "pxelinux.0",
		"/pxelinux.0":                "pxelinux.0",
		"///pxelinux.0":              "pxelinux.0",
		"/pxelinux.cfg/0A120102":     "pxelinux.cfg/0A120102",
		`\pxelinux.cfg\0A120102`:     "pxelinux.cfg/0A120102",
		"pxelinux.cfg//./default":    "pxelinux.cfg/default",
		"pxelinux.cfg/default/":      "pxelinux.cfg/default",
		"./ipxe.efi":                 "ipxe.efi",
		"images/orbit-2.0.0/vmlinuz": "images/orbit-2.0.0/vmlinuz",
		"...":                        "...", // a file name, not a parent
		"..foo":                      "..foo",
		"grub/x86_64-efi/grub.cfg-01-52-54-00-12-34-56": "grub/x86_64-efi/grub.cfg-01-52-54-00-12-34-56",
		"name with spaces": "name with spaces",
		"ünïcode":          "ünïcode",
	}
	// Names refused with ErrAccess: out of the root, no file at all,
	// control characters, not UTF-8, too long.
	refused := []string{
		"..", "../etc/passwd", `..\..\etc\passwd`, "/../etc/passwd", "pxelinux.cfg/../../etc/passwd", "pxelinux.cfg/../pxelinux.0", "a/..",
		"", "/", `\\`, ".",
		"pxelinux.0\x00", "pxelinux\n.0", "pxelinux\t.0", "\x7f", "\u0085next-line", "\xff\xfe",
		strings.Repeat("a", MaxNameLen+1),
	}
	type test struct {
		in, want string
		wantErr  error
	}
	var tests []test
	for in, want := range cleaned {
		tests = append(tests, test{in, want, nil})
	}
	for _, in := range refused {
		tests = append(tests, test{in, "", ErrAccess})
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Clean(tc.in)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("Clean(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestOpenFile(t *testing.T) {
	tr := boottree.New(t, nil)
	if err := syscall.Mkfifo(filepath.Join(tr.Root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	boottree.Symlink(t, "loop-b", filepath.Join(tr.Root, "loop-a"))
	boottree.Symlink(t, "loop-a", filepath.Join(tr.Root, "loop-b"))
	root, err := os.OpenRoot(tr.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	type test struct {
		name    string
		want    string // content expected, as a key of tr.Files
		wantErr error
	}
	tests := []test{
		{"pxelinux.0", "pxelinux.0", nil},
		{"pxelinux.cfg/0A120102", "pxelinux.cfg/orbit-2.0.0", nil}, // relative symlink inside
		{"zero", "zero", nil},
	}
	for wantErr, names := range map[error][]string{
		ErrAccess:   {"escape", "escape-dir/secret", "pxelinux.cfg/escape", "absolute-inside", "empty-dir", "fifo" /* must not block */, "loop-a"},
		ErrNotFound: {"missing", "dangling", "pxelinux.0/below-a-file", "missing-dir/file"},
	} {
		for _, name := range names {
			tests = append(tests, test{name, "", wantErr})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var (
				f    *os.File
				size int64
				err  error
			)
			go func() {
				defer close(done)
				var fi os.FileInfo
				f, fi, err = openIn(root, tc.name)
				if err == nil {
					size = fi.Size()
				}
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second): // hung: a FIFO open that blocks never returns
				t.Fatalf("openIn(%q) blocked", tc.name)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("openIn(%q): err %v, want %v", tc.name, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tr.Files[tc.want]) {
				t.Errorf("read %d bytes, not the content of %s (%d bytes)", len(got), tc.want, len(tr.Files[tc.want]))
			}
			if size != int64(len(got)) {
				t.Errorf("size %d, read %d", size, len(got))
			}
		})
	}
}

// TestOpenFileUnreadable: a file the server may not read is refused with
// ErrAccess, not served and not reported missing. Root reads mode 000
// files by CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so as root the open
// runs on a thread without them in its effective set (capabilities are
// per thread), as a netbootd run by a service user would be.
func TestOpenFileUnreadable(t *testing.T) {
	tr := boottree.New(t, nil)
	if err := os.Chmod(filepath.Join(tr.Root, "pxelinux.0"), 0); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(tr.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	// The same tree, still readable elsewhere, shows the refusal is the mode's.
	if _, _, err := openIn(root, "zero"); err != nil {
		t.Fatalf("readable file: %v", err)
	}
	withoutDACOverride(t, func() {
		f, _, err := openIn(root, "pxelinux.0")
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, ErrAccess) || errors.Is(err, ErrNotFound) {
			t.Errorf("unreadable file: %v, want ErrAccess", err)
		}
	})
}

// withoutDACOverride runs fn on a locked thread whose effective
// capabilities lack the two that let root bypass file modes, then puts
// them back. Without root there is nothing to drop.
func withoutDACOverride(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	saved := caps
	caps[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			// This thread must not go back to the pool without them: a
			// locked goroutine that exits takes its thread along.
			runtime.LockOSThread()
			t.Errorf("restoring capabilities: %v", err)
		}
	}()
	fn()
}
