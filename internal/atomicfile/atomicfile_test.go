package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	errFill := errors.New("fill failed")
	for _, tc := range []struct {
		name    string
		fill    func(io.Writer) error
		perm    fs.FileMode
		want    string // the file's content afterwards
		wantErr error
	}{
		{"replaces", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }, 0o644, "new", nil},
		{"private", func(w io.Writer) error { _, err := io.WriteString(w, "secret"); return err }, 0o600, "secret", nil},
		{"fill fails after writing", func(w io.Writer) error {
			if _, err := io.WriteString(w, "half"); err != nil {
				return err
			}
			return errFill
		}, 0o644, "old", errFill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.json")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Write(path, tc.perm, tc.fill); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Write = %v, want %v", err, tc.wantErr)
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != tc.want {
				t.Errorf("content %q, %v; want %q", got, err, tc.want)
			}
			if fi, err := os.Stat(path); err == nil && tc.wantErr == nil && fi.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.perm)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the file alone", len(entries))
			}
		})
	}
}

func TestWriteFileNewAndIsTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ready")
	if err := WriteFile(path, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "x\n" {
		t.Errorf("content %q", got)
	}
	for name, want := range map[string]bool{
		".ready" + tempMark + "123": true,
		"ready":                     false,
		"a" + tempMark + "1":        false, // not hidden: not ours
		".ready":                    false,
	} {
		if IsTemp(name) != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, !want, want)
		}
	}
}
