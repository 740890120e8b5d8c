// Package power switches testbed nodes on and off: OMF's power service
// ("cmc": on, offHard, offSoft, reboot, reset, status) over a per-node
// driver chosen by a spec string stored in the inventory:
//
//	qemu:/path/to/qmp.sock        a QEMU VM, through its QMP unix socket
//	ipmi:HOST:USER:PASSFILE       a BMC, through ipmitool -I lanplus
//	none (or empty)               no power control (ErrNoDriver)
package power

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
)

// Action is a power operation, named as OMF's cmc service named it.
type Action string

const (
	On      Action = "on"
	OffHard Action = "offHard" // cut the power at once
	OffSoft Action = "offSoft" // ask the OS to shut down (ACPI)
	Reboot  Action = "reboot"
	Reset   Action = "reset"
	Status  Action = "status" // change nothing, report the state
)

// Actions lists every action in OMF's order.
var Actions = []Action{On, OffHard, OffSoft, Reboot, Reset, Status}

// ErrBadAction marks a name that is not an action.
var ErrBadAction = errors.New("power: unknown action")

// ParseAction accepts OMF's method names, exactly (they are case-sensitive
// in OMF's URLs too).
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if string(a) == s {
			return a, nil
		}
	}
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "", fmt.Errorf("%w %q: want one of on, offHard, offSoft, reboot, reset, status", ErrBadAction, s)
}

// State is a node's power state as far as the driver knows it.
type State string

const (
	StateOn      State = "on"
	StateOff     State = "off"
	StateUnknown State = "unknown"
)

// Driver performs an action on one node and returns the node's state after
// it (see each driver for what that means for actions that take effect
// later, such as offSoft). ctx bounds the whole call.
type Driver interface {
	Do(ctx context.Context, a Action) (State, error)
}

var (
	// ErrNoDriver: the spec is "none" or empty; the node has no power control.
	ErrNoDriver = errors.New("power: node has no power driver")
	// ErrBadSpec marks a malformed driver spec.
	ErrBadSpec = errors.New("power: invalid driver spec")
)

// maxSpec bounds a spec; a unix socket path is at most 107 bytes anyway.
const maxSpec = 1024

// Parse picks the driver a spec names. It checks the spec's form only: it
// neither connects nor reads files.
func Parse(spec string) (Driver, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return nil, ErrNoDriver
	}
	if len(spec) > maxSpec {
		return nil, fmt.Errorf("%w: %d bytes long, at most %d allowed", ErrBadSpec, len(spec), maxSpec)
	}
	if i := strings.IndexFunc(spec, unicode.IsControl); i >= 0 {
		return nil, fmt.Errorf("%w: control character at byte %d", ErrBadSpec, i)
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("%w %q: want qemu:SOCKET, ipmi:HOST:USER:PASSFILE or none", ErrBadSpec, spec)
	}
	switch kind {
	case "qemu":
		return parseQEMU(rest)
	case "ipmi":
		return parseIPMI(rest)
	}
	return nil, fmt.Errorf("%w %q: unknown driver %q (known: qemu, ipmi, none)", ErrBadSpec, spec, kind)
}

func parseQEMU(path string) (Driver, error) {
	switch {
	case path == "":
		return nil, fmt.Errorf("%w: qemu: missing QMP socket path (qemu:/path/to/qmp.sock)", ErrBadSpec)
	case !filepath.IsAbs(path):
		return nil, fmt.Errorf("%w: qemu: QMP socket path %q is not absolute", ErrBadSpec, path)
	case len(path) > 107: // sizeof(sun_path) - 1 on Linux
		return nil, fmt.Errorf("%w: qemu: QMP socket path is %d bytes long, a unix socket path holds at most 107", ErrBadSpec, len(path))
	}
	return &QEMU{Socket: filepath.Clean(path)}, nil
}

func parseIPMI(rest string) (Driver, error) {
	const form = "ipmi:HOST:USER:PASSFILE"
	var host string
	if strings.HasPrefix(rest, "[") { // [IPv6 address]
		end := strings.Index(rest, "]")
		if end < 0 || !strings.HasPrefix(rest[end+1:], ":") {
			return nil, fmt.Errorf("%w: ipmi: unterminated [host] (want %s)", ErrBadSpec, form)
		}
		host, rest = rest[1:end], rest[end+2:]
	} else {
		var ok bool
		if host, rest, ok = strings.Cut(rest, ":"); !ok {
			return nil, fmt.Errorf("%w: ipmi: want %s", ErrBadSpec, form)
		}
	}
	user, passfile, ok := strings.Cut(rest, ":")
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: ipmi: want %s", ErrBadSpec, form)
	case host == "":
		return nil, fmt.Errorf("%w: ipmi: empty HOST (want %s)", ErrBadSpec, form)
	case user == "":
		return nil, fmt.Errorf("%w: ipmi: empty USER (want %s)", ErrBadSpec, form)
	case passfile == "":
		return nil, fmt.Errorf("%w: ipmi: empty PASSFILE (want %s)", ErrBadSpec, form)
	// What becomes an ipmitool argument must not read as an option.
	case strings.HasPrefix(host, "-") || strings.ContainsFunc(host, unicode.IsSpace):
		return nil, fmt.Errorf("%w: ipmi: HOST %q is not a host name or address", ErrBadSpec, host)
	case strings.HasPrefix(user, "-"):
		return nil, fmt.Errorf("%w: ipmi: USER %q may not start with '-'", ErrBadSpec, user)
	case !filepath.IsAbs(passfile):
		return nil, fmt.Errorf("%w: ipmi: PASSFILE %q is not an absolute path", ErrBadSpec, passfile)
	}
	return &IPMI{Host: host, User: user, PassFile: passfile}, nil
}
