//go:build !linux

package mcastrecv

import "net"

// growReadBuffer asks for an n-byte receive queue on c, as far as the
// system allows.
func growReadBuffer(c *net.UDPConn, n int) error { return c.SetReadBuffer(n) }
