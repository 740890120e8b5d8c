package mcastif

import (
	"net"

	"golang.org/x/sys/unix"
)

// GrowReadBuffer asks for an n-byte receive queue on c. As root (the RC
// and netbootd are) SO_RCVBUFFORCE passes net.core.rmem_max, whose
// default (about 200 KiB, 150 datagrams) a round at 900 Mb/s fills in
// under 2 ms of a slow consumer, and a round's end, answered by every
// receiver at once, overflows at a few hundred nodes; otherwise SO_RCVBUF
// gets what the limit allows.
func GrowReadBuffer(c *net.UDPConn, n int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetReadBuffer(n)
	}
	return nil
}
