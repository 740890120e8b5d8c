// Package debpkg builds the appliance's Debian package (make deb) with nfpm
// as a library: the tree make install lays out (scripts/install.sh run
// into a staging root with PREFIX=/usr and the unit where packages keep
// theirs), nbctl's bash completion as nbctl itself writes it, and three
// small maintainer scripts. Running install.sh, rather than listing the
// files again here, keeps the package and make install from drifting.
package debpkg

import (
	"bytes"
	"context"
	"debug/elf"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/orbit-lab/netboot/internal/atomicfile"
)

// The package's name and architecture.
const (
	Name = "netboot"
	Arch = "amd64"
)

// Where the package puts things: make install's layout with these for
// PREFIX, SYSCONFDIR and UNITDIR (the unit where a package's units go:
// /etc/systemd/system is the administrator's).
const (
	Prefix     = "/usr"
	SysConfDir = "/etc"
	UnitDir    = "/usr/lib/systemd/system"
	// Completion is where bash-completion looks for nbctl's script.
	Completion = "/usr/share/bash-completion/completions/nbctl"
)

//go:embed maint
var maint embed.FS

// Options says what to package and where the package goes.
type Options struct {
	Source     string // the source tree: scripts/install.sh, examples/
	Bin        string // netbootd and nbctl as make build builds them
	Version    string // the Debian version (see CheckVersion)
	Maintainer string // "Name <address>"
	OutDir     string // where the .deb is written
	// Log receives install.sh's output; nil discards it.
	Log io.Writer
}

// Build builds the package and returns its path in OutDir, named as
// Debian names packages (netboot_VERSION_amd64.deb). The file appears
// whole or not at all.
func Build(ctx context.Context, o Options) (string, error) {
	if err := CheckVersion(o.Version); err != nil {
		return "", err
	}
	if o.Maintainer == "" {
		return "", fmt.Errorf("debpkg: no maintainer")
	}
	stage, err := os.MkdirTemp("", "netboot-deb-")
	if err != nil {
		return "", fmt.Errorf("debpkg: %w", err)
	}
	defer os.RemoveAll(stage)
	root := filepath.Join(stage, "root")
	if err := install(ctx, o, root); err != nil {
		return "", err
	}
	if err := writeCompletion(ctx, root); err != nil {
		return "", err
	}
	contents, err := treeContents(root)
	if err != nil {
		return "", err
	}
	libc, err := libcDepends(filepath.Join(root, Prefix, "bin", "netbootd"), filepath.Join(root, Prefix, "bin", "nbctl"))
	if err != nil {
		return "", err
	}
	scripts, err := writeScripts(filepath.Join(stage, "maint"))
	if err != nil {
		return "", err
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          Name,
		Arch:          Arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none", // Debian's version as given, not parsed as semver
		Section:       "net",
		Priority:      "optional",
		Maintainer:    o.Maintainer,
		Description: "testbed netboot appliance: DHCP, TFTP and the OMF PXE Aggregate Manager\n" +
			"netbootd serves a testbed's nodes DHCP, TFTP and HTTP boot files and the\n" +
			"OMF PXE and inventory calls, and images their disks through the orbit-rc\n" +
			"Resource Controller; nbctl is its command-line client and builds the\n" +
			"nodes' RAM image. The unit is installed but neither enabled nor started.",
		DisableGlobbing: true,
		// netbootd needs nothing but libc (read from the binaries
		// themselves); the BIOS boot files are what nearly every site
		// serves (README, step 3); the rest some sites only: UEFI nodes
		// (shim, GRUB), BMCs (ipmitool), qcow2 uploads (qemu-img).
		Overridables: nfpm.Overridables{
			Depends:    libc,
			Recommends: []string{"pxelinux", "syslinux-common"},
			Suggests:   []string{"shim-signed", "grub-efi-amd64-signed", "ipmitool", "qemu-utils"},
			Contents:   contents,
			Scripts:    scripts,
		},
	})
	out := filepath.Join(o.OutDir, deb.Default.ConventionalFileName(info))
	err = atomicfile.Write(out, 0o644, func(w io.Writer) error { return deb.Default.Package(info, w) })
	if err != nil {
		return "", fmt.Errorf("debpkg: %s: %w", out, err)
	}
	return out, nil
}

// install runs make install's script into root.
func install(ctx context.Context, o Options, root string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(o.Source, "scripts", "install.sh"))
	cmd.Dir = o.Source
	cmd.Env = append(os.Environ(), "DESTDIR="+root, "PREFIX="+Prefix, "SYSCONFDIR="+SysConfDir, "UNITDIR="+UnitDir, "BIN="+o.Bin)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	err := cmd.Run()
	if o.Log != nil {
		_, _ = o.Log.Write(log.Bytes())
	}
	if err != nil {
		return fmt.Errorf("debpkg: scripts/install.sh: %w\n%s", err, log.Bytes())
	}
	return nil
}

// writeCompletion has the staged nbctl write its bash completion, with an
// environment that gives it no token or server to read.
func writeCompletion(ctx context.Context, root string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, Prefix, "bin", "nbctl"), "completion", "bash")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + root, "XDG_CONFIG_HOME=" + filepath.Join(root, "nonexistent")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	script, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("debpkg: nbctl completion bash: %w\n%s", err, stderr.Bytes())
	}
	dst := filepath.Join(root, Completion)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("debpkg: %w", err)
	}
	return os.WriteFile(dst, script, 0o644)
}

// treeContents lists every file below root as the package's, with its
// mode; those below SysConfDir are conffiles (dpkg keeps an operator's
// edits across upgrades and asks about conflicting ones).
func treeContents(root string) (files.Contents, error) {
	var out files.Contents
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", path)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		c := &files.Content{Source: path, Destination: "/" + filepath.ToSlash(rel),
			FileInfo: &files.ContentFileInfo{Mode: fi.Mode().Perm()}}
		if strings.HasPrefix(c.Destination, SysConfDir+"/") {
			c.Type = files.TypeConfig
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("debpkg: staged tree: %w", err)
	}
	return out, nil
}

// writeScripts writes the maintainer scripts into dir for nfpm.
func writeScripts(dir string) (nfpm.Scripts, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nfpm.Scripts{}, fmt.Errorf("debpkg: %w", err)
	}
	var s nfpm.Scripts
	for name, field := range map[string]*string{"postinst": &s.PostInstall, "prerm": &s.PreRemove, "postrm": &s.PostRemove} {
		data, err := maint.ReadFile("maint/" + name)
		if err != nil {
			return s, fmt.Errorf("debpkg: %w", err)
		}
		*field = filepath.Join(dir, name)
		if err := os.WriteFile(*field, data, 0o755); err != nil {
			return s, fmt.Errorf("debpkg: %w", err)
		}
	}
	return s, nil
}

var glibcVersion = regexp.MustCompile(`^GLIBC_(\d+)\.(\d+)$`)

// libcDepends says what the binaries need at run time: nothing for static
// ones, else libc6 at least as new as the newest glibc symbol version they
// use. A library that is not glibc's fails: its package is unknown here.
func libcDepends(binaries ...string) ([]string, error) {
	dynamic := false
	var major, minor int
	for _, b := range binaries {
		f, err := elf.Open(b)
		if err != nil {
			return nil, fmt.Errorf("debpkg: %w", err)
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("debpkg: %s: %w", b, err)
		}
		for _, l := range libs {
			// What a Go binary built with cgo may load: glibc's own.
			if !slices.Contains([]string{"libc.so.6", "libpthread.so.0", "libdl.so.2", "libresolv.so.2", "libm.so.6"}, l) {
				f.Close()
				return nil, fmt.Errorf("debpkg: %s needs %s, which is not glibc's: name its package in debpkg", filepath.Base(b), l)
			}
			dynamic = true
		}
		needs, err := f.DynamicVersionNeeds()
		f.Close()
		if err != nil && len(libs) > 0 {
			return nil, fmt.Errorf("debpkg: %s: %w", b, err)
		}
		for _, n := range needs {
			for _, d := range n.Needs {
				m := glibcVersion.FindStringSubmatch(d.Dep)
				if m == nil {
					continue
				}
				ma, _ := strconv.Atoi(m[1])
				mi, _ := strconv.Atoi(m[2])
				if ma > major || ma == major && mi > minor {
					major, minor = ma, mi
				}
			}
		}
	}
	switch {
	case !dynamic:
		return nil, nil
	case major == 0:
		return []string{"libc6"}, nil
	}
	return []string{fmt.Sprintf("libc6 (>= %d.%d)", major, minor)}, nil
}

// debVersion is Debian's version syntax (deb-version(7)) without an epoch
// or a revision: an upstream version, from a digit on.
var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// CheckVersion accepts a Debian upstream version (1.2.0, 0.0.0+git20261206.5a5e562).
func CheckVersion(v string) error {
	if !debVersion.MatchString(v) {
		return fmt.Errorf("debpkg: version %q: want a Debian upstream version (a digit, then letters, digits, . + ~)", v)
	}
	return nil
}

// gitDescribe is git describe --tags --long's answer for a v-prefixed tag.
var gitDescribe = regexp.MustCompile(`^v([0-9][A-Za-z0-9.+~]*)-([0-9]+)-g([0-9a-f]+)(-dirty)?$`)

// VersionFromGit makes a Debian version of git describe --tags --long
// --dirty --match 'v[0-9]*': the tag itself at the tag, else the tag
// followed by the commits since and the commit (v1.2.0-3-gabc123 is
// 1.2.0+git3.abc123), sorting after the tag and before the next one
// (dpkg --compare-versions); a dirty tree adds .dirty.
func VersionFromGit(describe string) (string, error) {
	m := gitDescribe.FindStringSubmatch(strings.TrimSpace(describe))
	if m == nil {
		return "", fmt.Errorf("debpkg: git describe %q: not vVERSION-N-gHASH", describe)
	}
	v := m[1]
	if m[2] != "0" {
		v += "+git" + m[2] + "." + m[3]
	}
	if m[4] != "" {
		if m[2] == "0" {
			v += "+"
		} else {
			v += "."
		}
		v += "dirty"
	}
	return v, CheckVersion(v)
}
