//go:build !linux

package mcastif

import "net"

// MaxSegments is the most datagrams WriteSegments sends in one call.
const MaxSegments = 64

// WriteSegments sends nothing: only Linux segments UDP for us.
func WriteSegments(*net.UDPConn, []byte, int, *net.UDPAddr) error { return ErrNoSegmentation }
