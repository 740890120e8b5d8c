// Package power switches testbed nodes on and off: OMF's power service
// ("cmc": on, offHard, offSoft, reboot, reset, status) over a per-node
// driver chosen by a spec string stored in the inventory (its syntax is
// internal/powerspec's: qemu:SOCKET, ipmi:HOST:USER:PASSFILE or none).
package power

import (
	"context"
	"errors"
	"fmt"

	"github.com/orbit-lab/netboot/internal/powerspec"
	"github.com/orbit-lab/netboot/internal/textclip"
)

// Action is a power operation, named as OMF's cmc service named it.
type Action string

// The actions, as OMF's /cmc methods name them.
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
	s = textclip.Text(s, 64)
	return "", fmt.Errorf("%w %q: want one of on, offHard, offSoft, reboot, reset, status", ErrBadAction, s)
}

// State is a node's power state as far as the driver knows it.
type State string

// The states a driver reports: unknown where it cannot tell (a failed
// call, or an action such as offSoft whose effect comes later).
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
	// ErrNoDriver marks a spec that is "none" or empty: the node has no
	// power control.
	ErrNoDriver = powerspec.ErrNoDriver
	// ErrBadSpec marks a malformed driver spec.
	ErrBadSpec = powerspec.ErrBadSpec
)

// Parse picks the driver a spec names (syntax: internal/powerspec). It
// checks the spec's form only: it neither connects nor reads files.
func Parse(spec string) (Driver, error) {
	sp, err := powerspec.Parse(spec)
	if err != nil {
		return nil, err
	}
	switch sp.Kind {
	case powerspec.QEMU:
		return &QEMU{Socket: sp.Socket}, nil
	case powerspec.IPMI:
		return &IPMI{Host: sp.Host, User: sp.User, PassFile: sp.PassFile}, nil
	}
	return nil, fmt.Errorf("%w: no driver for kind %q", ErrBadSpec, sp.Kind)
}
