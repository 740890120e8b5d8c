// Package iprange is an inclusive range of IPv4 addresses written
// "FIRST-LAST", as a DHCP pool is configured: one parser for netbootd's
// configuration and one type for the DHCP server that hands it out.
package iprange

import (
	"fmt"
	"net/netip"
	"strings"
)

// Range is an inclusive range of IPv4 addresses; the zero Range is empty.
type Range struct {
	First, Last netip.Addr
}

// Parse parses "FIRST-LAST" (spaces around the dash allowed); "" is the
// zero Range. The error quotes s and says what is wrong with it.
func Parse(s string) (Range, error) {
	if s == "" {
		return Range{}, nil
	}
	first, last, ok := strings.Cut(s, "-")
	a, errA := netip.ParseAddr(strings.TrimSpace(first))
	b, errB := netip.ParseAddr(strings.TrimSpace(last))
	switch {
	case !ok || errA != nil || errB != nil || !a.Is4() || !b.Is4():
		return Range{}, fmt.Errorf("%q: want FIRST-LAST, two IPv4 addresses", s)
	case b.Less(a):
		return Range{}, fmt.Errorf("%q: %s comes after %s", s, a, b)
	}
	return Range{First: a, Last: b}, nil
}

// IsZero reports whether r is the empty range.
func (r Range) IsZero() bool { return !r.First.IsValid() }

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return !r.IsZero() && a.Is4() && !a.Less(r.First) && !r.Last.Less(a)
}

// Within reports whether all of r lies in p; the empty range does.
func (r Range) Within(p netip.Prefix) bool {
	return r.IsZero() || (p.Contains(r.First) && p.Contains(r.Last))
}

func (r Range) String() string {
	if r.IsZero() {
		return ""
	}
	return r.First.String() + "-" + r.Last.String()
}
