package qemutests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/internal/qmp/qmptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// TestDeploy follows README's "Deploying on a real control network" as an
// operator does, step by step, with what make install lays out: the
// appliance's file system is a scratch DESTDIR, and netbootd runs the
// installed unit's ExecStart in that unit's sandbox (emulated: no systemd
// runs here), where the DESTDIR's /usr and /etc are the system's and its
// /tmp is its own. The control network is a vtestbed namespace with one
// QEMU node, which enrolls and is then loaded with a disk image.
func TestDeploy(t *testing.T) {
	vtestbed.Require(t, vtestbed.None)
	testenv.Programs(t, "Debian: make, util-linux; make test installs them", "make", "unshare", "setpriv", "mount")
	root := testenv.SourceTree(t)
	for _, d := range []string{"/srv", "/var/lib"} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			testenv.Missing(t, "needs %s as a mount point for the appliance's files", d)
		}
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond)) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// The appliance's root: not under /tmp, which the unit makes private.
	dest, err := os.MkdirTemp(filepath.Join(root, ".cache"), "deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dest) })
	at := func(p string) string { return filepath.Join(dest, p) }

	// Step 1: make install.
	run(ctx, t, root, nil, "make", "install", "DESTDIR="+dest)
	nbctlBin := at("/usr/local/bin/nbctl")

	// Step 2: the control network, 10.18.0.1/16 on br0. Step 7 puts the
	// node's QMP socket under /run.
	qmpDir, err := os.MkdirTemp("/run", "netboot-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(qmpDir) })
	node := vtestbed.NewNode(1, vtestbed.E1000)
	node.DiskMarker = oldMarker(node)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Server: vtestbed.None, QMPDir: qmpDir})

	// Step 3: the TFTP root (/srv/tftp: step 4 names it in the config),
	// pxelinux, and the image built by the installed nbctl with no Go and
	// no source tree about.
	tftp := at("/srv/tftp")
	if err := os.MkdirAll(filepath.Join(tftp, "pxelinux.cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{vtestbed.PXELinux, vtestbed.LDLinux} {
		run(ctx, t, "/", nil, "cp", f, tftp+"/")
	}
	kernel := strings.TrimSpace(run(ctx, t, "/", nil, at("/usr/local/lib/netboot/fetch-kernel.sh"), filepath.Join(root, ".cache", "kernel")))
	noGo := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	out := run(ctx, t, "/", noGo, nbctlBin, "image", "build", "--name", image, "--kernel-dir", kernel, "--out", tftp)
	if !strings.Contains(out, "initramfs-orbit-pxe-2.0.0.gz") {
		t.Fatalf("nbctl image build wrote no initramfs:\n%s", out)
	}

	// Step 4: netbootd.yaml from the installed example; the inventory
	// file with every node's control MAC and IP (power and disk come in
	// step 7, by editing it).
	confPath := at("/etc/netboot/netbootd.yaml")
	conf := testenv.ReadFile(t, confPath)
	for old, repl := range map[string]string{
		"tftp_root: /tftpboot":             "tftp_root: /srv/tftp",
		"enabled: false, interface: eth1,": "enabled: true, interface: " + vtestbed.Bridge + ",",
		// The EC runs on the appliance host: its address joins omf.allow,
		// as the README says.
		`omf:   { allow: [127.0.0.0/8, "::1/128"]`: `omf:   { allow: [127.0.0.0/8, "::1/128", ` + vtestbed.ServerIP.String() + `/32]`,
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("the installed netbootd.yaml has no %q to edit:\n%s", old, conf)
		}
		conf = strings.Replace(conf, old, repl, 1)
	}
	testenv.WriteFile(t, confPath, conf)
	// A second node whose QMP socket is in the host's /tmp: netbootd's
	// private /tmp does not have it.
	hidden := vtestbed.NewNode(2, vtestbed.E1000)
	hiddenSock := (&qmptest.Server{Handle: func(c *qmptest.Conn, _ string, _ json.RawMessage) { c.Return(map[string]any{}) }}).Start(t)
	invPath := at("/etc/netboot/inventory.yaml")
	inventory := func(nodeExtra, hiddenExtra string) string {
		return fmt.Sprintf(`images:
  - { name: %s, description: orbit-pxe }
testbeds:
  - domain: %s
    nodes:
      - { hrn: %s, hostname: %s, control_ip: %s, control_mac: "%s"%s }
      - { hrn: %s, hostname: %s, control_ip: %s, control_mac: "%s"%s }
`, image, vtestbed.Domain, node.HRN, node.Hostname, node.IP, node.MAC, nodeExtra, hidden.HRN, hidden.Hostname, hidden.IP, hidden.MAC, hiddenExtra)
	}
	testenv.WriteFile(t, invPath, inventory("", ""))

	// Step 5: start netbootd as the installed unit does.
	unit := startAsUnit(t, tb, dest, testenv.ReadFile(t, at("/etc/systemd/system/netbootd.service")))
	log := unit.log
	tb.AMURL = fmt.Sprintf("http://%s:%d", vtestbed.ServerIP, vtestbed.AMPort)
	// The first start's admin token, which nbctl and the testbed's own
	// calls send; in the state_dir overlay's upper directory.
	tokenFile := at("/var/lib/netboot/admin.token")
	nbctl := func(args ...string) (string, error) {
		t.Helper()
		cmd := tb.Netns.Command(ctx, nbctlBin, append([]string{"--server", tb.AMURL}, args...)...)
		cmd.Dir, cmd.Env = "/", append([]string{"NBCTL_TOKEN=" + tb.Token}, noGo...)
		out, err := cmd.CombinedOutput()
		t.Logf("$ nbctl %s\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	for {
		if tok, err := os.ReadFile(tokenFile); err == nil && tb.Token == "" {
			tb.Token = strings.TrimSpace(string(tok))
		}
		if _, err := tb.RCStatus(ctx, node.HRN); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("netbootd does not serve: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := nbctl("nodes"); err != nil || !strings.Contains(out, node.HRN) {
		t.Fatalf("nbctl nodes: %v", err)
	}
	// Without step 7 the node has no power driver, and the answer says
	// where it goes.
	if err := tb.CMC(ctx, "status", node); err == nil || !strings.Contains(err.Error(), "has no power driver") || !strings.Contains(err.Error(), "/etc/netboot/inventory.yaml") {
		t.Errorf("power status before step 7: %v; want no power driver, naming the inventory file", err)
	}
	// Step 7, its inventory part: power drivers and the disk into the
	// file, then systemctl reload netbootd (the unit's ExecReload).
	testenv.WriteFile(t, invPath, inventory(fmt.Sprintf(`, disk: /dev/sda, power: "qemu:%s"`, tb.QMPSocket(node)), fmt.Sprintf(`, power: "qemu:%s"`, hiddenSock)))
	unit.reload(t)
	for {
		out, err := nbctl("nodes", "show", node.Hostname)
		if err == nil && strings.Contains(out, tb.QMPSocket(node)) {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("the edited inventory file is not followed after reload: %v\n%s\nnetbootd:\n%s", err, out, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := nbctl("inventory", "status"); err != nil || !strings.Contains(out, invPath[len(dest):]) {
		t.Errorf("nbctl inventory status after the reload: %v\n%s", err, out)
	}
	if _, err := os.Stat(at("/var/lib/netboot/netboot.db")); err != nil {
		t.Errorf("the default state_dir (the unit's StateDirectory) has no database: %v", err)
	}
	if strings.HasPrefix(hiddenSock, "/tmp/") {
		err := tb.CMC(ctx, "status", hidden)
		if err == nil || !strings.Contains(err.Error(), "no QMP socket at "+hiddenSock) || !strings.Contains(err.Error(), "PrivateTmp=yes") {
			t.Errorf("power status through a socket in the host's /tmp: %v; want the driver to say netbootd's /tmp is private", err)
		}
	} else {
		t.Logf("TMPDIR is not /tmp: the private /tmp is not checked")
	}

	// Steps 5 and 6: the EC points the node at the image and powers it
	// on; its RC enrolls.
	vm := tb.Boot(t, node, vtestbed.BootOptions{AMPower: true, DiskSize: diskSize, Order: "nc"})
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	if err := tb.CMC(ctx, "on", node); err != nil {
		t.Fatal(err)
	}
	enrolled(ctx, t, tb, vm) // startAsUnit logs netbootd's output if t fails
	if out, err := nbctl("nodes", "events", node.HRN); err != nil || !regexp.MustCompile(`(?m)rc\s+enrolled`).MatchString(out) {
		t.Errorf("nbctl nodes events does not show the enrollment: %v", err)
	}

	// Step 7: a disk image, stored and loaded.
	const newMarker = "NEW-DISK deployed by the README's steps"
	img := filepath.Join(t.TempDir(), "baseline.img.zst")
	testenv.WriteFile(t, img, zstdtest.Compress(t, markedDisk(t, newMarker)))
	if out, err := nbctl("disk", "put", "baseline", img); err != nil {
		t.Fatalf("nbctl disk put: %v\n%s", err, out)
	}
	out, err = nbctl("load", "--nodes", node.Hostname, "--image", "baseline", "--boot-timeout", "3m", "--timeout", "4m")
	if err != nil || !apptest.HasLine(out, node.HRN, "loaded", "/dev/sda") {
		t.Fatalf("nbctl load: %v\nnetbootd:\n%s", err, log)
	}
	if _, err := vm.Console.WaitLine(ctx, newMarker); err != nil {
		t.Fatalf("the node did not boot the loaded disk: %v\nserial:\n%s", err, vm.Console.Text())
	}
}

// run runs a command (env nil: the test's) in dir and returns its stdout,
// failing t on error.
func run(ctx context.Context, t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr apptest.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// startAsUnit starts the unit's ExecStart inside the testbed's namespace,
// in a mount namespace that stands for the appliance as the unit shows it
// to netbootd: dest's /usr and /etc over the system's (read-only, as
// ProtectSystem=full has them), dest's /var/lib (writable) and /srv. Each
// setting of the unit's [Service] section is carried out, or the test
// fails naming one it does not know, so that the unit and this stay one.
// netbootd is stopped (SIGTERM) when t ends.
func startAsUnit(t *testing.T, tb *vtestbed.Testbed, dest, unit string) *unitProc {
	t.Helper()
	work := filepath.Join(dest, ".overlay-work")
	for _, d := range []string{work, filepath.Join(dest, "var/lib"), filepath.Join(dest, "srv")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// $1 is dest; the mounts that make dest the appliance's files.
	script := []string{
		`mount -t overlay overlay -o lowerdir="$1/usr":/usr /usr`,
		`mount -t overlay overlay -o lowerdir="$1/etc":/etc /etc`,
		`mount -t overlay overlay -o lowerdir=/var/lib,upperdir="$1/var/lib",workdir="$1/.overlay-work" /var/lib`,
		`mount --bind "$1/srv" /srv`,
	}
	var sandbox, late []string
	var execStart, execReload []string
	section := ""
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" {
			continue
		}
		key, value, _ := strings.Cut(line, "=")
		switch {
		case key == "ExecStart":
			execStart = strings.Fields(value)
		case key == "ExecReload":
			execReload = strings.Fields(value)
		case key == "Restart" || key == "RestartSec":
			// Supervision: one start here.
		case key == "AmbientCapabilities":
			// netbootd runs as root: it has them; the bounding set limits it.
		case key == "CapabilityBoundingSet":
			caps := []string{"-all"}
			for _, c := range strings.Fields(value) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			sandbox = append(sandbox, "--bounding-set="+strings.Join(caps, ","))
		case key == "NoNewPrivileges" && value == "yes":
			sandbox = append(sandbox, "--no-new-privs")
		case key == "StateDirectory":
			late = append(late, fmt.Sprintf("mkdir -p /var/lib/%s", value))
		case key == "ProtectSystem" && value == "full":
			// /usr and /etc are read-only overlays already.
			late = append(late, `for d in /boot /efi; do if [ -d $d ]; then mount --bind $d $d; mount -o remount,bind,ro $d; fi; done`)
		case key == "ProtectHome" && value == "yes":
			late = append(late, `for d in /home /root /run/user; do if [ -d $d ]; then mount -t tmpfs -o ro,mode=000 tmpfs $d; fi; done`)
		case key == "PrivateTmp" && value == "yes":
			late = append(late, `mount -t tmpfs -o mode=1777 tmpfs /tmp`, `mount -t tmpfs -o mode=1777 tmpfs /var/tmp`)
		default:
			t.Fatalf("the unit's %s is not carried out by startAsUnit: teach it", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(execStart) == 0 {
		t.Fatalf("the unit has no ExecStart:\n%s", unit)
	}
	script = append(script, late...)
	script = append(script, `shift; exec setpriv `+strings.Join(sandbox, " ")+` -- "$@"`)
	args := append([]string{"--mount", "--propagation", "private", "--", "sh", "-ec", strings.Join(script, "\n"), "sh", dest}, execStart...)
	cmd := tb.Netns.Command(context.Background(), "unshare", args...)
	cmd.Dir = "/"
	log := &apptest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	done, err := childproc.StartLocked(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("netbootd as the unit starts it: %s (sandbox: %s)", strings.Join(execStart, " "), strings.Join(sandbox, " "))
	t.Cleanup(func() {
		// systemctl stop: SIGTERM.
		if err, killed := childproc.Stop(cmd.Process, syscall.SIGTERM, 15*time.Second, done); killed || err != nil {
			t.Errorf("netbootd did not stop cleanly (killed %v): %v\n%s", killed, err, log)
		}
		if t.Failed() {
			t.Logf("netbootd's log:\n%s", log)
		}
	})
	return &unitProc{log: log, pid: cmd.Process.Pid, execReload: execReload}
}

// unitProc is netbootd started as the unit starts it: its output, its
// main PID (unshare, sh and setpriv exec it) and the unit's ExecReload.
type unitProc struct {
	log        *apptest.SyncBuffer
	pid        int
	execReload []string
}

// reload runs the unit's ExecReload as systemctl reload does, $MAINPID
// being netbootd's PID.
func (u *unitProc) reload(t *testing.T) {
	t.Helper()
	if len(u.execReload) == 0 {
		t.Fatal("the unit has no ExecReload: systemctl reload netbootd would fail")
	}
	args := make([]string, len(u.execReload))
	for i, a := range u.execReload {
		args[i] = strings.ReplaceAll(a, "$MAINPID", strconv.Itoa(u.pid))
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
