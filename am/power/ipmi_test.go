package power

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeIpmitool puts an ipmitool first in PATH that appends its arguments
// to the returned log file and answers like the real one. FAKE_POWER sets
// what status reports; FAKE_FAIL makes it fail as on a BMC timeout;
// FAKE_HANG makes it write its pid to that file and hang for an hour.
func fakeIpmitool(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "args.log")
	script := `#!/bin/sh
echo "$*" >> "` + log + `"
if [ -n "$FAKE_FAIL" ]; then echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; exit 1; fi
if [ -n "$FAKE_HANG" ]; then echo $$ > "$FAKE_HANG"; exec sleep 3600; fi
eval verb=\${$#}
case "$verb" in
status) echo "Chassis Power is ${FAKE_POWER:-on}";;
on) echo "Chassis Power Control: Up/On";;
off) echo "Chassis Power Control: Down/Off";;
soft) echo "Chassis Power Control: Soft";;
cycle) echo "Chassis Power Control: Cycle";;
reset) echo "Chassis Power Control: Reset";;
*) echo "unknown verb $verb" >&2; exit 1;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "ipmitool"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_FAIL", "")
	t.Setenv("FAKE_HANG", "")
	t.Setenv("FAKE_POWER", "")
	return log
}

func readLog(t *testing.T, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func TestIPMI(t *testing.T) {
	log := fakeIpmitool(t)
	d, err := Parse("ipmi:10.0.0.9:admin:/etc/netboot/bmc.pass")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const prefix = "-I lanplus -H 10.0.0.9 -U admin -f /etc/netboot/bmc.pass chassis power "
	for _, tc := range []struct {
		a     Action
		power string
		verb  string
		want  State
	}{
		{On, "", "on", StateOn},
		{OffHard, "", "off", StateOff},
		{OffSoft, "", "soft", StateUnknown},
		{Reboot, "", "cycle", StateOn},
		{Reset, "", "reset", StateOn},
		{Status, "on", "status", StateOn},
		{Status, "off", "status", StateOff},
	} {
		os.Remove(log)
		t.Setenv("FAKE_POWER", tc.power)
		got, err := d.Do(ctx, tc.a)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.a, got, err, tc.want)
		}
		if args := readLog(t, log); !reflect.DeepEqual(args, []string{prefix + tc.verb}) {
			t.Errorf("%s: ipmitool ran with %q, want %q", tc.a, args, prefix+tc.verb)
		}
	}

	t.Setenv("FAKE_FAIL", "1")
	if _, err := d.Do(ctx, On); err == nil || !strings.Contains(err.Error(), "Unable to establish") {
		t.Errorf("failing ipmitool: err = %v, want its stderr", err)
	}
	t.Setenv("FAKE_FAIL", "")

	t.Setenv("FAKE_POWER", "sideways")
	if st, err := d.Do(ctx, Status); err == nil || st != StateUnknown {
		t.Errorf("odd status: got %q, %v; want an error", st, err)
	}

	if _, err := d.Do(ctx, Action("explode")); err == nil {
		t.Error("unknown action accepted")
	}

	pidFile := filepath.Join(t.TempDir(), "hung.pid")
	t.Setenv("FAKE_HANG", pidFile)
	gone := false
	t.Cleanup(func() { // should Do fail to end it; a pid seen gone may be another's by now
		if gone {
			return
		}
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine
			}
		}
	})
	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := doOrHang(t, d, ctx2, Status); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("hung ipmitool: err = %v, want a deadline error", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hung ipmitool did not start: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	// Do has waited for it: it is gone, not a zombie of ours.
	err = syscall.Kill(pid, 0)
	if gone = errors.Is(err, syscall.ESRCH); !gone {
		t.Errorf("the hung ipmitool (pid %d) outlived Do: kill 0: %v", pid, err)
	}
}

func TestIPMIMissingTool(t *testing.T) {
	d := &IPMI{Host: "h", User: "u", PassFile: "/pw", Tool: filepath.Join(t.TempDir(), "no-ipmitool")}
	if _, err := d.Do(context.Background(), Status); err == nil {
		t.Error("missing ipmitool: no error")
	}
}

func TestParseChassisStatus(t *testing.T) {
	for in, want := range map[string]State{
		"Chassis Power is on\n":           StateOn,
		"Chassis Power is off":            StateOff,
		"warning: x\nChassis Power is on": StateOn,
	} {
		if got, err := parseChassisStatus(in); err != nil || got != want {
			t.Errorf("parseChassisStatus(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseChassisStatus(""); err == nil {
		t.Error("empty output accepted")
	}
}
