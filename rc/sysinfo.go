package rc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/orbit-lab/netboot/rc/proto"
)

// ErrNoAM is returned by FindAM when nothing names the appliance.
var ErrNoAM = errors.New("no appliance: give --am URL, orbit.am=URL on the kernel command line, or --next-server IP (pxelinux's ip= names no boot server)")

// FindAM returns the appliance's base URL and how it was found, in this
// order: am (the --am flag, or ORBIT_AM from orbit-init); orbit.am= in the
// kernel command line read from cmdlinePath; the boot server of pxelinux's
// ip= in that command line (see BootServer), on port 5054; the DHCP
// next-server on port 5054. A bare host or host:port is taken as
// http://host[:5054].
//
// The boot server comes before the next-server because it is the one
// address known to be the appliance: pxelinux loaded the node's config and
// kernel from it. The next-server is the appliance only when netbootd gave
// the node its address; beside a site's DHCP server (dhcp.mode: proxy) it
// is the site's, or none.
func FindAM(am, cmdlinePath, nextServer string) (base, how string, err error) {
	if am != "" {
		u, err := normalizeAM(am)
		return u, "--am " + am, err
	}
	var skipped string // why an ip= was not taken, for the next-server's how
	if cmdlinePath != "" {
		if b, err := os.ReadFile(cmdlinePath); err == nil {
			var v string
			for _, f := range strings.Fields(string(b)) {
				if s, ok := strings.CutPrefix(f, "orbit.am="); ok {
					v = strings.Trim(s, `"`) // the last one wins, as in the kernel
				}
			}
			if v != "" {
				u, err := normalizeAM(v)
				return u, "orbit.am= in " + cmdlinePath, err
			}
			ip, err := BootServer(string(b))
			if err == nil && ip.IsValid() {
				return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(proto.DefaultPort)),
					"boot server " + ip.String() + " (pxelinux ip= in " + cmdlinePath + ")", nil
			}
			if err != nil {
				skipped = " (" + err.Error() + ")"
			}
		}
	}
	if nextServer != "" {
		ip := net.ParseIP(nextServer)
		if ip == nil || ip.IsUnspecified() {
			return "", "", fmt.Errorf("next-server %q is not an IP address", nextServer)
		}
		return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(proto.DefaultPort)), "DHCP next-server " + nextServer + skipped, nil
	}
	return "", "", ErrNoAM
}

// BootServer returns the boot server named by the last ip= argument of a
// kernel command line, in the form pxelinux writes with IPAPPEND 1 (and
// syslinux.efi likewise): ip=<client>:<boot server>:<gateway>:<netmask>,
// where the boot server is the TFTP server pxelinux loaded its config and
// the kernel from. More fields after the fourth (the kernel's own ip=
// syntax) are allowed. Without an ip= it returns the zero Addr and nil; an
// ip= in another form (ip=dhcp of other boot loaders) or without a usable
// boot server (pxelinux writes 0.0.0.0 when it knew none) is an error that
// says so.
func BootServer(cmdline string) (netip.Addr, error) {
	var v string
	found := false
	for _, f := range strings.Fields(cmdline) {
		if s, ok := strings.CutPrefix(f, "ip="); ok {
			v, found = s, true // the last one wins, as in the kernel
		}
	}
	if !found {
		return netip.Addr{}, nil
	}
	parts := strings.Split(v, ":")
	if len(parts) < 4 {
		return netip.Addr{}, fmt.Errorf("ip=%s: not pxelinux's client:server:gateway:netmask", v)
	}
	for _, p := range parts[:4] {
		if a, err := netip.ParseAddr(p); err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("ip=%s: not pxelinux's client:server:gateway:netmask", v)
		}
	}
	srv := netip.MustParseAddr(parts[1])
	if srv.IsUnspecified() || srv.IsLoopback() || srv.IsMulticast() || srv == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("ip=%s: no boot server", v)
	}
	return srv, nil
}

func normalizeAM(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("appliance URL %q: want http://HOST[:PORT]", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(proto.DefaultPort))
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// readTrim reads a small file and trims white space; "" if unreadable.
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// localMACs lists the Ethernet MACs of the node's interfaces, first (if
// given) the control interface's, loopback and duplicates left out.
func localMACs(first string) []string {
	var out []string
	add := func(s string) {
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 {
			return
		}
		for _, m := range out {
			if m == hw.String() {
				return
			}
		}
		out = append(out, hw.String())
	}
	if first != "" {
		add(first)
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
			add(i.HardwareAddr.String())
		}
	}
	return out
}

// localAddresses lists the node's non-loopback addresses as CIDR.
func localAddresses() []string {
	var out []string
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
				out = append(out, n.String())
			}
		}
	}
	return out
}

// skipBlock are /sys/block entries that are never a node's disk.
var skipBlock = []string{"loop", "ram", "zram", "sr", "fd", "nbd"}

// localDisks lists the block devices of sysBlock (/sys/block) with their
// sizes.
func localDisks(sysBlock string) []proto.Disk {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil
	}
	var out []proto.Disk
next:
	for _, e := range entries {
		name := e.Name()
		for _, p := range skipBlock {
			if strings.HasPrefix(name, p) {
				continue next
			}
		}
		dir := filepath.Join(sysBlock, name)
		sectors, err := strconv.ParseInt(readTrim(filepath.Join(dir, "size")), 10, 64)
		if err != nil {
			continue
		}
		out = append(out, proto.Disk{
			Name:      name,
			Path:      "/dev/" + strings.ReplaceAll(name, "!", "/"), // cciss!c0d0 is /dev/cciss/c0d0
			Size:      sectors * 512,                                // /sys/block sizes are in 512-byte sectors
			Model:     readTrim(filepath.Join(dir, "device", "model")),
			Removable: readTrim(filepath.Join(dir, "removable")) == "1",
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
