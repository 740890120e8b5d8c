package tftpd

import "github.com/orbit-lab/netboot/internal/bootpath"

// Sentinel errors a read request can be refused with: the shared path
// rule's (internal/bootpath), so that TFTP and HTTP refuse the same names.
// They decide the TFTP error code the client sees (see codeOf); test them
// with errors.Is.
var (
	// ErrNotFound: the name is well-formed and stays inside Root, but
	// nothing is there (TFTP error 1).
	ErrNotFound = bootpath.ErrNotFound
	// ErrAccess: the name is malformed, leaves Root, or names something
	// that is not a readable regular file (TFTP error 2).
	ErrAccess = bootpath.ErrAccess
)
