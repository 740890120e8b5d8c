package dhcpd

import (
	"strings"
)

// Client architectures (option 93, RFC 4578 and IANA's registry).
const (
	archEFIIA32      = 6
	archEFIBC        = 7
	archEFIx8664     = 9
	archEFIARM64     = 11
	archEFIx8664HTTP = 16
	archEFIARM64HTTP = 19
)

// NoLinkFile is the boot file of a UEFI node without a boot link: a name
// that is never in tftp_root, so that the firmware's TFTP or HTTP read
// fails at once (see chooseLoader).
const NoLinkFile = "no-boot-link.efi"

// Values of Config.UEFILoader, and the vendor class of UEFI HTTP Boot.
const (
	UEFILoaderShim   = "shim"
	UEFILoaderIPXE   = "ipxe"
	vendorHTTPClient = "HTTPClient"
)

// loaderRequest is what the loader choice depends on, gathered by
// bootOptions: the client's firmware, the inventory's override, and (for
// the paths that follow the link) the node's hex IP and linked image.
type loaderRequest struct {
	client   clientInfo
	override string // the node's inventory bootfile; wins over all
	hex      string // the client's address as pxelinux names it; "" if unknown
	httpFile string // for HTTP Boot: the file of tftp_root the node's link boots; "" no link
	// unlinked: the client is a node of the inventory and has no boot
	// link (asked for UEFI PXE and HTTP Boot clients only).
	unlinked bool
}

// loaderChoice is the boot file and how to send it.
type loaderChoice struct {
	file       string // "" is no boot file
	httpClient bool   // echo option 60 "HTTPClient" (UEFI HTTP Boot)
	kind       string // for the event: bios, shim, ipxe-efi, ipxe-script, http, aa64, override, localboot
}

// chooseLoader is the whole boot-loader decision, first match wins:
// the inventory's per-node file, iPXE's script, UEFI HTTP Boot (the
// linked image's URL), UEFI PXE by architecture, else BIOS; UEFI nodes
// without a link get NoLinkFile.
//
// A UEFI PXE or HTTP Boot node of the inventory without a link gets
// NoLinkFile (kind localboot; over HTTP, its URL), which is not in
// tftp_root: the firmware's boot entry fails at its first read and the
// firmware goes on to its next one, the disk. Shim would not do: GRUB can
// only leave netboot with "exit", and Debian's GRUB 2.06 exits with
// EFI_SUCCESS whatever the code, which a UEFI boot manager takes as "the
// boot option ran" (UEFI 2.10, 3.1.1): OVMF then opens its menu and stays
// there. No boot file at all would do, but slowly: EDK2 retries DHCP four
// times for an offer with a file (74 s under TCG) before it gives up, and
// as long again for HTTP Boot. BIOS nodes need none of this: pxelinux's
// LOCALBOOT hands back to the BIOS.
func (l Config) chooseLoader(r loaderRequest) loaderChoice {
	c := r.client
	switch {
	case r.override != "":
		return loaderChoice{file: r.override, kind: "override", httpClient: c.http}
	case c.ipxe && l.IPXEScript != "" && r.hex != "":
		return loaderChoice{file: l.IPXEScript + r.hex, kind: "ipxe-script"}
	case c.http && r.unlinked && l.HTTPBoot != "":
		return loaderChoice{file: l.HTTPBoot + NoLinkFile, httpClient: true, kind: "localboot"}
	case c.http:
		file := ""
		switch {
		case c.arch == archEFIARM64HTTP && l.BootfileAA64 != "" && l.HTTPBoot != "" && r.httpFile != "":
			file = l.HTTPBoot + l.BootfileAA64
		case c.arch != archEFIARM64HTTP && l.HTTPBoot != "" && r.httpFile != "":
			file = l.HTTPBoot + r.httpFile
		}
		return loaderChoice{file: file, httpClient: true, kind: "http"}
	}
	if r.unlinked && isUEFIPXE(c.arch) {
		return loaderChoice{file: NoLinkFile, kind: "localboot"}
	}
	switch c.arch {
	case archEFIx8664, archEFIBC, archEFIIA32:
		if l.UEFILoader == UEFILoaderIPXE && c.arch != archEFIIA32 {
			return loaderChoice{file: l.BootfileIPXEEFI, kind: "ipxe-efi"}
		}
		return loaderChoice{file: l.BootfileEFI, kind: "shim"}
	case archEFIARM64:
		return loaderChoice{file: l.BootfileAA64, kind: "aa64"}
	}
	return loaderChoice{file: l.Bootfile, kind: "bios"}
}

// isUEFIPXE says whether option 93 names a UEFI PXE client (the firmware's
// own PXE, not HTTP Boot).
func isUEFIPXE(arch int) bool {
	switch arch {
	case archEFIIA32, archEFIBC, archEFIx8664, archEFIARM64:
		return true
	}
	return false
}

// isHTTPClient says whether a request is UEFI HTTP Boot: option 93 names
// an HTTP architecture or option 60 starts with "HTTPClient".
func isHTTPClient(arch int, vendor string) bool {
	return arch == archEFIx8664HTTP || arch == archEFIARM64HTTP || strings.HasPrefix(vendor, vendorHTTPClient)
}
