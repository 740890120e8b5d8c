package dhcpd

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/internal/iprange"
	"github.com/orbit-lab/netboot/internal/metrics"
)

// Mode says what the server hands out.
type Mode string

const (
	// ModeServer answers with addresses (reservations, pool) and boot info.
	ModeServer Mode = "server"
	// ModeProxy answers PXE clients with boot info only (no address), on
	// ports 67 and 4011, beside a DHCP server that owns the addresses.
	ModeProxy Mode = "proxy"
)

// DefaultWorkers is the worker count when Config.Workers is 0.
const DefaultWorkers = 8

// Config configures the server. netbootd fills it from its configuration
// file's dhcp section, which has been parsed and checked by then; New
// checks it again only for what the server relies on.
type Config struct {
	Interface   string        // the one interface served (SO_BINDTODEVICE); the RA responder runs on it too
	ServerIP    netip.Addr    // option 54, siaddr (next-server), option 66
	Subnet      Subnet        // the interface's own segment (requests with giaddr 0)
	Subnets     []Subnet      // segments behind relays, chosen by giaddr
	DNS         []netip.Addr  // option 6
	Domain      string        // option 15 for clients whose hrn does not name one (see domainFor)
	LeaseTime   time.Duration // option 51; T1 (58) and T2 (59) are 1/2 and 7/8 of it
	Bootfile    string        // file and option 67 for BIOS clients (option 93 = 0) and unknown arches
	BootfileEFI string        // for UEFI PXE clients (option 93 = 6, 7, 9); "" means Bootfile
	// BootfileIPXEEFI is for UEFI x86-64 PXE clients when UEFILoader is
	// "ipxe" (nodes without Secure Boot): snponly.efi.
	BootfileIPXEEFI string
	UEFILoader      string // "shim" ("" too) or "ipxe"
	// BootfileAA64 is for UEFI arm64 clients (option 93 = 11; 19 over
	// HTTP); "": they get no boot file.
	BootfileAA64 string
	// IPXEScript is the URL of the per-node iPXE scripts, ending in '/':
	// iPXE clients get it followed by their hex IP. "": they get the file
	// for their architecture.
	IPXEScript string
	// HTTPBoot is the URL of tftp_root over HTTP, ending in '/': UEFI HTTP
	// Boot clients with a boot link get it followed by their image's
	// imagename.HTTPBootImage. "": they get no boot file.
	HTTPBoot string
	// BootRoot is tftp_root on disk: when set, an HTTP Boot client is
	// handed its linked image's RAM disk only if the image has one (built
	// with nbctl image build --efi-img), so that a node linked to an image
	// without it moves on to its next boot entry at once, with the reason
	// on its timeline, rather than after a 404. "": not checked.
	BootRoot string
	IPXEFast bool // option 175.176 = 1 to iPXE clients, and the RA responder
	Mode     Mode // "" means ModeServer
	Workers  int  // requests handled at once; 0 means DefaultWorkers
	Port     int  // server port; 0 means 67 (tests and benchmarks change it)
	// Metrics counts the requests by message type and outcome; nil counts
	// nothing.
	Metrics *metrics.Metrics
}

// Subnet is one segment: its prefix, router (option 3) and the pool for
// MACs that are not in the inventory (zero Range: none).
type Subnet struct {
	Prefix netip.Prefix
	Router netip.Addr
	Pool   iprange.Range
}

// check fills nothing in: it only says what is wrong.
func (c Config) check() error {
	var errs []error
	if c.Interface == "" {
		errs = append(errs, errors.New("interface: must not be empty"))
	}
	if !c.ServerIP.Is4() {
		errs = append(errs, fmt.Errorf("server IP %v: not IPv4", c.ServerIP))
	}
	if c.LeaseTime < time.Second || c.LeaseTime > 0xffffffff*time.Second {
		errs = append(errs, fmt.Errorf("lease time %v: want 1s to 136 years", c.LeaseTime))
	}
	if c.Bootfile == "" {
		errs = append(errs, errors.New("bootfile: must not be empty"))
	}
	switch c.UEFILoader {
	case "", UEFILoaderShim, UEFILoaderIPXE:
	default:
		errs = append(errs, fmt.Errorf("uefi loader %q: want shim or ipxe", c.UEFILoader))
	}
	if c.UEFILoader == UEFILoaderIPXE && c.BootfileIPXEEFI == "" {
		errs = append(errs, errors.New("uefi loader ipxe: the iPXE boot file must not be empty"))
	}
	for _, u := range []string{c.IPXEScript, c.HTTPBoot} {
		if u != "" && (!strings.HasPrefix(u, "http://") || !strings.HasSuffix(u, "/")) {
			errs = append(errs, fmt.Errorf("URL %q: want http://... ending in '/'", u))
		}
	}
	switch c.Mode {
	case "", ModeServer, ModeProxy:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want server or proxy", c.Mode))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: must not be negative", c.Workers))
	}
	all := append([]Subnet{c.Subnet}, c.Subnets...)
	for i, sn := range all {
		if !sn.Prefix.IsValid() || !sn.Prefix.Addr().Is4() {
			errs = append(errs, fmt.Errorf("subnet %v: not an IPv4 prefix", sn.Prefix))
			continue
		}
		if !sn.Pool.Within(sn.Prefix) {
			errs = append(errs, fmt.Errorf("subnet %v: pool %v is not inside it", sn.Prefix, sn.Pool))
		}
		for _, o := range all[:i] {
			if o.Prefix.IsValid() && o.Prefix.Overlaps(sn.Prefix) {
				errs = append(errs, fmt.Errorf("subnet %v overlaps %v", sn.Prefix, o.Prefix))
			}
		}
	}
	return errors.Join(errs...)
}
