//go:build !linux

package dhcpd

import (
	"context"
	"errors"
	"net"
)

// listenUDP needs SO_BINDTODEVICE, which only Linux has.
func listenUDP(context.Context, string, int) (*net.UDPConn, error) {
	return nil, errors.New("binding to one interface needs Linux")
}
