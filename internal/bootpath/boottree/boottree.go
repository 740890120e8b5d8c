// Package boottree builds, for tests, a boot root (tftp_root) with the
// shapes a boot-file server meets: files, a pxelinux.cfg symlink to a
// sibling, symlinks that escape, a directory, and a file outside the root
// that must never be served. The TFTP and HTTP servers' tests and the
// shared path rule's tests use the same tree, so that they test the same
// cases.
package boottree

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// OrbitCfg is the content of pxelinux.cfg/orbit-2.0.0, which
// pxelinux.cfg/0A120102 links to.
const OrbitCfg = "DEFAULT orbit\nLABEL orbit\n  KERNEL kernel-8m\n  APPEND initrd=initrd-64m\n"

// Tree is a boot root in a test's temporary directory.
type Tree struct {
	Root    string
	Outside string            // a directory beside Root, holding "secret"
	Files   map[string][]byte // regular files: name relative to Root -> content
}

// New builds the tree:
//
//	pxelinux.0, pxelinux.cfg/{orbit-2.0.0,default}, text.txt, zero   files
//	empty-dir/                                                       a directory
//	pxelinux.cfg/0A120102 -> ./orbit-2.0.0                           a link inside
//	escape -> ../outside/secret, escape-dir -> ../outside,
//	pxelinux.cfg/escape -> ../../outside/secret                      links out
//	absolute-inside -> ROOT/pxelinux.0                               absolute: refused
//	dangling -> missing-target
//
// Large files (name -> size) are random content from a seeded generator:
// fast, and the same on every run.
func New(t testing.TB, large map[string]int) *Tree {
	t.Helper()
	base := t.TempDir()
	tr := &Tree{
		Root:    filepath.Join(base, "root"),
		Outside: filepath.Join(base, "outside"),
		Files:   map[string][]byte{},
	}
	for _, d := range []string{filepath.Join(tr.Root, "pxelinux.cfg"), filepath.Join(tr.Root, "empty-dir"), tr.Outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tr.Write(t, "pxelinux.0", RandomBytes(1, 42_000))
	tr.Write(t, "pxelinux.cfg/orbit-2.0.0", []byte(OrbitCfg))
	tr.Write(t, "pxelinux.cfg/default", []byte("DEFAULT local\n"))
	tr.Write(t, "text.txt", []byte("line one\nline two\r\nend\n"))
	tr.Write(t, "zero", nil)
	i := uint64(2)
	for name, size := range large {
		tr.Write(t, name, RandomBytes(i, size))
		i++
	}
	testenv.WriteFile(t, filepath.Join(tr.Outside, "secret"), []byte("SECRET outside the root\n"))
	Symlink(t, "./orbit-2.0.0", filepath.Join(tr.Root, "pxelinux.cfg/0A120102"))
	Symlink(t, "../outside/secret", filepath.Join(tr.Root, "escape"))
	Symlink(t, "../outside", filepath.Join(tr.Root, "escape-dir"))
	Symlink(t, "../../outside/secret", filepath.Join(tr.Root, "pxelinux.cfg/escape"))
	Symlink(t, filepath.Join(tr.Root, "pxelinux.0"), filepath.Join(tr.Root, "absolute-inside"))
	Symlink(t, "missing-target", filepath.Join(tr.Root, "dangling"))
	return tr
}

// Write makes a regular file (and its directories) below Root.
func (tr *Tree) Write(t testing.TB, name string, data []byte) {
	t.Helper()
	testenv.WriteFile(t, filepath.Join(tr.Root, filepath.FromSlash(name)), data)
	tr.Files[name] = data
}

// Symlink makes link point at target.
func Symlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// RandomBytes is n bytes from a generator seeded with seed.
func RandomBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // documented never to fail
	return b
}
