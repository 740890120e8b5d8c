//go:build !linux

package mcastif

import "net"

// GrowReadBuffer asks for an n-byte receive queue on c, as far as the
// system allows.
func GrowReadBuffer(c *net.UDPConn, n int) error { return c.SetReadBuffer(n) }
