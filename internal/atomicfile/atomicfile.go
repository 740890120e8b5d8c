// Package atomicfile replaces a file whole or not at all: a reader, or the
// next start after a crash, sees the old content or the new, never a part.
package atomicfile

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempMark is in the name of every temporary file; see IsTemp.
const tempMark = ".tmp-"

// Write writes path through fill: under a temporary name in the same
// directory (a rename across file systems would not be atomic), with
// mode perm, synced, then renamed into place. If fill fails, nothing
// replaces path and the temporary file is removed.
func Write(path string, perm fs.FileMode, fill func(io.Writer) error) error {
	return WriteOSFile(path, perm, func(f *os.File) error { return fill(f) })
}

// WriteOSFile is Write for a fill that needs the temporary file itself:
// a file system image written at offsets and read back while it is made.
func WriteOSFile(path string, perm fs.FileMode, fill func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+tempMark+"*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	err = fill(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	return err
}

// WriteFile is Write with data as the whole content.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// IsTemp reports whether a directory entry's name is one of Write's
// temporary files, left behind by a crash: a directory's owner removes
// them when it starts.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMark)
}
