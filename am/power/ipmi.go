package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/internal/textclip"
)

// IPMI drives a node's BMC with ipmitool over IPMI v2.0 (lanplus), the
// password read by ipmitool from PassFile (-f), never on the command line.
//
// Actions map to `chassis power` subcommands: on -> on, offHard -> off,
// offSoft -> soft, reboot -> cycle, reset -> reset, status -> status.
// The state returned is what the command implies: on after on, reboot and
// reset; off after offHard; unknown after offSoft (the OS shuts down in its
// own time); for status, ipmitool's "Chassis Power is on|off".
type IPMI struct {
	Host, User, PassFile string
	// Tool is the ipmitool command; "" is "ipmitool", looked up in PATH.
	Tool string
}

func (d *IPMI) String() string { return "ipmi:" + d.Host + ":" + d.User }

var ipmiVerb = map[Action]string{On: "on", OffHard: "off", OffSoft: "soft", Reboot: "cycle", Reset: "reset", Status: "status"}

// Args returns ipmitool's arguments for an action.
func (d *IPMI) Args(a Action) []string {
	return []string{"-I", "lanplus", "-H", d.Host, "-U", d.User, "-f", d.PassFile, "chassis", "power", ipmiVerb[a]}
}

// maxOutput bounds what is kept of ipmitool's output.
const maxOutput = 64 << 10

type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Do implements Driver.
func (d *IPMI) Do(ctx context.Context, a Action) (State, error) {
	if _, ok := ipmiVerb[a]; !ok {
		_, err := ParseAction(string(a))
		return StateUnknown, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	tool := d.Tool
	if tool == "" {
		tool = "ipmitool"
	}
	cmd := exec.CommandContext(ctx, tool, d.Args(a)...)
	cmd.WaitDelay = 2 * time.Second // a child that keeps the pipes open
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		msg = textclip.Text(msg, 512)
		if msg != "" {
			return StateUnknown, fmt.Errorf("power %s %s: ipmitool: %w: %s", d, a, err, msg)
		}
		return StateUnknown, fmt.Errorf("power %s %s: ipmitool: %w", d, a, err)
	}
	switch a {
	case On, Reboot, Reset:
		return StateOn, nil
	case OffHard:
		return StateOff, nil
	case OffSoft:
		return StateUnknown, nil
	}
	st, err := parseChassisStatus(stdout.String())
	if err != nil {
		return StateUnknown, fmt.Errorf("power %s %s: %w", d, a, err)
	}
	return st, nil
}

var errNoStatus = errors.New("ipmitool: no \"Chassis Power is on|off\" in the output")

// parseChassisStatus reads "Chassis Power is on" / "... off".
func parseChassisStatus(out string) (State, error) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Chassis Power is ")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(rest)) {
		case "on":
			return StateOn, nil
		case "off":
			return StateOff, nil
		}
		return StateUnknown, fmt.Errorf("ipmitool: unexpected power state %q", rest)
	}
	out = textclip.Text(out, 200)
	return StateUnknown, fmt.Errorf("%w: %q", errNoStatus, out)
}
