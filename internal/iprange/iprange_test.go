package iprange

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string // substring; "" means success
	}{
		{"", "", ""},
		{"10.0.0.1-10.0.0.9", "10.0.0.1-10.0.0.9", ""},
		{" 10.0.0.1 - 10.0.0.1 ", "10.0.0.1-10.0.0.1", ""},
		{"10.0.0.9-10.0.0.1", "", `"10.0.0.9-10.0.0.1": 10.0.0.9 comes after 10.0.0.1`},
		{"10.0.0.1", "", `"10.0.0.1": want FIRST-LAST, two IPv4 addresses`},
		{"fd00::1-fd00::2", "", "want FIRST-LAST, two IPv4 addresses"},
		{"a-b", "", "want FIRST-LAST"},
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if (err != nil) != (tt.wantErr != "") || r.String() != tt.want {
			t.Errorf("Parse(%q) = %q, %v", tt.in, r, err)
		}
		if err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestContainsWithin(t *testing.T) {
	r, _ := Parse("10.0.0.5-10.0.0.7")
	for a, want := range map[string]bool{"10.0.0.4": false, "10.0.0.5": true, "10.0.0.7": true, "10.0.0.8": false} {
		if r.Contains(netip.MustParseAddr(a)) != want {
			t.Errorf("Contains(%s) != %v", a, want)
		}
	}
	if (Range{}).Contains(netip.MustParseAddr("0.0.0.0")) {
		t.Error("the empty range contains 0.0.0.0")
	}
	for p, want := range map[string]bool{"10.0.0.0/24": true, "10.0.0.4/31": false, "10.0.0.6/31": false, "10.0.0.0/29": true} {
		if r.Within(netip.MustParsePrefix(p)) != want {
			t.Errorf("Within(%s) != %v", p, want)
		}
	}
	if !(Range{}).Within(netip.MustParsePrefix("10.0.0.0/32")) {
		t.Error("the empty range is not within a prefix")
	}
}
