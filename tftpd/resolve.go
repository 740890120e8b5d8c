package tftpd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Sentinel errors a read request can be refused with. They decide the TFTP
// error code the client sees (see codeOf); test them with errors.Is.
var (
	// ErrNotFound: the name is well-formed and stays inside Root, but
	// nothing is there (TFTP error 1).
	ErrNotFound = errors.New("file not found")
	// ErrAccess: the name is malformed, leaves Root, or names something
	// that is not a readable regular file (TFTP error 2).
	ErrAccess = errors.New("access violation")
)

// maxNameLen bounds a requested name. A request packet is at most 512
// bytes by RFC 1350, so anything longer is not from a real client.
const maxNameLen = 512

// cleanName turns a requested name into a '/'-separated path relative to the
// root, or refuses it. It only looks at the string: symlinks are judged by
// os.Root when the file is opened.
//
// Clients are inconsistent about names: PXE ROMs and pxelinux send
// "/pxelinux.cfg/..." or "pxelinux.cfg\\...", so one leading '/' (or many)
// is stripped and '\' is treated as '/'. A ".." component is refused even
// when it would stay inside the root ("a/../b"), as tftpd-hpa does: no boot
// loader needs it, and refusing it keeps the rule simple to audit.
func cleanName(name string) (string, error) {
	if len(name) > maxNameLen {
		return "", fmt.Errorf("name of %d bytes (max %d): %w", len(name), maxNameLen, ErrAccess)
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

// openFile opens name (already cleaned) under root for reading and returns
// the descriptor with its fstat. os.Root follows symlinks that stay inside
// the root and refuses, at any component, those that leave it; an absolute
// symlink target counts as leaving, even when it names a path inside root.
func openFile(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
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
