package tftpd

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"

	"github.com/pin/tftp/v3"
)

// TFTP error codes (RFC 1350, section 5) that this server sends.
const (
	errNotDefined      = 0
	errFileNotFound    = 1
	errAccessViolation = 2
)

// The texts clients see. Details (which component escaped, the errno) go
// to our log only: they describe the server's tree.
const (
	msgNotDefined      = "Server error"
	msgFileNotFound    = "File not found"
	msgAccessViolation = "Access violation"
)

// codeOf maps a failed request to the TFTP error code and text sent to the
// client.
func codeOf(err error) (uint16, string) {
	switch {
	case errors.Is(err, ErrNotFound):
		return errFileNotFound, msgFileNotFound
	case errors.Is(err, ErrAccess):
		return errAccessViolation, msgAccessViolation
	default:
		return errNotDefined, msgNotDefined
	}
}

// outcome is the short word logged for a transfer, easy to grep and count.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrAccess):
		return "access_violation"
	default:
		return "error"
	}
}

// sendError sends one TFTP ERROR packet to the client, from a fresh port on
// the local address the request arrived at, the way RFC 1350 wants every
// reply to come from a new transfer ID. It is best effort: the client
// retries its request if this is lost, and the library's own error 1
// follows anyway.
func (s *Server) sendError(ctx context.Context, req any, to *net.UDPAddr, code uint16, msg string) {
	var local net.IP
	if pi, ok := req.(tftp.RequestPacketInfo); ok {
		local = pi.LocalIP()
	}
	network := "udp6"
	if to.IP.To4() != nil {
		network = "udp4"
	}
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: local})
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "tftp error packet not sent", slog.String("client", to.String()), slog.String("error", err.Error()))
		return
	}
	defer conn.Close()
	if _, err := conn.WriteToUDP(packError(code, msg), to); err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "tftp error packet not sent", slog.String("client", to.String()), slog.String("error", err.Error()))
	}
}

// packError builds an ERROR packet: opcode 5, code, message, NUL.
func packError(code uint16, msg string) []byte {
	p := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(p[0:], 5)
	binary.BigEndian.PutUint16(p[2:], code)
	p = append(p, msg...)
	return append(p, 0)
}
