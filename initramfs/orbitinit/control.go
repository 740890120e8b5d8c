package orbitinit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
)

// NIC is a network interface as the control-interface choice sees it.
type NIC struct {
	Name    string
	MAC     net.HardwareAddr
	Carrier bool // the link is up (operstate up, or carrier 1)
}

// ErrNoControl is returned when no interface can be the control interface.
var ErrNoControl = errors.New("no control interface")

// DefaultControl is the control interface of the old image's rcS (eth0 was
// the experiment interface, DHCP ran on eth1).
const DefaultControl = "eth1"

// Choice is the chosen control interface and why.
type Choice struct {
	NIC    NIC
	Reason string // e.g. "orbit.ctl=eth0", "BOOTIF=01-52-54-...", "eth1 present", "first with carrier"
}

// ChooseControl picks the control interface among nics (loopback excluded by
// the caller), in this order:
//
//  1. orbit.ctl=NAME on the command line, if that NIC exists;
//  2. BOOTIF= (pxelinux IPAPPEND 2): the NIC with that MAC;
//  3. eth1, if present (the old image's rcS);
//  4. the first NIC, by name, with carrier;
//  5. ErrNoControl.
//
// A named interface that does not exist, or a BOOTIF that matches no NIC or
// does not parse, does not stop the choice: it falls through to the next
// rule, and the reason says so.
func ChooseControl(cmd Cmdline, nics []NIC) (Choice, error) {
	nics = append([]NIC(nil), nics...)
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	var notes string
	note := func(s string) {
		if notes != "" {
			notes += "; "
		}
		notes += s
	}
	with := func(reason string) string {
		if notes == "" {
			return reason
		}
		return reason + " (" + notes + ")"
	}

	if name, ok := cmd.Get("orbit.ctl"); ok && name != "" {
		for _, n := range nics {
			if n.Name == name {
				return Choice{NIC: n, Reason: with("orbit.ctl=" + name)}, nil
			}
		}
		note(fmt.Sprintf("orbit.ctl=%s: no such interface", name))
	}
	if v, ok := cmd.Get("BOOTIF"); ok && v != "" {
		mac, err := ParseBootIf(v)
		if err != nil {
			note(err.Error())
		} else {
			for _, n := range nics {
				if bytes.Equal(n.MAC, mac) {
					return Choice{NIC: n, Reason: with("BOOTIF=" + v)}, nil
				}
			}
			note(fmt.Sprintf("BOOTIF=%s: no interface has MAC %s", v, mac))
		}
	}
	for _, n := range nics {
		if n.Name == DefaultControl {
			return Choice{NIC: n, Reason: with(DefaultControl + " present")}, nil
		}
	}
	for _, n := range nics {
		if n.Carrier {
			return Choice{NIC: n, Reason: with("first with carrier")}, nil
		}
	}
	if notes != "" {
		return Choice{}, fmt.Errorf("%w among %d interfaces (%s)", ErrNoControl, len(nics), notes)
	}
	return Choice{}, fmt.Errorf("%w among %d interfaces", ErrNoControl, len(nics))
}
