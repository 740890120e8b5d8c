package initramfs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/netns/netnstest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestQEMUBoot boots the Debian kernel with an image built from this tree in
// QEMU (TCG) with two NICs, e1000 (eth0, no server) and virtio-net (eth1,
// named by BOOTIF), on taps in a network namespace where dnsmasq answers
// DHCP. The RC is testdata/poweroff-rc, which prints its environment and
// asks the init to power off; the test passes when QEMU exits by itself
// after the init's orderly power-off. It sends no packet outside the
// namespace.
//
// It runs in every `go test ./initramfs/`; it needs root, /dev/net/tun,
// qemu-system-x86_64, dnsmasq, ip and a kernel in .cache/kernel (make test
// provides them all), and skips without, or fails under CI=true.
func TestQEMUBoot(t *testing.T) {
	testenv.Root(t, "network namespace, taps")
	testenv.Programs(t, "Debian: qemu-system-x86, dnsmasq-base, iproute2; make test installs them",
		"qemu-system-x86_64", "dnsmasq", "ip")
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		testenv.Missing(t, "needs /dev/net/tun for the taps: %v", err)
	} else {
		f.Close()
	}
	kdir := testenv.Kernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The image, with the stand-in RC.
	bins, err := CompileBinaries(ctx, "", "..", "")
	must(t, err)
	rcPath := filepath.Join(t.TempDir(), "poweroff-rc")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", rcPath, "./testdata/poweroff-rc")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build poweroff-rc: %v\n%s", err, out)
	}
	bins.RC, err = os.ReadFile(rcPath)
	must(t, err)
	kernel, kver, err := FindKernel(kdir)
	must(t, err)
	modDir := filepath.Join(kdir, "lib", "modules", kver)
	set, err := ResolveModules(modDir, []string{"e1000", "virtio_net", "virtio_pci"})
	must(t, err)
	a, err := Assemble(Contents{Name: "orbit-qemu-test", Init: bins.Init, RC: bins.RC, KernelVersion: kver, ModulesDir: modDir, Modules: set.Load})
	must(t, err)
	initrd := filepath.Join(t.TempDir(), "initrd.gz")
	f, err := os.Create(initrd)
	must(t, err)
	_, err = a.WriteGzip(f, ModTime)
	must(t, err)
	must(t, f.Close())

	// The network: a bridge with the virtio NIC's tap and dnsmasq; the
	// e1000's tap is alone.
	ns := netnstest.Temp(t, "orbit-qemu-")
	ip := func(args ...string) {
		t.Helper()
		netnstest.IP(t, append([]string{"-n", ns}, args...)...)
	}
	ip("link", "add", "br0", "type", "bridge")
	ip("tuntap", "add", "tap0", "mode", "tap")
	ip("tuntap", "add", "tap1", "mode", "tap")
	ip("link", "set", "tap0", "master", "br0")
	ip("addr", "add", "10.198.0.1/24", "dev", "br0")
	for _, l := range []string{"lo", "br0", "tap0", "tap1"} {
		ip("link", "set", l, "up")
	}
	state := t.TempDir()
	var dnsOut bytes.Buffer
	dns := exec.Command("ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces",
		"--dhcp-range=10.198.0.50,10.198.0.60,255.255.255.0,1h",
		"--dhcp-host=52:54:00:98:00:32,10.198.0.32,node1-2",
		"--dhcp-leasefile="+filepath.Join(state, "leases"), "--pid-file="+filepath.Join(state, "pid"))
	dns.Stdout, dns.Stderr = &dnsOut, &dnsOut
	dns.WaitDelay = 5 * time.Second
	must(t, dns.Start())
	t.Cleanup(func() {
		// Killed: neither the kill (it may have died) nor its status says more.
		_ = dns.Process.Kill()
		_ = dns.Wait()
	})

	logPath := filepath.Join(t.TempDir(), "console.log")
	start := time.Now()
	qemu := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "qemu-system-x86_64",
		"-m", "256", "-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:"+logPath,
		"-netdev", "tap,id=n1,ifname=tap1,script=no,downscript=no", "-device", "e1000,netdev=n1,mac=52:54:00:98:01:32",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:98:00:32",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0,115200 BOOTIF=01-52-54-00-98-00-32 orbit.am=http://10.198.0.1:5054")
	out, err := qemu.CombinedOutput()
	wall := time.Since(start)
	console, _ := os.ReadFile(logPath)
	console = bytes.ReplaceAll(console, []byte("\r\n"), []byte("\n")) // the serial line's CRLF
	if err != nil {
		t.Fatalf("qemu: %v (after %v)\n%s\nconsole:\n%s", err, wall, out, console)
	}
	t.Logf("QEMU ran %v and exited by itself", wall.Round(100*time.Millisecond))
	for _, want := range []string{
		"Run /init as init process",
		"\norbit-qemu-test\n",
		`reason="BOOTIF=01-52-54-00-98-00-32"`,
		`msg="dhcp lease" if=eth1 ip=10.198.0.32/24`,
		"poweroff-rc: ORBIT_AM=http://10.198.0.1:5054 ",
		"ORBIT_CONTROL_IF=eth1 ",
		"ORBIT_HOSTNAME=node1-2 ",
		`msg="shutdown: poweroff"`,
		"reboot: Power down",
	} {
		if !bytes.Contains(console, []byte(want)) {
			t.Errorf("console lacks %q", want)
		}
	}
	// Boot times, from the kernel's clock (seconds since it started).
	for _, ev := range []struct{ name, re string }{
		{"init runs", `\[\s*([0-9.]+)\] Run /init`},
		{"image printed", `up=([0-9.]+) level=INFO msg="step done" step="image name"`},
		{"modules loaded", `up=([0-9.]+) level=INFO msg="step done" step="kernel modules"`},
		{"dhcp lease", `up=([0-9.]+) level=INFO msg="dhcp lease"`},
		{"rc started", `up=([0-9.]+) level=INFO msg="rc: started"`},
	} {
		if m := regexp.MustCompile(ev.re).FindSubmatch(console); m != nil {
			t.Logf("%-15s at %ss", ev.name, m[1])
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s\ndnsmasq:\n%s", console, dnsOut.String())
	}
}
