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
}

// loaderChoice is the boot file and how to send it.
type loaderChoice struct {
	file       string // "" is no boot file
	httpClient bool   // echo option 60 "HTTPClient" (UEFI HTTP Boot)
	kind       string // for the event: bios, shim, ipxe-efi, ipxe-script, http, aa64, override
}

// chooseLoader is the whole boot-loader decision, first match wins:
// the inventory's per-node file, iPXE's script, UEFI HTTP Boot (a URL
// while the node has a link), UEFI PXE by architecture, else BIOS.
func (l Config) chooseLoader(r loaderRequest) loaderChoice {
	c := r.client
	switch {
	case r.override != "":
		return loaderChoice{file: r.override, kind: "override", httpClient: c.http}
	case c.ipxe && l.IPXEScript != "" && r.hex != "":
		return loaderChoice{file: l.IPXEScript + r.hex, kind: "ipxe-script"}
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

// isHTTPClient says whether a request is UEFI HTTP Boot: option 93 names
// an HTTP architecture or option 60 starts with "HTTPClient".
func isHTTPClient(arch int, vendor string) bool {
	return arch == archEFIx8664HTTP || arch == archEFIARM64HTTP || strings.HasPrefix(vendor, vendorHTTPClient)
}
