// Package peer is the one way the appliance's HTTP handlers name who sent
// a request: the TCP connection's source, never a header a client can
// write (X-Forwarded-For), since an address admits an OMF caller, binds a
// node to its enrollment and keys the rate limits.
package peer

import (
	"net/http"
	"net/netip"
)

// AddrPort is r's source, an IPv4-mapped address unmapped; the zero
// AddrPort when the request did not come over IP (a test's handler).
func AddrPort(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Addr is r's source address, as AddrPort.
func Addr(r *http.Request) netip.Addr { return AddrPort(r).Addr() }

// Name is r's source address as text for logs and the audit: the
// connection's own text when it is not an IP address.
func Name(r *http.Request) string {
	if a := Addr(r); a.IsValid() {
		return a.String()
	}
	return r.RemoteAddr
}
