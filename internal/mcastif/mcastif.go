// Package mcastif picks the network interface multicast goes out of or
// comes in on: the one named, or the one holding a given address, or the
// one the kernel routes toward a peer; it deepens a socket's receive
// queue, and sends runs of datagrams in one call (UDP GSO). Both ends of multicast imaging use it (am/mcastsend,
// rc/mcastrecv).
package mcastif

import (
	"errors"
	"fmt"
	"net"
)

// Lookup returns the interface called name, or, with name empty, the one
// holding addr; with neither (addr nil or unspecified) it returns nil, nil:
// the kernel's choice (its route toward the group).
func Lookup(name string, addr net.IP) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("multicast interface %q: %w", name, err)
		}
		return ifi, nil
	}
	if addr == nil || addr.IsUnspecified() {
		return nil, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("multicast interface of %s: %w", addr, err)
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue // an interface gone meanwhile
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(addr) {
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("multicast interface: no interface holds %s", addr)
}

// Toward returns the local address the kernel would send from to reach
// peer ("ip:port"). It sends nothing: a UDP socket's connect only picks
// a route.
func Toward(peer string) (net.IP, error) {
	c, err := net.Dial("udp4", peer)
	if err != nil {
		return nil, fmt.Errorf("route toward %s: %w", peer, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP, nil
}

// ErrNoSegmentation says WriteSegments cannot send here: send a datagram per call.
var ErrNoSegmentation = errors.New("no UDP segmentation offload")
