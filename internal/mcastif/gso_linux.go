package mcastif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxSegments is the most datagrams WriteSegments sends in one call: the
// kernel's limit on the segments of one UDP GSO buffer.
const MaxSegments = 64

// WriteSegments sends b to dst as datagrams of seg bytes each (the last
// may be shorter) in one system call: UDP generic segmentation offload,
// where the kernel (or the NIC) cuts b. A sender of many datagrams at
// line rate pays per call, not per datagram: 40 datagrams cost one trip
// through the socket, routing and any software bridge instead of 40.
// ErrNoSegmentation says the kernel or the route cannot (the caller
// sends one datagram per call instead); nothing of b was sent then.
func WriteSegments(c *net.UDPConn, b []byte, seg int, dst *net.UDPAddr) error {
	if seg <= 0 || seg > 0xffff || len(b) > 0xffff-28 || (len(b)+seg-1)/seg > MaxSegments {
		return fmt.Errorf("mcastif: %d bytes in segments of %d: %w", len(b), seg, ErrNoSegmentation)
	}
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	_, _, err := c.WriteMsgUDP(b, oob, dst)
	// EMSGSIZE: a segment over the route's MTU (sent alone, IP fragments
	// it); EIO: no checksum offload on the route's device; EINVAL,
	// ENOPROTOOPT: a kernel without UDP GSO (before 4.18).
	if errors.Is(err, unix.EMSGSIZE) || errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("mcastif: %w: %w", ErrNoSegmentation, err)
	}
	return err
}
