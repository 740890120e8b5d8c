package vtestbed

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/testenv"
)

func TestBootSector(t *testing.T) {
	s, err := BootSector("VTESTBED OK node1-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != SectorSize || s[510] != 0x55 || s[511] != 0xAA {
		t.Fatalf("not a boot sector: %d bytes, signature %#x %#x", len(s), s[510], s[511])
	}
	addr := int(binary.LittleEndian.Uint16(s[msgAddrOffset:]))
	if s[msgAddrOffset-1] != 0xBE { // mov si, imm16
		t.Fatalf("byte before the message address is %#x, want 0xBE (mov si)", s[msgAddrOffset-1])
	}
	off := addr - loadAddress
	if off < len(bootCode) || off >= 510 {
		t.Fatalf("message address %#x is outside the sector's data", addr)
	}
	end := off + strings.IndexByte(string(s[off:]), 0)
	if got := string(s[off:end]); got != "VTESTBED OK node1-1\r\n" {
		t.Errorf("message %q", got)
	}
	// The code is the same whatever the message.
	if !slices.Equal(s[:msgAddrOffset], bootCode[:msgAddrOffset]) || !slices.Equal(s[msgAddrOffset+2:len(bootCode)], bootCode[msgAddrOffset+2:]) {
		t.Error("the code around the message address changed")
	}

	long := strings.Repeat("x", 463)
	if _, err := BootSector(long); err != nil {
		t.Errorf("463 bytes: %v", err)
	}
	for _, bad := range []string{long + "x", "tab\there", "non-ascii é"} {
		if _, err := BootSector(bad); err == nil {
			t.Errorf("BootSector(%.20q...) = nil error", bad)
		}
	}
}

func TestWriteDisk(t *testing.T) {
	dir := t.TempDir()
	s, _ := BootSector("x")
	p := filepath.Join(dir, "d.raw")
	if err := WriteDisk(p, 1<<20, s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1<<20 || !slices.Equal(b[:SectorSize], s) {
		t.Errorf("disk: %d bytes, boot sector there: %v", len(b), slices.Equal(b[:SectorSize], s))
	}
	if err := WriteDisk(filepath.Join(dir, "blank.raw"), 4096, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "blank.raw")); len(b) != 4096 || b[510] != 0 {
		t.Errorf("blank disk: %d bytes, byte 510 %#x", len(b), b[510])
	}
	if err := WriteDisk(filepath.Join(dir, "tiny"), 100, nil); err == nil {
		t.Error("a disk smaller than a sector was made")
	}
}

func TestNewNode(t *testing.T) {
	want := Node{HRN: "node1-18.vtb.orbit-lab.org", Hostname: "node1-18", IP: netip.MustParseAddr("10.18.1.18"), MAC: "52:54:00:18:01:12", NIC: E1000}
	n := NewNode(18, E1000)
	if diff := cmp.Diff(want, n, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("NewNode(18) (-want +got):\n%s", diff)
	}
	if got := n.Hex(); got != "0A120112" {
		t.Errorf("Hex = %s, want 0A120112", got)
	}
}

func TestQEMUArgs(t *testing.T) {
	n := NewNode(2, VirtioNet)
	n.Tap = "tap1"
	got := strings.Join(QEMUArgs(n, BootOptions{Order: "nc", Memory: 256, Extra: []string{"-cpu", "max"}}, "/s.log", "/q.sock", "/d.raw"), " ")
	for _, want := range []string{
		"-m 256", "-no-reboot -S", "-serial file:/s.log", "-qmp unix:/q.sock,server=on,wait=off",
		"-netdev tap,id=n0,ifname=tap1,script=no,downscript=no", "-device virtio-net-pci,netdev=n0,mac=52:54:00:18:01:02",
		"-drive file=/d.raw,format=raw,if=ide,index=0,media=disk", "-boot order=nc,reboot-timeout=1000", "-cpu max",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "enable-kvm") || strings.Contains(got, "accel=kvm") {
		t.Errorf("QEMU args ask for KVM: %s", got)
	}
	// A UEFI machine: OVMF with Secure Boot, the NIC without its option
	// ROM first in the firmware's boot order, then the disk, IPv6 off.
	uefi := strings.Join(QEMUArgs(n, BootOptions{UEFI: &UEFI{SecureBoot: true}, Memory: 512, Order: "nc"}, "/s.log", "/q.sock", "/d/node1-2.disk.raw"), " ")
	for _, want := range []string{
		"-machine q35,smm=on", "-global driver=cfi.pflash01,property=secure,value=on",
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode, "-drive if=pflash,format=raw,unit=1,file=/d/node1-2.vars.fd",
		"-device virtio-net-pci,romfile=,netdev=n0,mac=52:54:00:18:01:02,bootindex=1",
		"-drive file=/d/node1-2.disk.raw,format=raw,if=none,id=disk0 -device ide-hd,drive=disk0,bootindex=2",
		"-fw_cfg name=opt/org.tianocore/IPv6Support,string=n",
	} {
		if !strings.Contains(uefi, want) {
			t.Errorf("UEFI QEMU args lack %q:\n%s", want, uefi)
		}
	}
	if strings.Contains(uefi, "-boot ") {
		t.Errorf("UEFI QEMU args have a -boot order (the firmware's is bootindex): %s", uefi)
	}
	// A machine whose power is the AM's reboots, and stays after a power-off.
	am := strings.Join(QEMUArgs(n, BootOptions{Order: "nc", Memory: 256, AMPower: true}, "/s.log", "/q.sock", "/d.raw"), " ")
	if !strings.Contains(am, "-no-shutdown -S") || strings.Contains(am, "-no-reboot") {
		t.Errorf("AMPower QEMU args: want -no-shutdown and no -no-reboot:\n%s", am)
	}
}

func TestDnsmasqArgs(t *testing.T) {
	nodes := []Node{NewNode(1, E1000), NewNode(2, VirtioNet)}
	plain := strings.Join(DnsmasqArgs(nodes, DnsmasqBoot{Root: "/tftp", State: "/state"}), " ")
	for _, want := range []string{
		"--interface=br0 --bind-interfaces", "--dhcp-range=10.18.0.0,static,255.255.0.0,1h",
		"--dhcp-boot=tag:!efi64,tag:!efihttp,pxelinux.0", "--dhcp-boot=tag:efi64,tag:!efihttp,shimx64.efi",
		"--enable-tftp --tftp-root=/tftp", "--dhcp-host=52:54:00:18:01:01,set:node1-1,10.18.1.1,node1-1",
		"--dhcp-host=52:54:00:18:01:02,set:node1-2,10.18.1.2,node1-2", "--port=0",
	} {
		if !strings.Contains(plain, want) {
			t.Errorf("dnsmasq args lack %q:\n%s", want, plain)
		}
	}
	if strings.Contains(plain, "encap:175") || strings.Contains(plain, "enable-ra") || strings.Contains(plain, "http://") || strings.Contains(plain, ",60,") {
		t.Errorf("plain dnsmasq has the iPXE or HTTP Boot options: %s", plain)
	}
	ipxe := strings.Join(DnsmasqArgs(nodes, DnsmasqBoot{Root: "/tftp", State: "/state", IPXEFast: true, IPXEScript: true, HTTPBoot: "efi/x.img"}), " ")
	for _, want := range []string{
		"--dhcp-option-force=encap:175,176,1b", "--enable-ra", "ra-only", "--ra-param=br0,60,0",
		"--dhcp-boot=tag:!efi64,tag:!efihttp,tag:!ipxe,pxelinux.0",
		"--dhcp-boot=tag:ipxe,tag:!efi64,tag:!efihttp,tag:node1-2,http://10.18.0.1/ipxe/0A120102",
		"--dhcp-option-force=tag:efihttp,60,HTTPClient", "--dhcp-boot=tag:efihttp,http://10.18.0.1/efi/x.img",
	} {
		if !strings.Contains(ipxe, want) {
			t.Errorf("dnsmasq-ipxe args lack %q:\n%s", want, ipxe)
		}
	}
}

// TestSiteDnsmasqArgs: the site's server beside a proxy hands out the
// reservations with itself as router, and nothing about booting.
func TestSiteDnsmasqArgs(t *testing.T) {
	args := strings.Join(SiteDnsmasqArgs([]Node{NewNode(1, E1000)}, "site0", "/state"), " ")
	for _, want := range []string{
		"--interface=site0 --bind-interfaces", "--dhcp-range=10.18.0.0,static,255.255.0.0,1h",
		"--dhcp-option=option:router,10.18.0.2", "--dhcp-host=52:54:00:18:01:01,10.18.1.1,node1-1", "--port=0",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("site dnsmasq args lack %q:\n%s", want, args)
		}
	}
	for _, not := range []string{"dhcp-boot", "tftp", "175"} {
		if strings.Contains(args, not) {
			t.Errorf("site dnsmasq args have %q, the proxy's part:\n%s", not, args)
		}
	}
}

func TestInOrder(t *testing.T) {
	at := time.Unix(0, 0)
	ev := func(src, what, detail string) Event { return Event{At: at, Source: src, What: what, Detail: detail} }
	img := Image{Name: "orbit-2.0.0", Kernel: "linux-orbit-pxe-6.1.0-56-amd64", Initrd: "initramfs-orbit-pxe-2.0.0.gz"}
	n := NewNode(1, E1000)
	good := []Event{
		ev("dhcp", "DHCPOFFER", ""), ev("dhcp", "DHCPACK", ""),
		ev("tftp", "pxelinux.0", "failed after 0 bytes: tsize probe"), // not a fetch
		ev("tftp", "pxelinux.0", "42430 bytes"), ev("tftp", "ldlinux.c32", ""),
		ev("tftp", "pxelinux.cfg/0A120101", ""), ev("tftp", img.Kernel, ""), ev("tftp", img.Initrd, ""),
		ev("dhcp", "DHCPOFFER", ""), ev("dhcp", "DHCPACK", ""), ev("rc", "enrolled", "orbit-2.0.0"),
	}
	found, err := InOrder(good, NetbootSteps(n, img)...)
	if err != nil {
		t.Fatal(err)
	}
	var whats []string
	for _, e := range found {
		whats = append(whats, e.Source+" "+e.What+" "+e.Detail)
	}
	want := []string{"dhcp DHCPOFFER ", "dhcp DHCPACK ", "tftp pxelinux.0 42430 bytes", "tftp ldlinux.c32 ",
		"tftp pxelinux.cfg/0A120101 ", "tftp " + img.Kernel + " ", "tftp " + img.Initrd + " ", "dhcp DHCPACK "}
	if diff := cmp.Diff(want, whats); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}

	for name, evs := range map[string][]Event{
		"kernel before config": {ev("dhcp", "DHCPOFFER", ""), ev("dhcp", "DHCPACK", ""), ev("tftp", "pxelinux.0", ""), ev("tftp", "ldlinux.c32", ""),
			ev("tftp", img.Kernel, ""), ev("tftp", "pxelinux.cfg/0A120101", ""), ev("tftp", img.Initrd, ""), ev("dhcp", "DHCPACK", "")},
		"another node's config": {ev("dhcp", "DHCPOFFER", ""), ev("dhcp", "DHCPACK", ""), ev("tftp", "pxelinux.0", ""), ev("tftp", "ldlinux.c32", ""),
			ev("tftp", "pxelinux.cfg/0A120102", ""), ev("tftp", img.Kernel, ""), ev("tftp", img.Initrd, ""), ev("dhcp", "DHCPACK", "")},
		"initramfs failed": {ev("dhcp", "DHCPOFFER", ""), ev("dhcp", "DHCPACK", ""), ev("tftp", "pxelinux.0", ""), ev("tftp", "ldlinux.c32", ""),
			ev("tftp", "pxelinux.cfg/0A120101", ""), ev("tftp", img.Kernel, ""), ev("tftp", img.Initrd, "failed after 1408 bytes: timeout"), ev("dhcp", "DHCPACK", "")},
		"empty": nil,
	} {
		if _, err := InOrder(evs, NetbootSteps(n, img)...); err == nil {
			t.Errorf("%s: InOrder found every step", name)
		}
	}
	if _, err := InOrder(good[:6], LocalbootSteps()...); err == nil {
		t.Error("a timeline without pxelinux.cfg/default passed LocalbootSteps")
	}
}

func TestConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := NewConsole(path)
	c.Poll = 5 * time.Millisecond
	c.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	before := time.Now()
	if _, err := io.WriteString(f, "SeaBIOS\r\n[    2.5] Run /init as "); err != nil {
		t.Fatal(err)
	}
	// Once the console has read the unfinished line, it must not match.
	for !strings.HasSuffix(c.Text(), "Run /init as ") {
		if ctx.Err() != nil {
			t.Fatalf("the console did not read the unfinished line: %q", c.Text())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := c.Find(regexp.MustCompile(`Run /init`)); ok {
		t.Error("an unfinished line was found")
	}
	if _, err := io.WriteString(f, "init process\r\norbit-2.0.0\r\nlast words"); err != nil {
		t.Fatal(err)
	}
	l, err := c.Wait(ctx, regexp.MustCompile(`Run /init as init process`))
	if err != nil {
		t.Fatal(err)
	}
	if l.At.Before(before) || l.Text != "[    2.5] Run /init as init process" {
		t.Errorf("line %+v", l)
	}
	if _, err := c.WaitLine(ctx, "orbit-2.0.0"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Find(regexp.MustCompile(`^orbit-2\.0$`)); ok {
		t.Error("a prefix matched a whole line")
	}
	c.Stop()
	if got := c.Lines(); len(got) != 4 || got[3].Text != "last words" {
		t.Errorf("after Stop, the unfinished line is not a line: %+v", got)
	}
	if _, err := c.Wait(ctx, regexp.MustCompile(`never`)); !errors.Is(err, ErrConsoleStopped) {
		t.Errorf("Wait on a stopped console: %v", err)
	}
	if got, want := c.Text(), "SeaBIOS\n[    2.5] Run /init as init process\norbit-2.0.0\nlast words\n"; got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
	c.Stop() // twice is fine
}

func TestProgram(t *testing.T) {
	var out strings.Builder
	var order []string
	err := RunProgram("p/1", &out, func(tb testing.TB) {
		tb.Cleanup(func() { order = append(order, "first") })
		tb.Cleanup(func() { order = append(order, "second") })
		dir := tb.TempDir()
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("TempDir: %v", err)
		}
		tb.Logf("hello %d", 1)
		tb.Fatalf("stop here")
		order = append(order, "after Fatal")
	})
	if err == nil || errors.Is(err, ErrSkipped) {
		t.Errorf("RunProgram after Fatal: %v", err)
	}
	if !slices.Equal(order, []string{"second", "first"}) {
		t.Errorf("cleanups ran %v", order)
	}
	if !strings.Contains(out.String(), "p/1: hello 1") || !strings.Contains(out.String(), "stop here") {
		t.Errorf("log %q", out.String())
	}
	if err := RunProgram("p/2", io.Discard, func(tb testing.TB) { tb.Skip("no qemu") }); !errors.Is(err, ErrSkipped) {
		t.Errorf("Skip: %v", err)
	}
	if err := RunProgram("p/3", io.Discard, func(tb testing.TB) { tb.Errorf("soft") }); err == nil {
		t.Error("Errorf did not fail the program")
	}
	if err := RunProgram("p/4", io.Discard, func(tb testing.TB) {}); err != nil {
		t.Errorf("a clean run: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("a foreign panic was not passed on: %v", r)
			}
		}()
		err := RunProgram("p/5", io.Discard, func(tb testing.TB) { panic("boom") })
		t.Errorf("RunProgram returned %v: it swallowed a foreign panic", err)
	}()
}

func TestArtifactsPath(t *testing.T) {
	t.Setenv(ArtifactsEnv, "/tmp/arts")
	t.Run("sub test/x", func(t *testing.T) {
		if got, want := artifactsPath(t, "/root"), "/tmp/arts/TestArtifactsPath/sub_test/x"; got != want {
			t.Errorf("artifactsPath = %s, want %s", got, want)
		}
	})
	t.Setenv(ArtifactsEnv, "")
	if got, want := artifactsPath(t, "/r"), "/r/.cache/qemu-artifacts/TestArtifactsPath"; got != want {
		t.Errorf("artifactsPath = %s, want %s", got, want)
	}
}

func TestESPDisk(t *testing.T) {
	for _, tool := range []string{"mformat", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "needs %s (apt-get install mtools)", tool)
		}
	}
	files := map[string][]byte{"EFI/BOOT/BOOTX64.EFI": []byte("MZ not really"), "EFI/debian/grub.cfg": []byte("echo hi\n")}
	const size = 8 << 20
	disk, err := ESPDisk(size, files)
	if err != nil {
		t.Fatal(err)
	}
	if len(disk) != size {
		t.Fatalf("%d bytes, want %d", len(disk), size)
	}
	if disk[446+4] != 0xEE || disk[510] != 0x55 || disk[511] != 0xAA {
		t.Errorf("no protective MBR: type %#x, signature %#x %#x", disk[446+4], disk[510], disk[511])
	}
	last := int64(size/gptSector - 1)
	for _, h := range []struct {
		name        string
		lba, tbl    int64
		other       int64
		headerBytes []byte
	}{
		{"primary", 1, 2, last, disk[gptSector : 2*gptSector]},
		{"backup", last, last - 32, 1, disk[last*gptSector:]},
	} {
		b := h.headerBytes[:92]
		if string(b[:8]) != "EFI PART" {
			t.Fatalf("%s GPT header: signature %q", h.name, b[:8])
		}
		crc := binary.LittleEndian.Uint32(b[16:])
		c := slices.Clone(b)
		binary.LittleEndian.PutUint32(c[16:], 0)
		if crc32.ChecksumIEEE(c) != crc {
			t.Errorf("%s GPT header: bad CRC", h.name)
		}
		if self, other, tbl := int64(binary.LittleEndian.Uint64(b[24:])), int64(binary.LittleEndian.Uint64(b[32:])), int64(binary.LittleEndian.Uint64(b[72:])); self != h.lba || other != h.other || tbl != h.tbl {
			t.Errorf("%s GPT header: LBAs self %d other %d table %d; want %d %d %d", h.name, self, other, tbl, h.lba, h.other, h.tbl)
		}
		table := disk[h.tbl*gptSector : h.tbl*gptSector+128*128]
		if crc32.ChecksumIEEE(table) != binary.LittleEndian.Uint32(b[88:]) {
			t.Errorf("%s partition table: bad CRC", h.name)
		}
		if !bytes.Equal(table[:16], espType[:]) || binary.LittleEndian.Uint64(table[32:]) != espStart/gptSector {
			t.Errorf("%s partition table: first entry is not the ESP at 1 MiB", h.name)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mtype", "-i", img+"@@1M", "::EFI/debian/grub.cfg").CombinedOutput()
	if err != nil || string(out) != "echo hi\n" {
		t.Errorf("mtype EFI/debian/grub.cfg from the partition: %q, %v", out, err)
	}
	if _, err := ESPDisk(3<<20, files); err == nil {
		t.Error("a 3 MiB ESP disk was made")
	}
}
