// Package fatimg writes a FAT file system image holding given files, with
// no partition table: what UEFI HTTP Boot downloads into a RAM disk and
// boots (application/vnd.efi-img). The file system is go-diskfs's; this
// package only sizes it, fills it and replaces the image atomically.
package fatimg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat16"

	"github.com/orbit-lab/netboot/internal/atomicfile"
)

// File is one file of the image.
type File struct {
	Path string // in the image, '/'-separated, relative: EFI/BOOT/BOOTX64.EFI
	Src  string // the file on disk to copy; or Data when empty
	Data []byte
}

// ErrBadPath is returned (wrapped) for a path that cannot be in the image.
var ErrBadPath = errors.New("fatimg: bad path")

// ModTime is every file's and directory's time, so that the same inputs
// give the same image bytes; the volume label's entry alone has
// go-diskfs's time: $SOURCE_DATE_EPOCH, else the clock.
var ModTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Label is the image's volume label.
const Label = "ORBITBOOT"

const (
	// FAT16 with 2 KiB clusters (go-diskfs picks 1 KiB up to 32 MiB, so
	// this overestimates) and room for the tables and directories.
	cluster = 2048
	slack   = 1 << 20
	// Below about 4.2 MB a FAT16 file system would have fewer than 4085
	// clusters, which readers take for FAT12; above 2 GiB FAT16 ends.
	minSize = 8 << 20
	maxSize = 2 << 30
)

// Write writes the image to dst atomically (a temporary file in its
// directory, renamed): a reader sees the old image or the new, whole.
func Write(dst string, files []File) error {
	sizes := make([]int64, len(files))
	seen := map[string]bool{}
	for i, f := range files {
		if err := checkPath(f.Path); err != nil {
			return err
		}
		key := strings.ToUpper(f.Path) // FAT names are case-insensitive
		if seen[key] {
			return fmt.Errorf("%w %q: given twice", ErrBadPath, f.Path)
		}
		seen[key] = true
		sizes[i] = int64(len(f.Data))
		if f.Src != "" {
			fi, err := os.Stat(f.Src)
			if err != nil {
				return fmt.Errorf("fatimg: %w", err)
			}
			sizes[i] = fi.Size()
		}
	}
	size := Size(sizes)
	if size > maxSize {
		return fmt.Errorf("fatimg: %d bytes of files do not fit in a FAT16 image", size)
	}
	err := atomicfile.WriteOSFile(dst, 0o644, func(f *os.File) error {
		if err := f.Truncate(size); err != nil {
			return err
		}
		fs, err := fat16.Create(file.New(f, false), size, 0, 512, Label, true)
		if err != nil {
			return fmt.Errorf("make FAT16: %w", err)
		}
		return fill(fs, files)
	})
	if err != nil {
		return fmt.Errorf("fatimg %s: %w", dst, err)
	}
	return nil
}

// Size is the image size Write makes for files of these sizes, a whole
// number of MiB.
func Size(sizes []int64) int64 {
	total := int64(slack)
	for _, s := range sizes {
		total += (s + cluster - 1) / cluster * cluster
		total += 4 * cluster // its directories, at most, and their entries
	}
	total = (total + 1<<20 - 1) &^ (1<<20 - 1)
	return max(total, minSize)
}

func checkPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("%w %q: want a clean relative path", ErrBadPath, p)
	}
	for _, part := range strings.Split(p, "/") {
		if len(part) > 255 || strings.ContainsAny(part, "\"*:<>?\\|\x00") {
			return fmt.Errorf("%w %q: %q is not a FAT long name", ErrBadPath, p, part)
		}
	}
	return nil
}

// fill makes the directories, in a fixed order, then copies the files.
func fill(fs *fat16.FileSystem, files []File) error {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted) // a parent before its children
	for _, d := range sorted {
		if err := fs.Mkdir("/" + d); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	for _, f := range files {
		if err := copyIn(fs, f); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	// A directory's "." and ".." entries carry the time it was made.
	times := append([]string{}, sorted...)
	for _, d := range sorted {
		times = append(times, d+"/.", d+"/..")
	}
	for _, p := range append(times, paths(files)...) {
		if err := fs.Chtimes("/"+p, ModTime, ModTime, ModTime); err != nil {
			return fmt.Errorf("times of %s: %w", p, err)
		}
	}
	return nil
}

func paths(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Path
	}
	return out
}

func copyIn(fs *fat16.FileSystem, f File) error {
	var src io.Reader = bytes.NewReader(f.Data)
	if f.Src != "" {
		in, err := os.Open(f.Src)
		if err != nil {
			return err
		}
		defer in.Close()
		src = in
	}
	out, err := fs.OpenFile("/"+f.Path, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ReadFile reads one file (a path as in File.Path) from an image.
func ReadFile(img, name string) ([]byte, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("fatimg: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("fatimg: %w", err)
	}
	fs, err := fat16.Read(file.New(f, true), fi.Size(), 0, 512)
	if err != nil {
		return nil, fmt.Errorf("fatimg %s: not a FAT16 image: %w", img, err)
	}
	b, err := fs.ReadFile("/" + name)
	if err != nil {
		return nil, fmt.Errorf("fatimg %s: %s: %w", img, name, err)
	}
	return b, nil
}
