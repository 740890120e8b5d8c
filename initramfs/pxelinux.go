package initramfs

import (
	"fmt"
	"strings"
)

// DefaultAppend is the kernel command line the image's pxelinux config gives,
// before Options.Append: the serial console last, so that it is /dev/console
// (the init's and the RC's output) while the kernel also logs to the screen.
var DefaultAppend = []string{"console=tty0", "console=ttyS0,115200"}

// PXEConfig is the pxelinux config file of an image.
type PXEConfig struct {
	Kernel string   // file name relative to the TFTP root: linux-orbit-pxe-6.1.0-56-amd64
	Initrd string   // file name relative to the TFTP root: initramfs-orbit-pxe-2.0.0.gz
	Append []string // kernel arguments after initrd=
}

// Text renders the config in the seed's form (pxelinux.cfg/orbit-2.0.0 of
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
func (c PXEConfig) Text() string {
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
