package vtestbed

import (
	"fmt"
	"regexp"
	"strings"
)

// Step is what an event on a timeline must look like.
type Step struct {
	Name   string         // for messages: "kernel"
	Source string         // dhcp, tftp, ...
	What   *regexp.Regexp // matched against Event.What
}

func (s Step) matches(e Event) bool {
	if e.Source != s.Source || !s.What.MatchString(e.What) {
		return false
	}
	// A TFTP transfer that failed (e.g. a tsize probe the client ended)
	// is not the file being fetched.
	return s.Source != "tftp" || !strings.HasPrefix(e.Detail, "failed")
}

// InOrder finds the steps on a timeline in order: for each, the first
// matching event after the previous step's. It returns the events found,
// one per step, or an error naming the first step missing.
func InOrder(evs []Event, steps ...Step) ([]Event, error) {
	var found []Event
	i := 0
	for _, s := range steps {
		for i < len(evs) && !s.matches(evs[i]) {
			i++
		}
		if i == len(evs) {
			return found, fmt.Errorf("timeline lacks %s (%s %s) after %d steps found", s.Name, s.Source, s.What, len(found))
		}
		found = append(found, evs[i])
		i++
	}
	return found, nil
}

// NetbootSteps are the steps of a node netbooting an image: DHCP from
// iPXE, pxelinux.0, ldlinux.c32, the node's hex-named config, the kernel
// and the initramfs, then the init's own DHCP.
func NetbootSteps(n Node, img Image) []Step {
	q := regexp.QuoteMeta
	return []Step{
		{"DHCP offer", "dhcp", regexp.MustCompile(`^DHCPOFFER$`)},
		{"DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
		{"pxelinux.0", "tftp", regexp.MustCompile(`^pxelinux\.0$`)},
		{"ldlinux.c32", "tftp", regexp.MustCompile(`^ldlinux\.c32$`)},
		{"config " + n.Hex(), "tftp", regexp.MustCompile(`^pxelinux\.cfg/` + n.Hex() + `$`)},
		{"kernel", "tftp", regexp.MustCompile(`^` + q(img.Kernel) + `$`)},
		{"initramfs", "tftp", regexp.MustCompile(`^` + q(img.Initrd) + `$`)},
		{"init's DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
	}
}

// IPXEScriptSteps are the steps of an iPXE node booting an image through
// its per-node script: DHCP, the script, kernel and initramfs over HTTP,
// then the init's own DHCP.
func IPXEScriptSteps(img Image) []Step {
	q := regexp.QuoteMeta
	return []Step{
		{"DHCP offer", "dhcp", regexp.MustCompile(`^DHCPOFFER$`)},
		{"DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
		{"iPXE script", "http", regexp.MustCompile(`^IPXE$`)},
		{"kernel", "http", regexp.MustCompile(`^` + q(img.Kernel) + `$`)},
		{"initramfs", "http", regexp.MustCompile(`^` + q(img.Initrd) + `$`)},
		{"init's DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
	}
}

// UEFIShimSteps are the steps of a UEFI node netbooting an image through
// Debian's signed chain: DHCP, shim, its GRUB (grubx64.efi), the node's
// hex-named GRUB config, the kernel and the initramfs over TFTP (GRUB under
// Secure Boot cannot use HTTP), then the init's own DHCP.
func UEFIShimSteps(n Node, img Image) []Step {
	q := regexp.QuoteMeta
	return []Step{
		{"DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
		{"shim", "tftp", regexp.MustCompile(`^shimx64\.efi$`)},
		{"GRUB", "tftp", regexp.MustCompile(`^grubx64\.efi$`)},
		{"GRUB config " + n.Hex(), "tftp", regexp.MustCompile(`^grub/grub\.cfg-` + n.Hex() + `$`)},
		{"kernel", "tftp", regexp.MustCompile(`^` + q(img.Kernel) + `$`)},
		{"initramfs", "tftp", regexp.MustCompile(`^` + q(img.Initrd) + `$`)},
		{"init's DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
	}
}

// UEFIHTTPBootSteps are the steps of a UEFI HTTP Boot node booting an
// image's RAM disk: DHCP, the RAM disk over HTTP (shim, GRUB, kernel and
// initramfs are in it: nothing more over the network), then the init's
// own DHCP.
func UEFIHTTPBootSteps(img Image) []Step {
	return []Step{
		{"DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
		{"RAM disk", "http", regexp.MustCompile(`^` + regexp.QuoteMeta(img.EFIImg) + `$`)},
		{"init's DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
	}
}

// LocalbootSteps are the steps of a node with no boot link: DHCP,
// pxelinux.0, ldlinux.c32 and pxelinux.cfg/default (LOCALBOOT 0).
func LocalbootSteps() []Step {
	return []Step{
		{"DHCP offer", "dhcp", regexp.MustCompile(`^DHCPOFFER$`)},
		{"DHCP ack", "dhcp", regexp.MustCompile(`^DHCPACK$`)},
		{"pxelinux.0", "tftp", regexp.MustCompile(`^pxelinux\.0$`)},
		{"ldlinux.c32", "tftp", regexp.MustCompile(`^ldlinux\.c32$`)},
		{"config default", "tftp", regexp.MustCompile(`^pxelinux\.cfg/default$`)},
	}
}

// EnrolledStep is the RC's enrollment with the appliance's broker.
var EnrolledStep = Step{"RC enrolled", "rc", regexp.MustCompile(`^enrolled$`)}
