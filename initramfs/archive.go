package initramfs

import (
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Entry is one file, directory or symlink of an archive.
type Entry struct {
	Path   string // absolute or relative; stored relative ("bin/orbit-rc")
	Mode   uint32 // permission bits (0o755)
	Type   EntryType
	Data   []byte // a regular file's contents
	Target string // a symlink's target
}

// EntryType is the kind of an Entry.
type EntryType uint8

// The kinds of entry. Device nodes are not supported: the kernel's built-in
// initramfs already has /dev/console, and the init mounts devtmpfs.
const (
	TypeFile EntryType = iota
	TypeDir
	TypeSymlink
)

// Archive is a set of entries written as a reproducible newc cpio archive.
type Archive struct {
	entries map[string]Entry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]Entry{}} }

// cleanPath returns p relative to the archive's root, or "" for the root.
func cleanPath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// Add adds e, and every parent directory it lacks (mode 0o755). A later Add
// of the same path replaces the earlier one.
func (a *Archive) Add(e Entry) error {
	p := cleanPath(e.Path)
	if p == "" {
		return fmt.Errorf("archive entry %q: not a file name", e.Path)
	}
	if e.Type == TypeSymlink && e.Target == "" {
		return fmt.Errorf("archive entry %q: symlink with no target", e.Path)
	}
	e.Path = p
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = Entry{Path: dir, Mode: 0o755, Type: TypeDir}
		}
	}
	a.entries[p] = e
	return nil
}

// AddFile adds a regular file.
func (a *Archive) AddFile(p string, mode uint32, data []byte) error {
	return a.Add(Entry{Path: p, Mode: mode, Type: TypeFile, Data: data})
}

// AddDir adds a directory.
func (a *Archive) AddDir(p string, mode uint32) error {
	return a.Add(Entry{Path: p, Mode: mode, Type: TypeDir})
}

// AddSymlink adds a symlink at p pointing to target.
func (a *Archive) AddSymlink(p, target string) error {
	return a.Add(Entry{Path: p, Mode: 0o777, Type: TypeSymlink, Target: target})
}

// Paths returns the entries' paths in archive order.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps) // a parent sorts before its children
	return ps
}

// WriteTo writes the archive as newc cpio: entries sorted by path (so a
// directory precedes its contents), owner 0:0, modification time modTime for
// all, inode numbers in that order, no checksums (setting
// cpio.Header.Checksum would switch the format to 070702).
func (a *Archive) WriteTo(w io.Writer, modTime time.Time) (int64, error) {
	cw := &countWriter{w: w}
	cp := cpio.NewWriter(cw)
	for i, p := range a.Paths() {
		e := a.entries[p]
		h := &cpio.Header{
			Name:    p,
			Mode:    cpio.FileMode(e.Mode & 0o7777),
			ModTime: modTime,
			Inode:   int64(i + 1),
			Links:   1,
		}
		var body []byte
		switch e.Type {
		case TypeFile:
			h.Mode |= cpio.TypeReg
			body = e.Data
		case TypeDir:
			h.Mode |= cpio.TypeDir
			h.Links = 2
		case TypeSymlink:
			h.Mode |= cpio.TypeSymlink
			body = []byte(e.Target) // newc stores a symlink's target as its body
		default:
			return cw.n, fmt.Errorf("archive entry %q: unknown type %d", p, e.Type)
		}
		h.Size = int64(len(body))
		if err := cp.WriteHeader(h); err != nil {
			return cw.n, fmt.Errorf("archive entry %q: %w", p, err)
		}
		if _, err := cp.Write(body); err != nil {
			return cw.n, fmt.Errorf("archive entry %q: %w", p, err)
		}
	}
	if err := cp.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// WriteGzip writes the archive gzip-compressed (best compression), with no
// file name and no modification time in the gzip header, so equal archives
// compress to equal bytes. It returns the uncompressed size.
func (a *Archive) WriteGzip(w io.Writer, modTime time.Time) (int64, error) {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return 0, err
	}
	n, err := a.WriteTo(zw, modTime)
	if err != nil {
		return n, err
	}
	return n, zw.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
