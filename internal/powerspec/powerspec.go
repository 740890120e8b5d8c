// Package powerspec parses a node's power spec, the string in the inventory
// that names how the node is switched on and off:
//
//	qemu:/path/to/qmp.sock        a QEMU VM, through its QMP unix socket
//	ipmi:HOST:USER:PASSFILE       a BMC, through ipmitool -I lanplus
//	none (or empty)               no power control (ErrNoDriver)
//
// It is a leaf: the inventory checks a spec's syntax with it without linking
// the drivers (am/power), which build on the Spec it returns.
package powerspec

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
)

// Kind names a driver.
type Kind string

// The drivers a spec may name, by their prefix.
const (
	QEMU Kind = "qemu"
	IPMI Kind = "ipmi"
)

// Spec is a parsed power spec. Socket is set for QEMU; Host, User and
// PassFile for IPMI.
type Spec struct {
	Kind                 Kind
	Socket               string
	Host, User, PassFile string
}

var (
	// ErrNoDriver marks a spec that is "none" or empty: the node has no
	// power control.
	ErrNoDriver = errors.New("power: node has no power driver")
	// ErrBadSpec marks a malformed driver spec.
	ErrBadSpec = errors.New("power: invalid driver spec")
)

// maxSpec bounds a spec; a unix socket path is at most 107 bytes anyway.
const maxSpec = 1024

// Parse checks a spec's form only: it neither connects nor reads files.
func Parse(spec string) (Spec, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return Spec{}, ErrNoDriver
	}
	if len(spec) > maxSpec {
		return Spec{}, fmt.Errorf("%w: %d bytes long, at most %d allowed", ErrBadSpec, len(spec), maxSpec)
	}
	if i := strings.IndexFunc(spec, unicode.IsControl); i >= 0 {
		return Spec{}, fmt.Errorf("%w: control character at byte %d", ErrBadSpec, i)
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return Spec{}, fmt.Errorf("%w %q: want qemu:SOCKET, ipmi:HOST:USER:PASSFILE or none", ErrBadSpec, spec)
	}
	switch Kind(kind) {
	case QEMU:
		return parseQEMU(rest)
	case IPMI:
		return parseIPMI(rest)
	}
	return Spec{}, fmt.Errorf("%w %q: unknown driver %q (known: qemu, ipmi, none)", ErrBadSpec, spec, kind)
}

// Check accepts a well-formed spec, "none" and "" (no power control).
func Check(spec string) error {
	if _, err := Parse(spec); err != nil && !errors.Is(err, ErrNoDriver) {
		return err
	}
	return nil
}

func parseQEMU(path string) (Spec, error) {
	switch {
	case path == "":
		return Spec{}, fmt.Errorf("%w: qemu: missing QMP socket path (qemu:/path/to/qmp.sock)", ErrBadSpec)
	case !filepath.IsAbs(path):
		return Spec{}, fmt.Errorf("%w: qemu: QMP socket path %q is not absolute", ErrBadSpec, path)
	case len(path) > 107: // sizeof(sun_path) - 1 on Linux
		return Spec{}, fmt.Errorf("%w: qemu: QMP socket path is %d bytes long, a unix socket path holds at most 107", ErrBadSpec, len(path))
	}
	return Spec{Kind: QEMU, Socket: filepath.Clean(path)}, nil
}

func parseIPMI(rest string) (Spec, error) {
	const form = "ipmi:HOST:USER:PASSFILE"
	var host string
	if strings.HasPrefix(rest, "[") { // [IPv6 address]
		end := strings.Index(rest, "]")
		if end < 0 || !strings.HasPrefix(rest[end+1:], ":") {
			return Spec{}, fmt.Errorf("%w: ipmi: unterminated [host] (want %s)", ErrBadSpec, form)
		}
		host, rest = rest[1:end], rest[end+2:]
	} else {
		var ok bool
		if host, rest, ok = strings.Cut(rest, ":"); !ok {
			return Spec{}, fmt.Errorf("%w: ipmi: want %s", ErrBadSpec, form)
		}
	}
	user, passfile, ok := strings.Cut(rest, ":")
	switch {
	case !ok:
		return Spec{}, fmt.Errorf("%w: ipmi: want %s", ErrBadSpec, form)
	case host == "":
		return Spec{}, fmt.Errorf("%w: ipmi: empty HOST (want %s)", ErrBadSpec, form)
	case user == "":
		return Spec{}, fmt.Errorf("%w: ipmi: empty USER (want %s)", ErrBadSpec, form)
	case passfile == "":
		return Spec{}, fmt.Errorf("%w: ipmi: empty PASSFILE (want %s)", ErrBadSpec, form)
	// What becomes an ipmitool argument must not read as an option.
	case strings.HasPrefix(host, "-") || strings.ContainsFunc(host, unicode.IsSpace):
		return Spec{}, fmt.Errorf("%w: ipmi: HOST %q is not a host name or address", ErrBadSpec, host)
	case strings.HasPrefix(user, "-"):
		return Spec{}, fmt.Errorf("%w: ipmi: USER %q may not start with '-'", ErrBadSpec, user)
	case !filepath.IsAbs(passfile):
		return Spec{}, fmt.Errorf("%w: ipmi: PASSFILE %q is not an absolute path", ErrBadSpec, passfile)
	}
	return Spec{Kind: IPMI, Host: host, User: user, PassFile: passfile}, nil
}
