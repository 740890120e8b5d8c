package fatimg

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestWrite writes images and reads every file back, with go-diskfs and,
// where mtools is installed, with mtools too (a reader that shares no code
// with the writer); a refused image leaves the old one in place.
func TestWrite(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB, many clusters
	src := filepath.Join(t.TempDir(), "kernel")
	if err := os.WriteFile(src, big, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		files   []File
		want    map[string][]byte // path -> content; nil with wantErr
		wantErr error
	}{
		{
			name: "UEFI RAM disk layout",
			files: []File{
				{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("shim")},
				{Path: "EFI/BOOT/grubx64.efi", Data: []byte("grub")},
				{Path: "EFI/debian/grub.cfg", Data: []byte("linux /linux-orbit-pxe-6.1.0-56-amd64\n")},
				{Path: "linux-orbit-pxe-6.1.0-56-amd64", Src: src},
				{Path: "initramfs-orbit-pxe-2.0.0.gz", Data: []byte{0x1f, 0x8b, 0}},
			},
			want: map[string][]byte{
				"EFI/BOOT/BOOTX64.EFI":           []byte("shim"),
				"EFI/BOOT/grubx64.efi":           []byte("grub"),
				"EFI/debian/grub.cfg":            []byte("linux /linux-orbit-pxe-6.1.0-56-amd64\n"),
				"linux-orbit-pxe-6.1.0-56-amd64": big,
				"initramfs-orbit-pxe-2.0.0.gz":   {0x1f, 0x8b, 0},
			},
		},
		{
			name:  "empty file, deep directory",
			files: []File{{Path: "a/b/c/d/empty"}},
			want:  map[string][]byte{"a/b/c/d/empty": {}},
		},
		{name: "absolute", files: []File{{Path: "/EFI/x"}}, wantErr: ErrBadPath},
		{name: "dot-dot", files: []File{{Path: "../x"}}, wantErr: ErrBadPath},
		{name: "not clean", files: []File{{Path: "EFI//x"}}, wantErr: ErrBadPath},
		{name: "colon", files: []File{{Path: "a:b"}}, wantErr: ErrBadPath},
		{name: "twice, case aside", files: []File{{Path: "EFI/x"}, {Path: "efi/X"}}, wantErr: ErrBadPath},
		{name: "missing source", files: []File{{Path: "x", Src: filepath.Join(t.TempDir(), "none")}}, wantErr: os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "boot.img")
			if err := os.WriteFile(img, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Write(img, tc.files)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Write = %v, want %v", err, tc.wantErr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the image alone", len(entries))
			}
			if tc.wantErr != nil {
				if b, _ := os.ReadFile(img); string(b) != "old" {
					t.Errorf("a refused image replaced the old one")
				}
				return
			}
			for p, want := range tc.want {
				got, err := ReadFile(img, p)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("go-diskfs reads %s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
				}
				if _, err := exec.LookPath("mtype"); err == nil {
					out, err := exec.Command("mtype", "-i", img, "::"+p).Output()
					if err != nil || !bytes.Equal(out, want) {
						t.Errorf("mtools reads %s: %d bytes, %v; want %d bytes", p, len(out), err, len(want))
					}
				}
			}
		})
	}
}

// TestWriteReproducible: the same files give the same bytes, also two
// seconds apart (FAT's clock resolution), given SOURCE_DATE_EPOCH.
func TestWriteReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1704067200")
	files := []File{{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("shim")}, {Path: "k", Data: bytes.Repeat([]byte{7}, 5000)}}
	dir := t.TempDir()
	var imgs [2][]byte
	for i := range imgs {
		p := filepath.Join(dir, "img")
		if err := Write(p, files); err != nil {
			t.Fatal(err)
		}
		var err error
		if imgs[i], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(2100 * time.Millisecond)
		}
	}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Error("two images of the same files differ")
	}
	if int64(len(imgs[0])) != Size([]int64{4, 5000}) || len(imgs[0]) < minSize {
		t.Errorf("image of %d bytes, want Size's %d (at least %d)", len(imgs[0]), Size([]int64{4, 5000}), minSize)
	}
}
