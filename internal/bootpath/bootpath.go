// Package bootpath is the one rule for which files of the boot root
// (tftp_root) a client may read, shared by every protocol that serves it
// (TFTP, HTTP), so that they cannot disagree: a name never leaves the root,
// symlinks inside it are followed, only regular files are served.
package bootpath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Sentinel errors a request can be refused with. They decide what the
// client is told (TFTP error 1 or 2, HTTP 404 or 403); test them with
// errors.Is.
var (
	// ErrNotFound: the name is well-formed and stays inside the root, but
	// nothing is there.
	ErrNotFound = errors.New("file not found")
	// ErrAccess: the name is malformed, leaves the root, or names something
	// that is not a readable regular file.
	ErrAccess = errors.New("access violation")
)

// MaxNameLen bounds a requested name. A TFTP request packet is at most 512
// bytes by RFC 1350, so anything longer is not from a real client; no boot
// loader asks a longer one over HTTP either.
const MaxNameLen = 512

// Clean turns a requested name into a '/'-separated path relative to the
// root, or refuses it. It only looks at the string: symlinks are judged by
// os.Root when the file is opened.
//
// Clients are inconsistent about names: PXE ROMs and pxelinux send
// "/pxelinux.cfg/..." or "pxelinux.cfg\\...", shim over HTTP asks
// "//grubx64.efi", so leading and doubled '/' are dropped and '\' is
// treated as '/'. A ".." component is refused even when it would stay
// inside the root ("a/../b"), as tftpd-hpa does: no boot loader needs it,
// and refusing it keeps the rule simple to audit.
func Clean(name string) (string, error) {
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("name of %d bytes (max %d): %w", len(name), MaxNameLen, ErrAccess)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("name is not valid UTF-8: %w", ErrAccess)
	}
	for _, r := range name {
		// Control characters (NUL included) have no place in a boot file
		// name and would end up raw in logs.
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", fmt.Errorf("name contains control character %U: %w", r, ErrAccess)
		}
	}
	name = strings.ReplaceAll(name, "\\", "/")
	parts := make([]string, 0, strings.Count(name, "/")+1)
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "", ".":
			// Leading, doubled and trailing slashes and "." say nothing.
			continue
		case "..":
			return "", fmt.Errorf("name has a %q component: %w", part, ErrAccess)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("name is empty: %w", ErrAccess)
	}
	return strings.Join(parts, "/"), nil
}

// CheckRoot says whether dir can serve as the root: set, and a readable
// directory. Servers check it at start, so that a typo in tftp_root stops
// netbootd instead of failing every request.
func CheckRoot(dir string) error {
	if dir == "" {
		return errors.New("not set")
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("not readable: %w", err)
	}
	return nil
}

// Open opens name (already cleaned by Clean) under the directory dir for
// reading and returns the descriptor with its fstat. dir is opened anew for
// each call, so pointing it at a symlink that is swapped to a new tree
// takes effect for the next request. The caller serves the descriptor, not
// the path: a file replaced meanwhile is still sent as it was opened.
func Open(dir, name string) (*os.File, fs.FileInfo, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open root %q: %w", dir, err)
	}
	defer root.Close()
	return openIn(root, name)
}

// openIn is Open under a root already opened. os.Root follows symlinks
// that stay inside the root and refuses, at any component, those that
// leave it; an absolute symlink target counts as leaving, even when it
// names a path inside root.
func openIn(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	// O_NONBLOCK so that a FIFO in the tree cannot hang the open; it has no
	// effect on regular files, the only kind served.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, classifyOpenError(name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%q is a %s, not a regular file: %w", name, modeKind(fi.Mode()), ErrAccess)
	}
	return f, fi, nil
}

// classifyOpenError maps an os.Root open error onto ErrNotFound or
// ErrAccess. os.Root reports an escape with an unexported error ("path
// escapes from parent"), so anything that is not plainly "missing" is an
// access violation: escapes, permissions, symlink loops.
func classifyOpenError(name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("open %q: %w: %w", name, ErrNotFound, err)
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.EIO):
		// The server's trouble, not the client's: neither sentinel.
		return fmt.Errorf("open %q: %w", name, err)
	default:
		return fmt.Errorf("open %q: %w: %w", name, ErrAccess, err)
	}
}

func modeKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}
