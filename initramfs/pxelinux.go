package initramfs

import (
	"fmt"
	"path"
	"strings"
)

// DefaultAppend is the kernel command line the image's boot configs give,
// before Options.Append: the serial console last, so that it is /dev/console
// (the init's and the RC's output) while the kernel also logs to the screen.
var DefaultAppend = []string{"console=tty0", "console=ttyS0,115200"}

// BootEntry is the one description of how an image boots: kernel, initrd
// and command line. Each boot loader's config is rendered from it (Text
// for pxelinux, GRUB, IPXE), so they cannot drift apart.
type BootEntry struct {
	Kernel string   // file name relative to the TFTP root: linux-orbit-pxe-6.1.0-56-amd64
	Initrd string   // file name relative to the TFTP root: initramfs-orbit-pxe-2.0.0.gz
	Append []string // kernel arguments after initrd=
}

// Text renders the pxelinux config:  the config in the seed's form (pxelinux.cfg/orbit-2.0.0 of
// the OMF PXE Aggregate Manager) without its DISPLAY line (no message.txt is
// served) and with IPAPPEND 3, which makes pxelinux add BOOTIF=01-<mac> (2),
// so that the init knows the interface the node booted from, and
// ip=<client>:<boot server>:<gateway>:<netmask> (1), so that the RC knows
// the appliance: the boot server is the TFTP server pxelinux loaded the
// kernel from, also when another DHCP server gave the node its address
// (dhcp.mode: proxy), where the DHCP next-server is not the appliance. The
// kernel does not act on ip= (Debian's has no CONFIG_IP_PNP) and the init
// does its own DHCP. PROMPT 0 boots at once.
// The seed's "rw init=/sbin/init" is not needed: the kernel runs /init of the
// initramfs (and /sbin/init links to it).
func (c BootEntry) Text() string {
	args := append([]string{"initrd=" + c.Initrd}, c.Append...)
	var b strings.Builder
	fmt.Fprintf(&b, "DEFAULT orbit\n")
	fmt.Fprintf(&b, "PROMPT 0\n")
	fmt.Fprintf(&b, "TIMEOUT 1\n")
	fmt.Fprintf(&b, "LABEL orbit\n")
	fmt.Fprintf(&b, "  KERNEL %s\n", c.Kernel)
	fmt.Fprintf(&b, "  APPEND %s\n", strings.Join(args, " "))
	fmt.Fprintf(&b, "  IPAPPEND 3\n")
	return b.String()
}

// checkAppend rejects kernel arguments that would break the config file or
// the command line.
func checkAppend(args []string) error {
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\r\n\x00") {
			return fmt.Errorf("kernel argument %q: empty or with white space", a)
		}
		if strings.HasPrefix(a, "initrd=") {
			return fmt.Errorf("kernel argument %q: initrd= is set by the builder", a)
		}
	}
	return nil
}

// GRUB renders the image's GRUB config (grub/<image>.cfg, the template of
// the nodes' grub/grub.cfg-<HEX> links), for Debian's signed network GRUB:
// paths from the TFTP root it was loaded from, no initrd= (GRUB hands the
// initrd over itself; the kernel's EFI stub would look for that file on a
// disk). GRUB has no IPAPPEND, so the equivalents are written from its
// network variables: BOOTIF=01-<mac> (colons, which the init accepts) and
// ip=<client>:<boot server>:0.0.0.0:0.0.0.0, whose boot server is the
// TFTP server GRUB loaded this file from, as with pxelinux (GRUB knows no
// gateway or netmask; the RC reads only the boot server).
func (c BootEntry) GRUB() string {
	return c.grubMenu(append(append([]string{}, c.Append...),
		"BOOTIF=01-${net_default_mac}", "ip=${net_default_ip}:${net_default_server}:0.0.0.0:0.0.0.0"))
}

// grubMenu is the one GRUB menu entry, with these kernel arguments,
// booted at once; paths are from GRUB's root.
func (c BootEntry) grubMenu(args []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set timeout=0\n")
	fmt.Fprintf(&b, "set default=orbit\n")
	fmt.Fprintf(&b, "menuentry orbit --id orbit {\n")
	fmt.Fprintf(&b, "  linux /%s %s\n", c.Kernel, strings.Join(args, " "))
	fmt.Fprintf(&b, "  initrd /%s\n", c.Initrd)
	fmt.Fprintf(&b, "}\n")
	return b.String()
}

// RAMDiskGRUB renders the GRUB config of the image's UEFI HTTP Boot RAM
// disk (EFI/debian/grub.cfg inside efi/<image>.img). Debian's signed
// grubx64.efi, loaded by shim from the RAM disk, takes that disk as its
// root and /EFI/debian as its prefix, so the kernel and initramfs are
// files of the disk. GRUB did no network configuration of its own there,
// so its network variables are empty: no BOOTIF= and no ip= (the init
// then picks the interface with carrier, and the RC finds the appliance
// from orbit.am= or the DHCP next-server).
func (c BootEntry) RAMDiskGRUB() string { return c.grubMenu(c.Append) }

// IPXE renders the image's iPXE entry (ipxe/<image>.ipxe): the body of
// the script the AM serves a linked node, after its "#!ipxe" and a "set
// base" naming where tftp_root is over HTTP, so kernel and initramfs come
// over HTTP. initrd= names the initrd as iPXE does (by its file name) for
// EFI kernels; BOOTIF= and ip= are pxelinux's IPAPPEND 3 from iPXE's
// settings. The boot server is ${appliance}, which the AM's script sets to
// the address iPXE fetched it from: ${next-server} would be the site's
// DHCP server's in proxy mode. The gateway is left 0.0.0.0 (the RC reads
// only the boot server, and iPXE may have none to give).
func (c BootEntry) IPXE() string {
	args := append([]string{"initrd=" + path.Base(c.Initrd)}, c.Append...)
	args = append(args, "BOOTIF=01-${netX/mac:hexhyp}", "ip=${netX/ip}:${appliance}:0.0.0.0:${netX/netmask}")
	var b strings.Builder
	fmt.Fprintf(&b, "kernel ${base}%s %s\n", c.Kernel, strings.Join(args, " "))
	fmt.Fprintf(&b, "initrd ${base}%s\n", c.Initrd)
	fmt.Fprintf(&b, "boot\n")
	return b.String()
}
