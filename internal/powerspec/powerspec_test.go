package powerspec

import (
	"errors"
	"strings"
	"testing"
)

// The error cases are in am/power's TestParse, which goes through Parse;
// this table checks what a well-formed spec yields and what Check allows.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Spec
	}{
		{"qemu:/run//vm/./n1.qmp", Spec{Kind: QEMU, Socket: "/run/vm/n1.qmp"}},
		{" qemu:/run/vm/n1.qmp\t", Spec{Kind: QEMU, Socket: "/run/vm/n1.qmp"}},
		{"ipmi:bmc1.grid:ADMIN:/p:with:colons", Spec{Kind: IPMI, Host: "bmc1.grid", User: "ADMIN", PassFile: "/p:with:colons"}},
		{"ipmi:[fd00::9]:admin:/pw", Spec{Kind: IPMI, Host: "fd00::9", User: "admin", PassFile: "/pw"}},
	} {
		got, err := Parse(tc.spec)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		wantErr bool
	}{
		{"", false},
		{"none", false},
		{"qemu:/run/vm/n1.qmp", false},
		{"ipmi:h:u:/pw", false},
		{"qemu:", true},
		{"ipmi:h:u:pw", true},
		{"redfish:https://bmc", true},
		{"qemu:/" + strings.Repeat("a", 2000), true},
	} {
		err := Check(tc.spec)
		if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrBadSpec)) {
			t.Errorf("Check(%.20q) = %v; want error %v (ErrBadSpec)", tc.spec, err, tc.wantErr)
		}
	}
}
