package mcastif

import (
	"net"
	"testing"
)

func TestLookup(t *testing.T) {
	lo, err := Lookup("", net.IPv4(127, 0, 0, 1))
	if err != nil || lo == nil || lo.Flags&net.FlagLoopback == 0 {
		t.Fatalf("Lookup(127.0.0.1) = %+v, %v; want the loopback interface", lo, err)
	}
	byName, err := Lookup(lo.Name, nil)
	if err != nil || byName.Index != lo.Index {
		t.Errorf("Lookup(%q) = %+v, %v; want index %d", lo.Name, byName, err, lo.Index)
	}
	for _, tc := range []struct {
		name string
		addr net.IP
	}{
		{"no-such-interface-x", nil},
		{"", net.IPv4(192, 0, 2, 77)}, // TEST-NET-1: held by no interface here
	} {
		if ifi, err := Lookup(tc.name, tc.addr); err == nil {
			t.Errorf("Lookup(%q, %v) = %+v, want an error", tc.name, tc.addr, ifi)
		}
	}
	if ifi, err := Lookup("", net.IPv4zero); ifi != nil || err != nil {
		t.Errorf("Lookup of the unspecified address = %+v, %v; want nil, nil", ifi, err)
	}
}

func TestToward(t *testing.T) {
	ip, err := Toward("127.0.0.1:9")
	if err != nil || !ip.IsLoopback() {
		t.Errorf("Toward(127.0.0.1:9) = %v, %v; want a loopback address", ip, err)
	}
	if _, err := Toward("not an address"); err == nil {
		t.Error("Toward of garbage: no error")
	}
}
