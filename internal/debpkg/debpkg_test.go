package debpkg

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

func TestVersionFromGit(t *testing.T) {
	for _, tc := range []struct {
		describe, want string // want "": an error
	}{
		{"v1.2.0-0-g5a5e562", "1.2.0"},
		{"v1.2.0-3-g5a5e562\n", "1.2.0+git3.5a5e562"},
		{"v1.2.0-3-g5a5e562-dirty", "1.2.0+git3.5a5e562.dirty"},
		{"v1.2.0-0-g5a5e562-dirty", "1.2.0+dirty"},
		{"v2.0~rc1-12-gabcdef0", "2.0~rc1+git12.abcdef0"},
		{"1.2.0-3-g5a5e562", ""},    // not a v tag
		{"vnext-3-g5a5e562", ""},    // no digit first
		{"v1.2.0_a-3-g5a5e562", ""}, // _ is not in Debian's versions
		{"v1.2.0-3-gXYZ", ""},       // not a hash
		{"5a5e562", ""},             // describe --always without a tag
		{"v1.2.0-3-g5a5e562-x", ""}, // unknown suffix
		{"", ""},
	} {
		got, err := VersionFromGit(tc.describe)
		if tc.want == "" {
			if err == nil {
				t.Errorf("VersionFromGit(%q) = %q, want an error", tc.describe, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("VersionFromGit(%q) = %q, %v; want %q", tc.describe, got, err, tc.want)
		}
	}
}

// TestVersionOrder: a build after a tag sorts after it and before the next
// tag, a dirty one after the clean one, as dpkg compares them.
func TestVersionOrder(t *testing.T) {
	testenv.Programs(t, "Debian: dpkg", "dpkg")
	order := []string{"v1.2.0-0-g1111111", "v1.2.0-0-g1111111-dirty", "v1.2.0-3-g2222222", "v1.2.0-3-g2222222-dirty", "v1.2.0-12-g3333333", "v1.2.1-0-g4444444"}
	for i := 1; i < len(order); i++ {
		a, errA := VersionFromGit(order[i-1])
		b, errB := VersionFromGit(order[i])
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s is not older than %s (%v)", a, b, err)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"0.0.0", "1.2.0+git3.5a5e562", "0.0.0+git20261206.f76a294", "2.0~rc1"} {
		if err := CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%q): %v", v, err)
		}
	}
	for _, v := range []string{"", "v1.2", "1.2 3", "1:1.2", "1.2-1", "1.2_3", "../1"} {
		if err := CheckVersion(v); err == nil {
			t.Errorf("CheckVersion(%q) accepted it", v)
		}
	}
}

// TestBuildRefuses: a bad version, no maintainer or no binaries fail, and
// no package is left.
func TestBuildRefuses(t *testing.T) {
	src := testenv.SourceTree(t)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"bad version", Options{Version: "v1", Maintainer: "m <m@example.org>", Bin: t.TempDir()}, `version "v1"`},
		{"no maintainer", Options{Version: "1.0", Bin: t.TempDir()}, "no maintainer"},
		{"no binaries", Options{Version: "1.0", Maintainer: "m <m@example.org>", Bin: t.TempDir()}, "netbootd missing: run make build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Source, tc.o.OutDir = src, t.TempDir()
			_, err := Build(t.Context(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(tc.o.OutDir); len(ents) > 0 {
				t.Errorf("a refused build left %d entries in the output directory", len(ents))
			}
		})
	}
}

// TestMakeDeb: make deb builds as make build does (nbctl with the node's
// programs embedded), then packs that build, VERSION passed on or left to
// mkdeb.
func TestMakeDeb(t *testing.T) {
	root := testenv.SourceTree(t)
	testenv.Programs(t, "Debian: make", "make")
	for _, tc := range []struct {
		args []string
		want string // the mkdeb line
	}{
		{[]string{"VERSION=1.2.3"}, `go run ./scripts/mkdeb -bin bin -out bin -version "1.2.3"`},
		{[]string{"BIN=out"}, "go run ./scripts/mkdeb -bin out -out out"},
	} {
		cmd := exec.Command("make", append([]string{"-n", "deb"}, tc.args...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n deb: %v\n%s", err, out)
		}
		lines := strings.Split(string(out), "\n")
		at := func(match func(string) bool) int { return slices.IndexFunc(lines, match) }
		gen := at(func(l string) bool { return strings.HasPrefix(l, "go generate ./initramfs/nodebin") })
		build := at(func(l string) bool { return strings.HasPrefix(l, "go build -tags nodebin") })
		pack := at(func(l string) bool { return strings.Join(strings.Fields(l), " ") == tc.want })
		if gen < 0 || build < gen || pack < build {
			t.Errorf("make -n deb %s: want go generate, the build with the tag, then %q, in that order:\n%s", tc.args, tc.want, out)
		}
	}
}

const version = "1.2.0+git3.5a5e562"

// TestPackage builds the package from the binaries go build makes and reads
// it back with dpkg-deb: the control fields, the files with their modes,
// the conffiles and the maintainer scripts; then unpacks it with dpkg -x
// and checks what lands where.
func TestPackage(t *testing.T) {
	testenv.Programs(t, "Debian: dpkg", "dpkg-deb", "dpkg", "bash")
	bin := apptest.Binaries(t)
	pkg := build(t, bin)
	if filepath.Base(pkg) != "netboot_"+version+"_amd64.deb" {
		t.Errorf("package named %s", filepath.Base(pkg))
	}

	fields := controlFields(t, pkg)
	wantDepends := ""
	if dynamic(t, filepath.Join(bin, "netbootd")) {
		wantDepends = "libc6 (>= 2." // the minor from the binaries' symbols
	}
	for field, want := range map[string]string{
		"Package": "netboot", "Version": version, "Architecture": "amd64", "Maintainer": "Test Maintainer <test@example.org>",
		"Section": "net", "Priority": "optional", "Recommends": "pxelinux, syslinux-common",
	} {
		if fields[field] != want {
			t.Errorf("control %s: %q, want %q", field, fields[field], want)
		}
	}
	if !strings.HasPrefix(fields["Depends"], wantDepends) || (wantDepends == "") != (fields["Depends"] == "") {
		t.Errorf("control Depends: %q, want %q...", fields["Depends"], wantDepends)
	}
	for _, s := range []string{"shim-signed", "grub-efi-amd64-signed"} {
		if !strings.Contains(fields["Suggests"], s) {
			t.Errorf("control Suggests: %q, want %s", fields["Suggests"], s)
		}
	}
	if !strings.HasPrefix(fields["Description"], "testbed netboot appliance") {
		t.Errorf("control Description: %q", fields["Description"])
	}

	// dpkg-deb -c: each file with its mode and owner; nothing else but
	// the directories leading to them.
	wantFiles := map[string]string{
		"./usr/bin/netbootd":                            "-rwxr-xr-x",
		"./usr/bin/nbctl":                               "-rwxr-xr-x",
		"./usr/lib/netboot/fetch-kernel.sh":             "-rwxr-xr-x",
		"./usr/lib/systemd/system/netbootd.service":     "-rw-r--r--",
		"./etc/netboot/netbootd.yaml":                   "-rw-r--r--",
		"./etc/netboot/inventory.yaml":                  "-rw-r--r--",
		"./usr/share/bash-completion/completions/nbctl": "-rw-r--r--",
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(dpkgDeb(t, "-c", pkg)), "\n") {
		f := strings.Fields(l) // mode owner size date time path
		if len(f) != 6 || f[1] != "root/root" {
			t.Errorf("dpkg-deb -c: %q, want a file of root's", l)
			continue
		}
		if !strings.HasSuffix(f[5], "/") {
			got[f[5]] = f[0]
		} else if f[0] != "drwxr-xr-x" {
			t.Errorf("dpkg-deb -c: directory %s is %s", f[5], f[0])
		}
	}
	if !maps.Equal(got, wantFiles) {
		t.Errorf("dpkg-deb -c files:\n%v\nwant\n%v", got, wantFiles)
	}

	// The control archive: conffiles, and scripts sh accepts.
	control := filepath.Join(t.TempDir(), "DEBIAN")
	dpkgDeb(t, "-e", pkg, control)
	if c := testenv.ReadFile(t, filepath.Join(control, "conffiles")); c != "/etc/netboot/inventory.yaml\n/etc/netboot/netbootd.yaml\n" {
		t.Errorf("conffiles:\n%s", c)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(control, s)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, want an executable", s, err)
			continue
		}
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
		if !strings.Contains(testenv.ReadFile(t, p), `[ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]`) {
			t.Errorf("%s calls systemctl other than on a running system's own root", s)
		}
	}
	if _, err := os.Stat(filepath.Join(control, "preinst")); err == nil {
		t.Error("a preinst: nothing needs one")
	}

	root := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("dpkg", "-x", pkg, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -x: %v\n%s", err, out)
	}
	checkTree(t, root, bin)
}

// checkTree checks an unpacked or installed package below root against
// the binaries it was built from.
func checkTree(t *testing.T, root, bin string) {
	t.Helper()
	at := func(p string) string { return filepath.Join(root, p) }
	for _, b := range []string{"netbootd", "nbctl"} {
		fi, err := os.Stat(at("/usr/bin/" + b))
		if err != nil || fi.Mode().Perm()&0o111 != 0o111 {
			t.Errorf("/usr/bin/%s: %v, want an executable", b, err)
			continue
		}
		if sum(t, at("/usr/bin/"+b)) != sum(t, filepath.Join(bin, b)) {
			t.Errorf("/usr/bin/%s is not the %s built", b, b)
		}
	}
	unit := testenv.ReadFile(t, at("/usr/lib/systemd/system/netbootd.service"))
	if !strings.Contains(unit, "\nExecStart=/usr/bin/netbootd --config /etc/netboot/netbootd.yaml\n") ||
		!strings.Contains(unit, "\nStateDirectory=netboot\n") || regexp.MustCompile(`(?m)^User=`).MatchString(unit) {
		t.Errorf("unit: want ExecStart under /usr, StateDirectory=netboot, no User= (as make install's):\n%s", unit)
	}
	if conf := testenv.ReadFile(t, at("/etc/netboot/netbootd.yaml")); !strings.Contains(conf, "/etc/netboot/inventory.yaml") {
		t.Errorf("netbootd.yaml does not name /etc/netboot/inventory.yaml:\n%s", conf)
	}
	// The completion is what the packaged nbctl writes, and bash takes it.
	compl := at("/usr/share/bash-completion/completions/nbctl")
	out, err := exec.Command(at("/usr/bin/nbctl"), "completion", "bash").Output()
	if err != nil || string(out) != testenv.ReadFile(t, compl) {
		t.Errorf("the completion file is not nbctl completion bash's output (%v)", err)
	}
	if out, err := exec.Command("bash", "-c", `source "$1" && complete -p nbctl`, "bash", compl).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "-F _nbctl") {
		t.Errorf("bash, sourcing the completion: %v\n%s", err, out)
	}
}

// TestDpkgRoot installs, upgrades over an edited conffile, removes and
// purges the package in a scratch root with its own dpkg database (dpkg
// --root, the maintainer scripts run outside a chroot with DPKG_ROOT set,
// which they honour), and checks that the host's dpkg database is as it was.
func TestDpkgRoot(t *testing.T) {
	testenv.Programs(t, "Debian: dpkg", "dpkg-deb", "dpkg", "dpkg-query", "bash")
	testenv.Root(t, "dpkg --root installs files owned by root")
	bin := apptest.Binaries(t)
	pkg := build(t, bin)
	hostStatus := sum(t, "/var/lib/dpkg/status")

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		t.Helper()
		// libc6 is the host's, not the scratch root's: --force-depends.
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--log=/dev/null", "--force-script-chrootless", "--force-depends"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	status := func() string {
		out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${db:Status-Status} ${Version}", "netboot").Output()
		if err != nil {
			return "not-installed"
		}
		return string(out)
	}
	conf := filepath.Join(root, "etc/netboot/netbootd.yaml")
	enabled := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/netbootd.service")

	dpkg("-i", pkg)
	if s := status(); s != "installed "+version {
		t.Fatalf("after dpkg -i: %q", s)
	}
	checkTree(t, root, bin)
	listed := dpkg("-L", "netboot")
	for _, p := range []string{"/usr/bin/netbootd", "/usr/bin/nbctl", "/usr/lib/systemd/system/netbootd.service", "/etc/netboot/netbootd.yaml", "/usr/share/bash-completion/completions/nbctl"} {
		if !slices.Contains(strings.Split(listed, "\n"), p) {
			t.Errorf("dpkg -L netboot does not list %s:\n%s", p, listed)
		}
	}

	// The operator edits the config and enables the unit; reinstalling
	// (postinst configure with the old version) keeps the edit.
	edited := testenv.ReadFile(t, conf) + "# the operator's\n"
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(enabled), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/systemd/system/netbootd.service", enabled); err != nil {
		t.Fatal(err)
	}
	dpkg("--force-confold", "-i", pkg)
	if testenv.ReadFile(t, conf) != edited {
		t.Error("reinstalling replaced the operator's netbootd.yaml")
	}

	dpkg("-r", "netboot")
	if s := status(); s != "config-files "+version {
		t.Errorf("after dpkg -r: %q", s)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/netbootd")); !os.IsNotExist(err) {
		t.Errorf("after dpkg -r, /usr/bin/netbootd: %v", err)
	}
	if testenv.ReadFile(t, conf) != edited {
		t.Error("dpkg -r removed the conffile")
	}
	dpkg("-P", "netboot")
	if s := status(); s != "not-installed" {
		t.Errorf("after dpkg -P: %q", s)
	}
	for _, p := range []string{conf, enabled} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("after dpkg -P, %s: %v", p, err)
		}
	}
	if sum(t, "/var/lib/dpkg/status") != hostStatus {
		t.Error("the host's dpkg database changed")
	}
}

// build builds the package from bin into a temporary directory.
func build(t *testing.T, bin string) string {
	t.Helper()
	var log bytes.Buffer
	pkg, err := Build(t.Context(), Options{Source: testenv.SourceTree(t), Bin: bin, Version: version,
		Maintainer: "Test Maintainer <test@example.org>", OutDir: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, log.String())
	}
	return pkg
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).Output()
	if err != nil {
		t.Fatalf("dpkg-deb %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// controlFields reads the package's control file with dpkg-deb -f (a
// continued field's lines joined with newlines).
func controlFields(t *testing.T, pkg string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(strings.NewReader(dpkgDeb(t, "-f", pkg)))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, " ") && last != "" {
			fields[last] += "\n" + strings.TrimPrefix(l, " ")
			continue
		}
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("dpkg-deb -f: %q", l)
		}
		fields[k], last = v, k
	}
	return fields
}

// dynamic reports whether a binary has a program interpreter (the
// dynamic linker): it then needs libc.
func dynamic(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
}

func sum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// TestMaintainerScripts runs each script as dpkg would, with systemctl and
// deb-systemd-invoke stand-ins that record their calls: on a running
// systemd (a mount namespace with /run/systemd/system, the host's
// /etc/systemd/system hidden under a tmpfs), in a root that is not the
// running system's (DPKG_ROOT), and without systemd. Nothing ever starts
// or enables netbootd; an upgrade restarts it only if it runs.
func TestMaintainerScripts(t *testing.T) {
	testenv.Programs(t, "Debian: util-linux, mount", "unshare", "mount")
	testenv.Root(t, "a mount namespace with /run/systemd/system in it")
	fake := t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	for _, name := range []string{"systemctl", "deb-systemd-invoke"} {
		script := "#!/bin/sh\necho \"" + name + " $*\" >> " + calls + "\n"
		if err := os.WriteFile(filepath.Join(fake, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	noInvoke := t.TempDir() // systemctl alone
	if err := os.Symlink(filepath.Join(fake, "systemctl"), filepath.Join(noInvoke, "systemctl")); err != nil {
		t.Fatal(err)
	}
	// The only other programs on PATH: the host's own systemctl and
	// deb-systemd-invoke must be out of reach.
	tools := t.TempDir()
	for _, name := range []string{"sh", "mount", "mkdir", "rm"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(tools, name)); err != nil {
			t.Fatal(err)
		}
	}
	const (
		live    = "live"    // systemd runs
		offline = "offline" // no /run/systemd/system
		other   = "other"   // DPKG_ROOT names another root
	)
	reload := "systemctl --system daemon-reload"
	for _, tc := range []struct {
		system string
		path   string // the stand-ins' directory
		args   []string
		want   []string
	}{
		{live, fake, []string{"postinst", "configure"}, []string{reload}},
		{live, fake, []string{"postinst", "configure", "1.0"}, []string{reload, "deb-systemd-invoke try-restart netbootd.service"}},
		{live, noInvoke, []string{"postinst", "configure", "1.0"}, []string{reload, "systemctl try-restart netbootd.service"}},
		{live, fake, []string{"postinst", "abort-upgrade", "1.0"}, nil},
		{live, fake, []string{"prerm", "remove"}, []string{"deb-systemd-invoke stop netbootd.service"}},
		{live, fake, []string{"prerm", "upgrade", "2.0"}, nil},
		{live, fake, []string{"postrm", "remove"}, []string{reload}},
		{live, fake, []string{"postrm", "purge"}, []string{reload}},
		{live, fake, []string{"postrm", "upgrade", "2.0"}, nil},
		{other, fake, []string{"postinst", "configure", "1.0"}, nil},
		{other, fake, []string{"prerm", "remove"}, nil},
		{other, fake, []string{"postrm", "purge"}, nil},
		{offline, fake, []string{"postinst", "configure", "1.0"}, nil},
		{offline, fake, []string{"prerm", "remove"}, nil},
	} {
		name := tc.system + " " + strings.Join(tc.args, " ")
		if tc.path == noInvoke {
			name += " without deb-systemd-invoke"
		}
		t.Run(name, func(t *testing.T) {
			os.Remove(calls)
			script, err := filepath.Abs(filepath.Join("maint", tc.args[0]))
			if err != nil {
				t.Fatal(err)
			}
			var cmd *exec.Cmd
			switch tc.system {
			case live:
				const setup = `mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system &&
					{ [ ! -d /etc/systemd/system ] || mount -t tmpfs tmpfs /etc/systemd/system; } && exec "$@"`
				cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", setup, "sh", script}, tc.args[1:]...)...)
			default:
				if _, err := os.Stat("/run/systemd/system"); tc.system == offline && err == nil {
					t.Skip("systemd runs here: no offline case")
				}
				cmd = exec.Command(script, tc.args[1:]...)
			}
			cmd.Env = []string{"PATH=" + tc.path + ":" + tools}
			if tc.system == other {
				cmd.Env = append(cmd.Env, "DPKG_ROOT="+t.TempDir())
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tc.args, err, out)
			}
			var got []string
			if data, err := os.ReadFile(calls); err == nil {
				got = strings.Split(strings.TrimSpace(string(data)), "\n")
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
		})
	}
}
