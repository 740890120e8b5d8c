package powerspec

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    Spec
		wantErr error
		errHas  string
	}{
		{spec: "", wantErr: ErrNoDriver},
		{spec: "none", wantErr: ErrNoDriver},
		{spec: "  none ", wantErr: ErrNoDriver},
		{spec: "qemu:/run/vm/n1.qmp", want: Spec{Kind: QEMU, Socket: "/run/vm/n1.qmp"}},
		{spec: "qemu:/run//vm/./n1.qmp", want: Spec{Kind: QEMU, Socket: "/run/vm/n1.qmp"}},
		{spec: "qemu:", wantErr: ErrBadSpec, errHas: "missing QMP socket path"},
		{spec: "qemu:run/n1.qmp", wantErr: ErrBadSpec, errHas: "not absolute"},
		{spec: "qemu:/" + strings.Repeat("a", 107), wantErr: ErrBadSpec, errHas: "at most 107"},
		{spec: "ipmi:10.0.0.9:admin:/etc/netboot/ipmi.pass", want: Spec{Kind: IPMI, Host: "10.0.0.9", User: "admin", PassFile: "/etc/netboot/ipmi.pass"}},
		{spec: "ipmi:bmc1.grid:ADMIN:/p:with:colons", want: Spec{Kind: IPMI, Host: "bmc1.grid", User: "ADMIN", PassFile: "/p:with:colons"}},
		{spec: "ipmi:[fd00::9]:admin:/pw", want: Spec{Kind: IPMI, Host: "fd00::9", User: "admin", PassFile: "/pw"}},
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
		// Check, the inventory's test, accepts "none" and "" besides.
		if cerr := Check(tc.spec); (cerr == nil) != (err == nil || errors.Is(err, ErrNoDriver)) {
			t.Errorf("Check(%q) = %v, but Parse says %v", name, cerr, err)
		}
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || got != (Spec{}) {
				t.Errorf("Parse(%q) = %+v, %v; want error %v", name, got, err, tc.wantErr)
			} else if !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("Parse(%q): error %q does not say %q", name, err, tc.errHas)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", name, got, err, tc.want)
		}
	}
}
