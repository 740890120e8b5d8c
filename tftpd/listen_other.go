//go:build !linux

package tftpd

import "syscall"

// setPacketInfo is left to the library on systems other than Linux, where
// netbootd does not run in production.
func setPacketInfo(string, syscall.RawConn) error { return nil }
