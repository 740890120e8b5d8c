package tftpd

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"pxelinux.0", "pxelinux.0", nil},
		{"/pxelinux.0", "pxelinux.0", nil},
		{"///pxelinux.0", "pxelinux.0", nil},
		{"/pxelinux.cfg/0A120102", "pxelinux.cfg/0A120102", nil},
		{`\pxelinux.cfg\0A120102`, "pxelinux.cfg/0A120102", nil},
		{"pxelinux.cfg//./default", "pxelinux.cfg/default", nil},
		{"pxelinux.cfg/default/", "pxelinux.cfg/default", nil},
		{"./ipxe.efi", "ipxe.efi", nil},
		{"images/orbit-2.0.0/vmlinuz", "images/orbit-2.0.0/vmlinuz", nil},
		{"...", "...", nil}, // a file name, not a parent
		{"..foo", "..foo", nil},
		{"grub/x86_64-efi/grub.cfg-01-52-54-00-12-34-56", "grub/x86_64-efi/grub.cfg-01-52-54-00-12-34-56", nil},
		{"name with spaces", "name with spaces", nil},
		{"ünïcode", "ünïcode", nil},
		{"..", "", ErrAccess},
		{"../etc/passwd", "", ErrAccess},
		{`..\..\etc\passwd`, "", ErrAccess},
		{"/../etc/passwd", "", ErrAccess},
		{"pxelinux.cfg/../../etc/passwd", "", ErrAccess},
		{"pxelinux.cfg/../pxelinux.0", "", ErrAccess},
		{"a/..", "", ErrAccess},
		{"", "", ErrAccess},
		{"/", "", ErrAccess},
		{`\\`, "", ErrAccess},
		{".", "", ErrAccess},
		{"pxelinux.0\x00", "", ErrAccess},
		{"pxelinux\n.0", "", ErrAccess},
		{"pxelinux\t.0", "", ErrAccess},
		{"\x7f", "", ErrAccess},
		{"\u0085next-line", "", ErrAccess},
		{"\xff\xfe", "", ErrAccess},
		{strings.Repeat("a", maxNameLen+1), "", ErrAccess},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := cleanName(tc.in)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestOpenFile(t *testing.T) {
	tr := newTree(t, nil)
	if err := syscall.Mkfifo(filepath.Join(tr.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, "loop-b", filepath.Join(tr.root, "loop-a"))
	symlink(t, "loop-a", filepath.Join(tr.root, "loop-b"))
	root, err := os.OpenRoot(tr.root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	tests := []struct {
		name    string
		want    string // content expected, as a key of tr.files
		wantErr error
	}{
		{"pxelinux.0", "pxelinux.0", nil},
		{"pxelinux.cfg/0A120102", "pxelinux.cfg/orbit-2.0.0", nil}, // relative symlink inside
		{"zero", "zero", nil},
		{"escape", "", ErrAccess},
		{"escape-dir/secret", "", ErrAccess},
		{"pxelinux.cfg/escape", "", ErrAccess},
		{"absolute-inside", "", ErrAccess},
		{"empty-dir", "", ErrAccess},
		{"fifo", "", ErrAccess}, // must not block
		{"loop-a", "", ErrAccess},
		{"missing", "", ErrNotFound},
		{"dangling", "", ErrNotFound},
		{"pxelinux.0/below-a-file", "", ErrNotFound},
		{"missing-dir/file", "", ErrNotFound},
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
				f, fi, err = openFile(root, tc.name)
				if err == nil {
					size = fi.Size()
				}
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("openFile(%q) blocked", tc.name)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("openFile(%q): err %v, want %v", tc.name, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			equalBytes(t, tc.name, got, tr.files[tc.want])
			if size != int64(len(got)) {
				t.Errorf("size %d, read %d", size, len(got))
			}
		})
	}
}

func TestOpenFileUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads mode 000 files: nothing to refuse")
	}
	tr := newTree(t, nil)
	if err := os.Chmod(filepath.Join(tr.root, "pxelinux.0"), 0); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(tr.root)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, _, err := openFile(root, "pxelinux.0"); !errors.Is(err, ErrAccess) {
		t.Errorf("unreadable file: %v, want ErrAccess", err)
	}
}
