// Command mkdeb builds the Debian package of the appliance (make deb runs
// it after make build) with internal/debpkg, into -out:
//
//	go run ./scripts/mkdeb [-bin bin] [-out bin] [-version V] [-maintainer "Name <address>"]
//
// The version is -version if given, else git describe's (a vX.Y.Z tag:
// X.Y.Z, or X.Y.Z+gitN.HASH N commits after it), else 0.0.0+gitDATE.HASH
// in a tree without such a tag (either with .dirty for uncommitted
// changes), else 0.0.0. The maintainer defaults to $DEBFULLNAME
// <$DEBEMAIL>, as Debian's own tools take it, else git's user.name
// <user.email>.
// It prints the package's path.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/orbit-lab/netboot/internal/debpkg"
	"github.com/orbit-lab/netboot/internal/modroot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	root, err := modroot.Find()
	if err != nil {
		return err
	}
	maintainer := defaultMaintainer(ctx, root)
	bin := flag.String("bin", "bin", "directory of netbootd and nbctl as make build builds them")
	out := flag.String("out", "bin", "directory the package is written to")
	version := flag.String("version", "", "Debian version (default: from git describe)")
	flag.StringVar(&maintainer, "maintainer", maintainer, "the package's Maintainer field")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}
	if *version == "" {
		*version = gitVersion(ctx, root)
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	path, err := debpkg.Build(ctx, debpkg.Options{Source: root, Bin: abs(*bin), Version: *version,
		Maintainer: maintainer, OutDir: abs(*out)})
	if err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}

// defaultMaintainer is $DEBFULLNAME <$DEBEMAIL>, as Debian's own tools
// take it, else git's user.name <user.email>, else a placeholder.
func defaultMaintainer(ctx context.Context, root string) string {
	if name, mail := os.Getenv("DEBFULLNAME"), os.Getenv("DEBEMAIL"); name != "" && mail != "" {
		return name + " <" + mail + ">"
	}
	name, err1 := exec.CommandContext(ctx, "git", "-C", root, "config", "user.name").Output()
	mail, err2 := exec.CommandContext(ctx, "git", "-C", root, "config", "user.email").Output()
	if n, m := strings.TrimSpace(string(name)), strings.TrimSpace(string(mail)); err1 == nil && err2 == nil && n != "" && m != "" {
		return n + " <" + m + ">"
	}
	return "netboot appliance maintainers <root@localhost>"
}

// gitVersion is the source tree's version as git knows it (see the
// package comment).
func gitVersion(ctx context.Context, root string) string {
	git := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", root}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	if d, err := git("describe", "--tags", "--long", "--dirty", "--match", "v[0-9]*"); err == nil {
		if v, err := debpkg.VersionFromGit(d); err == nil {
			return v
		}
	}
	if c, err := git("log", "-1", "--format=%cd.%h", "--date=format:%Y%m%d"); err == nil && c != "" {
		if d, err := git("describe", "--always", "--dirty"); err == nil && strings.HasSuffix(d, "-dirty") {
			c += ".dirty"
		}
		return "0.0.0+git" + c
	}
	return "0.0.0"
}
