package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestInstall runs make install's script (scripts/install.sh) into scratch
// roots: the files land where the README says, the unit starts netbootd
// under PREFIX with the config under SYSCONFDIR, and a second install
// replaces the binaries but keeps the operator's config.
func TestInstall(t *testing.T) {
	root := testenv.SourceTree(t)
	bin := apptest.Binaries(t)
	tmp := t.TempDir()
	tests := []struct {
		name                                 string
		destdir, prefix, sysconfdir, unitdir string // "": the default
		wantBin, wantConf, wantUnit, wantLib string // where the files land, below destdir
		verify                               bool   // systemd-analyze verify the unit where it lies
	}{
		{name: "defaults", destdir: filepath.Join(tmp, "root"),
			wantBin: "/usr/local/bin", wantConf: "/etc/netboot", wantUnit: "/etc/systemd/system", wantLib: "/usr/local/lib/netboot"},
		{name: "other prefix", destdir: filepath.Join(tmp, "root2"), prefix: "/opt/netboot", sysconfdir: "/srv/etc",
			wantBin: "/opt/netboot/bin", wantConf: "/srv/etc/netboot", wantUnit: "/etc/systemd/system", wantLib: "/opt/netboot/lib/netboot"},
		// No DESTDIR: the unit names files that exist, so systemd can check it.
		{name: "no destdir", prefix: filepath.Join(tmp, "usr"), sysconfdir: filepath.Join(tmp, "etc"), unitdir: filepath.Join(tmp, "units"),
			wantBin: filepath.Join(tmp, "usr/bin"), wantConf: filepath.Join(tmp, "etc/netboot"), wantUnit: filepath.Join(tmp, "units"),
			wantLib: filepath.Join(tmp, "usr/lib/netboot"), verify: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			install := func() string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "install.sh"))
				cmd.Env = append(os.Environ(), "BIN="+bin, "DESTDIR="+tt.destdir, "PREFIX="+tt.prefix, "SYSCONFDIR="+tt.sysconfdir, "UNITDIR="+tt.unitdir)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("install: %v\n%s", err, out)
				}
				return string(out)
			}
			at := func(p string) string { return filepath.Join(tt.destdir, p) }
			install()
			for _, f := range []string{tt.wantBin + "/netbootd", tt.wantBin + "/nbctl", tt.wantLib + "/fetch-kernel.sh"} {
				if fi, err := os.Stat(at(f)); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("%s: %v, want an executable", f, err)
				}
			}
			for name, src := range map[string]string{"netbootd": "netbootd", "nbctl": "nbctl"} {
				if !sameFile(t, at(tt.wantBin+"/"+name), filepath.Join(bin, src)) {
					t.Errorf("%s/%s is not %s/%s", tt.wantBin, name, bin, src)
				}
			}
			unit := testenv.ReadFile(t, at(tt.wantUnit+"/netbootd.service"))
			wantExec := "ExecStart=" + tt.wantBin + "/netbootd --config " + tt.wantConf + "/netbootd.yaml\n"
			if !strings.Contains(unit, "\n"+wantExec) {
				t.Errorf("unit lacks %q:\n%s", wantExec, unit)
			}
			if !regexp.MustCompile(`(?m)^ProtectSystem=full$`).MatchString(unit) || strings.Contains(unit, "ReadWritePaths=") {
				t.Errorf("unit: want ProtectSystem=full and no ReadWritePaths (the config decides):\n%s", unit)
			}
			conf := testenv.ReadFile(t, at(tt.wantConf+"/netbootd.yaml"))
			if !strings.Contains(conf, tt.wantConf+"/inventory.yaml") {
				t.Errorf("installed config does not name %s/inventory.yaml:\n%s", tt.wantConf, conf)
			}
			if _, err := os.Stat(at(tt.wantConf + "/inventory.yaml")); err != nil {
				t.Error(err)
			}

			// The operator edits the config; an old binary is replaced.
			edited := "# mine\n" + conf
			testenv.WriteFile(t, at(tt.wantConf+"/netbootd.yaml"), edited)
			testenv.WriteFile(t, at(tt.wantBin+"/netbootd"), "old")
			out := install()
			if got := testenv.ReadFile(t, at(tt.wantConf+"/netbootd.yaml")); got != edited {
				t.Errorf("a second install replaced the operator's config:\n%s", got)
			}
			if !strings.Contains(out, "kept "+at(tt.wantConf+"/netbootd.yaml")) {
				t.Errorf("second install does not say it kept the config:\n%s", out)
			}
			if !sameFile(t, at(tt.wantBin+"/netbootd"), filepath.Join(bin, "netbootd")) {
				t.Error("a second install did not replace netbootd")
			}

			if !tt.verify {
				return
			}
			if _, err := exec.LookPath("systemd-analyze"); err != nil {
				testenv.Missing(t, "no systemd-analyze to verify the unit (Debian: systemd)")
			}
			out2, err := exec.Command("systemd-analyze", "verify", at(tt.wantUnit+"/netbootd.service")).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out2)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out2)
			}
		})
	}
}

// TestInstallRefuses: a relative directory or missing binaries install
// nothing.
func TestInstallRefuses(t *testing.T) {
	root := testenv.SourceTree(t)
	bin := apptest.Binaries(t)
	for _, tt := range []struct {
		name string
		env  []string
		want string
	}{
		{"relative prefix", []string{"BIN=" + bin, "PREFIX=usr/local"}, "PREFIX must be an absolute path"},
		{"relative unit dir", []string{"BIN=" + bin, "UNITDIR=units"}, "UNITDIR must be an absolute path"},
		{"no binaries", []string{"BIN=" + t.TempDir()}, "netbootd missing: run make build"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			cmd := exec.Command(filepath.Join(root, "scripts", "install.sh"))
			cmd.Env = append(append(os.Environ(), "DESTDIR="+dest), tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Errorf("got %v, want a failure saying %q:\n%s", err, tt.want, out)
			}
			if ents, _ := os.ReadDir(dest); len(ents) != 0 {
				t.Errorf("a refused install wrote %d entries into DESTDIR", len(ents))
			}
		})
	}
}

// TestMakeInstall: make install builds first (nbctl with the node's
// programs embedded) and hands its variables to the script.
func TestMakeInstall(t *testing.T) {
	root := testenv.SourceTree(t)
	testenv.Programs(t, "Debian: make", "make")
	cmd := exec.Command("make", "-n", "install", "DESTDIR=/scratch", "PREFIX=/opt/nb")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n install: %v\n%s", err, out)
	}
	lines := string(out)
	build := strings.Index(lines, "go build -tags nodebin")
	gen := strings.Index(lines, "go generate ./initramfs/nodebin")
	script := strings.Index(lines, `DESTDIR="/scratch" PREFIX="/opt/nb" SYSCONFDIR="/etc" UNITDIR="/etc/systemd/system" BIN="bin" scripts/install.sh`)
	if gen < 0 || build < gen || script < build {
		t.Errorf("make install does not generate, build with the tag, then install, in that order:\n%s", lines)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	return testenv.ReadFile(t, a) == testenv.ReadFile(t, b)
}
