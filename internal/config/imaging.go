package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Imaging configures how disk images reach the nodes: by multicast when
// one image goes to several nodes at once, else over HTTP.
type Imaging struct {
	// Multicast is the range sessions take their groups from (an
	// administratively scoped 239.0.0.0/8 block); the zero Prefix turns
	// multicast off (imaging.multicast: off).
	Multicast netip.Prefix
	// PortFirst..PortLast are the UDP ports of the groups.
	PortFirst, PortLast uint16
	// TTL of the datagrams: 1 keeps them on the control network's segment.
	TTL int
	// Rate caps what the sessions send, all together, in bits per second.
	Rate int64
	// Source is the address the appliance sends from and hears the nodes'
	// reports on; the zero Addr means dhcp.server_ip.
	Source netip.Addr
	// Fallback is how long a node waits for its first multicast datagram
	// before it fetches its chunks over HTTP instead.
	Fallback time.Duration
}

// imagingFile is the imaging section as written.
type imagingFile struct {
	Multicast string        `yaml:"multicast"`
	Ports     string        `yaml:"port_range"`
	TTL       int           `yaml:"ttl"`
	Rate      string        `yaml:"rate"`
	Source    string        `yaml:"source"`
	Fallback  time.Duration `yaml:"fallback"`
}

func defaultImaging() imagingFile {
	return imagingFile{
		Multicast: "239.255.18.0/24",
		Ports:     "40000-40999",
		TTL:       1,
		Rate:      "900Mbit",
		Fallback:  5 * time.Second,
	}
}

// parse checks and types the imaging section.
func (f imagingFile) parse() (Imaging, []error) {
	var out Imaging
	var errs []error
	if f.Multicast != "off" {
		p, err := netip.ParsePrefix(f.Multicast)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("imaging.multicast: %q: want a group range such as 239.255.18.0/24, or off", f.Multicast))
		case !p.Addr().Is4() || !p.Addr().IsMulticast() || p.Bits() < 4:
			errs = append(errs, fmt.Errorf("imaging.multicast: %q: not an IPv4 multicast range (224.0.0.0/4; 239.0.0.0/8 is for sites' own use)", f.Multicast))
		default:
			out.Multicast = p.Masked()
		}
	}
	first, last, ok := strings.Cut(f.Ports, "-")
	a, aerr := strconv.ParseUint(first, 10, 16)
	b, berr := strconv.ParseUint(last, 10, 16)
	if !ok || aerr != nil || berr != nil || a < 1024 || b < a {
		errs = append(errs, fmt.Errorf("imaging.port_range: %q: want FIRST-LAST, 1024 <= FIRST <= LAST <= 65535", f.Ports))
	}
	out.PortFirst, out.PortLast = uint16(a), uint16(b)
	if f.TTL < 1 || f.TTL > 255 {
		errs = append(errs, fmt.Errorf("imaging.ttl: %d: want 1 to 255", f.TTL))
	}
	out.TTL = f.TTL
	rate, err := ParseRate(f.Rate)
	if err != nil {
		errs = append(errs, fmt.Errorf("imaging.rate: %w", err))
	}
	out.Rate = rate
	if f.Source != "" {
		s, err := netip.ParseAddr(f.Source)
		if err != nil || !s.Is4() {
			errs = append(errs, fmt.Errorf("imaging.source: %q is not an IPv4 address", f.Source))
		}
		out.Source = s
	}
	if f.Fallback <= 0 {
		errs = append(errs, fmt.Errorf("imaging.fallback: %v: must be positive", f.Fallback))
	}
	out.Fallback = f.Fallback
	return out, errs
}

// ParseRate reads a rate in bits per second as tc writes it: a number
// with an optional k, M or G (powers of 1000, either case) and "bit",
// like 900Mbit or 1gbit.
func ParseRate(s string) (int64, error) {
	num, ok := strings.CutSuffix(s, "bit")
	if !ok {
		return 0, fmt.Errorf("%q: want bits per second such as 900Mbit or 1Gbit", s)
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"k": 1e3, "m": 1e6, "g": 1e9} {
		if n, ok := strings.CutSuffix(strings.ToLower(num), suffix); ok {
			num, mult = n, m
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || v*float64(mult) < 1 || v*float64(mult) > 1e12 {
		return 0, errors.Join(fmt.Errorf("%q: want a positive rate up to 1000Gbit, such as 900Mbit", s), err)
	}
	return int64(v * float64(mult)), nil
}
