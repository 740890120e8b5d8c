package tftpd

import "syscall"

// setPacketInfo asks for the destination address and interface of each
// datagram (IP_PKTINFO) before the socket is bound. The library turns that
// interface's MTU into the blksize limit, and turns the option on itself,
// but only once Serve runs: a request queued before then carries no
// interface, and the library then caps blksize at 512.
func setPacketInfo(network string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "udp6" {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
