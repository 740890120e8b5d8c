package dhcpd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInteropLoaders: busybox udhcpc, sending the options each kind of
// firmware sends (93 client architecture, 60 vendor class, 77 user class),
// against a real netbootd: each gets its boot loader in the BOOTP file
// field and option 67, and UEFI HTTP Boot gets a URL only while the node
// has a boot link, set and cleared through the AM as an operator would.
func TestInteropLoaders(t *testing.T) {
	l := newLab(t)
	srv, cli := l.netns("srv"), l.netns("cli")
	l.veth(srv, "srv0", cli, "cli0")
	l.addr(srv, "srv0", "10.18.0.1/16")
	l.ip("-n", cli, "link", "set", "cli0", "address", "00:03:1d:0c:01:02")
	l.ip("-n", cli, "link", "set", "cli0", "up")
	cfg := labConfig("srv0")
	cfg.BootfileEFI = "shimx64.efi"
	p := l.server(srv, cfg, "", labNodes...)
	if err := os.WriteFile(filepath.Join(p.root, "pxelinux.cfg", "orbit-2.0.0"), []byte("DEFAULT orbit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	udhcpc := func(extra ...string) map[string]string {
		t.Helper()
		return l.udhcpc(cli, "cli0", extra...)
	}
	am := func(method, body string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		token, err := os.ReadFile(filepath.Join(p.state, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"netns", "exec", srv, "curl", "-sS", "--fail-with-body", "-X", method,
			"-H", "Authorization: Bearer " + strings.TrimSpace(string(token)),
			"http://127.0.0.1:5054/api/v1/nodes/node1-2.sb8.orbit-lab.org/boot"}
		if body != "" {
			args = append(args, "-H", "Content-Type: application/json", "-d", body)
		}
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v: %s\nnetbootd:\n%s", method, err, out, p.out)
		}
	}
	needBinary(t, "curl", "curl")

	const http16 = "HTTPClient:Arch:00016:UNDI:003000"
	check := func(name, want string, extra ...string) {
		t.Helper()
		got := udhcpc(extra...)
		if got == nil {
			t.Fatalf("%s: no lease\nnetbootd:\n%s", name, p.out)
		}
		if got["ip"] != "10.18.1.2" || got["boot_file"] != want || got["bootfile"] != want {
			t.Errorf("%s: lease %v; want 10.18.1.2, file field and option 67 %q", name, got, want)
		}
	}
	check("BIOS PXE", "pxelinux.0", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	check("UEFI x86-64 PXE (7)", "shimx64.efi", "-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007")
	check("UEFI x86-64 PXE (9)", "shimx64.efi", "-V", "PXEClient:Arch:00009:UNDI:003000", "-x", "0x5d:0009")
	check("iPXE", "http://10.18.0.1:5054/ipxe/0A120102", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x4d:69505845")
	check("UEFI HTTP Boot, no link", "", "-V", http16, "-x", "0x5d:0010")
	am("PUT", `{"image":"orbit-2.0.0"}`)
	check("UEFI HTTP Boot, linked", "http://10.18.0.1:5054/boot/efi/orbit-2.0.0.img", "-V", http16, "-x", "0x5d:0010")
	check("BIOS PXE, linked: the same", "pxelinux.0", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	am("DELETE", "")
	check("UEFI HTTP Boot, link cleared", "", "-V", http16, "-x", "0x5d:0010")
}
