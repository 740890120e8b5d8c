// Package nodebin carries the node's programs inside nbctl, so that the
// installed nbctl builds images without the source tree or Go.
//
// `make build` runs `go generate` here, which compiles orbit-init, orbit-rc
// and the debug shell's sshd and gosh into bin/ (gitignored) exactly as a
// build from the source tree would (initramfs.CompileBinaries and
// CompileDebugShell: the same flags, so the same bytes), and then builds
// nbctl with the build tag nodebin, which embeds them. Without the tag
// (go build, go test, the linters) nothing is embedded, bin/ need not
// exist, and Programs says so: nbctl then compiles from the source tree.
package nodebin

//go:generate go run ./gen bin

import (
	"errors"

	"github.com/orbit-lab/netboot/initramfs"
)

// Tag is the build tag that embeds the programs.
const Tag = "nodebin"

// Dir is the directory, relative to this package, that go generate fills
// and the tag embeds.
const Dir = "bin"

// Names are the files in Dir, one per program.
func Names() []string { return []string{"orbit-init", "orbit-rc", "sshd", "gosh"} }

// ErrNotEmbedded is returned by Programs in a binary built without the tag.
var ErrNotEmbedded = errors.New("this nbctl has no node programs embedded (make build embeds them)")

// Programs returns the embedded programs, or ErrNotEmbedded.
func Programs() (initramfs.Programs, error) {
	if !embedded {
		return initramfs.Programs{}, ErrNotEmbedded
	}
	read := func(name string) []byte {
		b, err := files.ReadFile(Dir + "/" + name)
		if err != nil {
			// The embed patterns name every file: the build would have failed.
			panic("nodebin: " + err.Error())
		}
		return b
	}
	return initramfs.Programs{
		Binaries:   initramfs.Binaries{Init: read("orbit-init"), RC: read("orbit-rc")},
		DebugShell: initramfs.DebugShell{SSHD: read("sshd"), Gosh: read("gosh")},
	}, nil
}
