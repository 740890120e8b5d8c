package am_test

import (
	"strings"
	"testing"
)

// TestOMFControlCharacters: a control character in any OMF parameter is a
// 400 naming the parameter, also where the value is not a name that
// other checks would refuse (an interface name, a host name to look up):
// it must not reach a lookup, the log or an XML answer.
func TestOMFControlCharacters(t *testing.T) {
	a := start(t)
	tests := []struct{ query, param string }{
		{"/inventory/getMacAddress?hrn=node1-1.sb8.orbit-lab.org&domain=sb8&ifname=eth1%00", "ifname"},
		{"/inventory/getMacAddress?hrn=node1-1.sb8.orbit-lab.org&domain=sb8&ifname=%1b%5b2J", "ifname"},
		{"/inventory/getControlIP?hrn=node1-1.sb8.orbit-lab.org%0D%0Aevil&domain=sb8", "hrn"},
		{"/inventory/getHRN?hrn=node1-1%09&domain=sb8", "hrn"},
		{"/inventory/getListOfResources?domain=sb8%7f", "domain"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			status, body := get(t, a.URL+tt.query)
			if status != 400 || !strings.Contains(body, `parameter "`+tt.param+`" holds a control character`) {
				t.Errorf("status %d, body %q; want 400 naming parameter %q", status, body, tt.param)
			}
		})
	}
}
