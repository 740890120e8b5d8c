package power

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAction(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Action
		ok   bool
	}{
		{"on", On, true},
		{"offHard", OffHard, true},
		{"offSoft", OffSoft, true},
		{"reboot", Reboot, true},
		{"reset", Reset, true},
		{"status", Status, true},
		{"", "", false},
		{"ON", "", false},
		{"offhard", "", false},
		{"off", "", false},
		{" on", "", false},
		{strings.Repeat("x", 1000), "", false},
	} {
		got, err := ParseAction(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseAction(%.20q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadAction) {
			t.Errorf("ParseAction(%.20q): %v is not ErrBadAction", tc.in, err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("ParseAction: error not bounded: %d bytes", len(err.Error()))
		}
	}
}

// TestParse: each spec kind gets its driver; the syntax itself is
// internal/powerspec's (its TestParse).
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    Driver
		wantErr error
	}{
		{spec: "none", wantErr: ErrNoDriver},
		{spec: "qemu:/run//vm/./n1.qmp", want: &QEMU{Socket: "/run/vm/n1.qmp"}},
		{spec: "ipmi:[fd00::9]:admin:/pw", want: &IPMI{Host: "fd00::9", User: "admin", PassFile: "/pw"}},
		{spec: "redfish:https://bmc", wantErr: ErrBadSpec},
	} {
		got, err := Parse(tc.spec)
		if !errors.Is(err, tc.wantErr) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %#v, %v; want %#v, %v", tc.spec, got, err, tc.want, tc.wantErr)
		}
	}
}
