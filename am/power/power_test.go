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

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    Driver
		wantErr error
		errHas  string
	}{
		{spec: "", wantErr: ErrNoDriver},
		{spec: "none", wantErr: ErrNoDriver},
		{spec: "  none ", wantErr: ErrNoDriver},
		{spec: "qemu:/run/vm/n1.qmp", want: &QEMU{Socket: "/run/vm/n1.qmp"}},
		{spec: "qemu:/run//vm/./n1.qmp", want: &QEMU{Socket: "/run/vm/n1.qmp"}},
		{spec: "qemu:", wantErr: ErrBadSpec, errHas: "missing QMP socket path"},
		{spec: "qemu:run/n1.qmp", wantErr: ErrBadSpec, errHas: "not absolute"},
		{spec: "qemu:/" + strings.Repeat("a", 107), wantErr: ErrBadSpec, errHas: "at most 107"},
		{spec: "ipmi:10.0.0.9:admin:/etc/netboot/ipmi.pass", want: &IPMI{Host: "10.0.0.9", User: "admin", PassFile: "/etc/netboot/ipmi.pass"}},
		{spec: "ipmi:bmc1.grid:ADMIN:/p:with:colons", want: &IPMI{Host: "bmc1.grid", User: "ADMIN", PassFile: "/p:with:colons"}},
		{spec: "ipmi:[fd00::9]:admin:/pw", want: &IPMI{Host: "fd00::9", User: "admin", PassFile: "/pw"}},
		{spec: "ipmi:[fd00::9:admin:/pw", wantErr: ErrBadSpec, errHas: "unterminated"},
		{spec: "ipmi:host:admin", wantErr: ErrBadSpec, errHas: "HOST:USER:PASSFILE"},
		{spec: "ipmi:host", wantErr: ErrBadSpec, errHas: "HOST:USER:PASSFILE"},
		{spec: "ipmi::admin:/pw", wantErr: ErrBadSpec, errHas: "empty HOST"},
		{spec: "ipmi:h::/pw", wantErr: ErrBadSpec, errHas: "empty USER"},
		{spec: "ipmi:h:u:", wantErr: ErrBadSpec, errHas: "empty PASSFILE"},
		{spec: "ipmi:h:u:pw", wantErr: ErrBadSpec, errHas: "not an absolute path"},
		{spec: "ipmi:-oProxy:u:/pw", wantErr: ErrBadSpec, errHas: "not a host"},
		{spec: "ipmi:h h:u:/pw", wantErr: ErrBadSpec, errHas: "not a host"},
		{spec: "ipmi:h:-E:/pw", wantErr: ErrBadSpec, errHas: "may not start"},
		{spec: "qemu:/a\x00b", wantErr: ErrBadSpec, errHas: "control character"},
		{spec: "/run/vm.qmp", wantErr: ErrBadSpec, errHas: "want qemu:SOCKET"},
		{spec: "redfish:https://bmc", wantErr: ErrBadSpec, errHas: "unknown driver \"redfish\""},
		{spec: "qemu:/" + strings.Repeat("a", 2000), wantErr: ErrBadSpec, errHas: "at most 1024"},
	} {
		got, err := Parse(tc.spec)
		name := tc.spec
		if len(name) > 40 {
			name = name[:40]
		}
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || got != nil {
				t.Errorf("Parse(%q) = %v, %v; want error %v", name, got, err, tc.wantErr)
			} else if !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("Parse(%q): error %q does not say %q", name, err, tc.errHas)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", name, got, err, tc.want)
		}
	}
}
