package apiv1_test

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
)

func TestMACText(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: ""},
		{in: "00:03:1D:0C:01:01", want: "00:03:1d:0c:01:01"},
		{in: "00-03-1d-0c-01-01", want: "00:03:1d:0c:01:01"},
		{in: "0003.1d0c.0101", want: "00:03:1d:0c:01:01"},
		// A DHCP chaddr of any length, as net.HardwareAddr.String wrote it.
		{in: "01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10", want: "01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10"},
		{in: "ab", want: "ab"},
		{in: "00:03:1d:0c:01", want: "00:03:1d:0c:01"},
		{in: "zz:zz", bad: true},
		{in: "0:03", bad: true},
		{in: "00:03:", bad: true},
		{in: "00::03", bad: true},
	} {
		var m apiv1.MAC
		err := m.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.bad {
			t.Errorf("UnmarshalText(%q): %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if got, _ := m.MarshalText(); !tc.bad && string(got) != tc.want {
			t.Errorf("UnmarshalText(%q) then MarshalText = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWire pins the JSON bytes the API had before its types were typed.
func TestWire(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mac, _ := apiv1.ParseMAC("00:03:1d:0c:01:01")
	for _, tc := range []struct {
		v    any
		want string
	}{
		{apiv1.Node{HRN: "a", Domain: "sb8", ControlIP: netip.MustParseAddr("10.18.1.1"), ControlMAC: mac, Disk: "/dev/sda"},
			`{"hrn":"a","domain":"sb8","hostname":"","control_ip":"10.18.1.1","control_mac":"00:03:1d:0c:01:01","x":0,"y":0,"z":0,"disk":"/dev/sda"}`},
		{apiv1.Node{HRN: "a", CmcIP: netip.MustParseAddr("10.1.1.1"), PXEImage: "i", Bootfile: "b", Power: "none"},
			`{"hrn":"a","domain":"","hostname":"","control_ip":"","control_mac":"","cmc_ip":"10.1.1.1","x":0,"y":0,"z":0,"disk":"","pxe_image":"i","bootfile":"b","power":"none"}`},
		{apiv1.Discovered{MAC: mac, FirstSeen: at, LastSeen: at, Count: 2},
			`{"mac":"00:03:1d:0c:01:01","first_seen":"2026-01-02T03:04:05Z","last_seen":"2026-01-02T03:04:05Z","count":2}`},
		{apiv1.Discovered{MAC: mac, FirstSeen: at, LastSeen: at, LastIP: netip.MustParseAddr("10.0.0.9"), VendorClass: "PXE", Relay: netip.MustParseAddr("10.0.0.1")},
			`{"mac":"00:03:1d:0c:01:01","first_seen":"2026-01-02T03:04:05Z","last_seen":"2026-01-02T03:04:05Z","count":0,"last_ip":"10.0.0.9","vendor_class":"PXE","relay":"10.0.0.1"}`},
		{apiv1.BootLink{HRN: "a", ControlIP: netip.MustParseAddr("10.18.1.1"), Hex: "0A120101", Image: "i", SetAt: at, ExpiresAt: at, Refs: 1},
			`{"hrn":"a","ip":"10.18.1.1","hex":"0A120101","image":"i","set_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-02T03:04:05Z","refs":1}`},
		{apiv1.Event{ID: 1, HRN: "a", At: at, Source: "dhcp", What: "offer"}, `{"id":1,"hrn":"a","at":"2026-01-02T03:04:05Z","source":"dhcp","what":"offer"}`},
		{apiv1.BootRequest{}, `{}`},
		{apiv1.ErrorBody{Error: "x"}, `{"error":"x"}`},
		// An inventory rejection with no problems listed still says so.
		{apiv1.ErrorBody{Error: "x", Problems: []string{}}, `{"error":"x","problems":[]}`},
		{apiv1.ImportReply{Imported: apiv1.ImportCounts{Images: 1, Nodes: 2, Testbeds: 3}}, `{"imported":{"images":1,"nodes":2,"testbeds":3}}`},
	} {
		got, err := json.Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("Marshal(%#v) = %s, %v\nwant %s", tc.v, got, err, tc.want)
		}
	}
}

func TestParseError(t *testing.T) {
	for _, tc := range []struct {
		body string
		want apiv1.ErrorBody
	}{
		{`{"error":"no","problems":["a","b"]}`, apiv1.ErrorBody{Error: "no", Problems: []string{"a", "b"}}},
		{"  bad gateway\n", apiv1.ErrorBody{Error: "bad gateway"}},
		{`{"error":""}`, apiv1.ErrorBody{Error: `{"error":""}`}},
	} {
		got := apiv1.ParseError([]byte(tc.body))
		if got.Error != tc.want.Error || len(got.Problems) != len(tc.want.Problems) {
			t.Errorf("ParseError(%q) = %+v, want %+v", tc.body, got, tc.want)
		}
	}
}
