// Package orbitinit is the orbit-pxe RAM image's init (cmd/orbit-init): a
// declarative table of small steps that mount the file systems, load the
// NIC drivers, bring the network up with DHCP on the control interface and
// prepare the Resource Controller's environment. cmd/orbit-init runs the
// table as PID 1, then starts and supervises the RC and reaps orphans.
//
// The kernel command line arguments it reads:
//
//	BOOTIF=01-52-54-00-99-00-32  the NIC the node PXE-booted from (pxelinux IPAPPEND 2)
//	orbit.ctl=eth1               the control interface, by name (wins over BOOTIF)
//	orbit.am=URL                 the Aggregate Manager, passed to the RC as ORBIT_AM
//	orbit.linkwait=5s            how long to wait for a NIC with carrier (default 5s)
//	orbit.sshkey=AAAAC3Nza...    a debug shell key (see ParseSSHKeyArg); may be repeated
//
// pxelinux's ip= (IPAPPEND 1) is not the init's: it does its own DHCP, and
// the RC reads the boot server from ip= itself (rc.FindAM).
package orbitinit

import (
	"fmt"
	"net"
	"strings"
)

// Cmdline is a parsed kernel command line.
type Cmdline struct {
	Raw  string
	Args []string // in order, quotes removed
}

// ParseCmdline splits a kernel command line as the kernel does: at white
// space outside double quotes; the quotes are removed ("a=\"b c\"" is a=b c).
func ParseCmdline(s string) Cmdline {
	c := Cmdline{Raw: strings.TrimSpace(s)}
	var (
		cur     strings.Builder
		inQuote bool
		started bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			started = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if started {
				c.Args = append(c.Args, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		c.Args = append(c.Args, cur.String())
	}
	return c
}

// Get returns the value of the last key=value argument with that key (the
// kernel's rule: a later argument overrides an earlier one).
func (c Cmdline) Get(key string) (string, bool) {
	var (
		val   string
		found bool
	)
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// GetAll returns the values of every key=value argument with that key, in
// order.
func (c Cmdline) GetAll(key string) []string {
	var vals []string
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok && k == key {
			vals = append(vals, v)
		}
	}
	return vals
}

// ParseBootIf parses pxelinux's BOOTIF value: the ARP hardware type (01,
// Ethernet) and the MAC address, in hex with dashes: "01-52-54-00-99-00-32".
// Colons are accepted for dashes, and hex digits of either case. The type is
// required (pxelinux always writes it): six octets alone would be ambiguous
// with a truncated value.
func ParseBootIf(v string) (net.HardwareAddr, error) {
	parts := strings.Split(strings.ReplaceAll(strings.TrimSpace(v), ":", "-"), "-")
	if len(parts) != 7 {
		return nil, fmt.Errorf("BOOTIF %q: want 01-xx-xx-xx-xx-xx-xx", v)
	}
	if parts[0] != "01" {
		return nil, fmt.Errorf("BOOTIF %q: hardware type %q is not Ethernet (01)", v, parts[0])
	}
	mac, err := net.ParseMAC(strings.Join(parts[1:], ":"))
	if err != nil {
		return nil, fmt.Errorf("BOOTIF %q: %w", v, err)
	}
	return mac, nil
}
