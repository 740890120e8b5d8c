// Command gen compiles the node's programs into a directory, for package
// nodebin to embed (go generate there runs `go run ./gen bin`):
//
//	go run ./initramfs/nodebin/gen DIR
//
// It builds them from the source tree holding the current directory with
// initramfs.CompileBinaries and CompileDebugShell, so the embedded bytes
// are the ones `nbctl image build --module-root` would compile there.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/orbit-lab/netboot/initramfs"
	"github.com/orbit-lab/netboot/initramfs/nodebin"
	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/modroot"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string) error {
	root, err := modroot.Find()
	if err != nil {
		return fmt.Errorf("nodebin gen: %w", err)
	}
	bins, err := initramfs.CompileBinaries(ctx, "", root, "")
	if err != nil {
		return fmt.Errorf("nodebin gen: %w", err)
	}
	shell, err := initramfs.CompileDebugShell(ctx, "", root, "")
	if err != nil {
		return fmt.Errorf("nodebin gen: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("nodebin gen: %w", err)
	}
	progs := map[string][]byte{"orbit-init": bins.Init, "orbit-rc": bins.RC, "sshd": shell.SSHD, "gosh": shell.Gosh}
	for _, name := range nodebin.Names() {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), progs[name], 0o644); err != nil {
			return fmt.Errorf("nodebin gen: writing %s: %w", name, err)
		}
	}
	return nil
}
