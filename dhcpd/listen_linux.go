package dhcpd

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenUDP binds 0.0.0.0:port on iface only (SO_BINDTODEVICE): requests
// from other interfaces never reach it, and broadcasts go out on iface.
// Unlike server4.NewIPv4UDPConn it sets no SO_REUSEADDR or SO_REUSEPORT,
// so a second DHCP server on the port is an error here instead of a
// silent split of the traffic.
func listenUDP(ctx context.Context, iface string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.BindToDevice(int(fd), iface)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_BINDTODEVICE %s: %w", iface, serr)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	// Room for a burst of a rack's worth of requests; the kernel caps it at
	// net.core.rmem_max.
	_ = c.SetReadBuffer(4 << 20)
	return c, nil
}
