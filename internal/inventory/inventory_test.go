package inventory

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalize(t *testing.T) {
	base := Node{HRN: "n.sb8", Domain: "sb8", ControlIP: "10.18.1.2", ControlMAC: "00:03:1D:0C:01:02"}
	tests := []struct {
		name    string
		edit    func(*Node)
		want    func(*Node)
		wantErr string
	}{
		{name: "canonical MAC and default disk", edit: func(n *Node) {}, want: func(n *Node) { n.ControlMAC = "00:03:1d:0c:01:02"; n.Disk = "/dev/sda" }},
		{name: "dash MAC", edit: func(n *Node) { n.ControlMAC = "00-03-1d-0c-01-02" }, want: func(n *Node) { n.ControlMAC = "00:03:1d:0c:01:02"; n.Disk = "/dev/sda" }},
		{name: "EUI-64 is not Ethernet", edit: func(n *Node) { n.ControlMAC = "00:00:00:00:00:00:00:01" }, wantErr: "control_mac"},
		{name: "IPv6", edit: func(n *Node) { n.ControlIP = "::1" }, wantErr: "not an IPv4 address"},
		{name: "bad cmc", edit: func(n *Node) { n.CmcIP = "x" }, wantErr: `cmc_ip "x"`},
		{name: "disk outside /dev", edit: func(n *Node) { n.Disk = "/etc/passwd" }, wantErr: "not a clean /dev path"},
		{name: "boot file below the root", edit: func(n *Node) { n.Bootfile = "efi64/ipxe.efi" }, want: func(n *Node) { n.ControlMAC = "00:03:1d:0c:01:02"; n.Disk = "/dev/sda" }},
		{name: "boot file escaping the root", edit: func(n *Node) { n.Bootfile = "../etc/passwd" }, wantErr: `bootfile "../etc/passwd"`},
		{name: "absolute boot file", edit: func(n *Node) { n.Bootfile = "/pxelinux.0" }, wantErr: `bootfile "/pxelinux.0"`},
		{name: "disk with a newline", edit: func(n *Node) { n.Disk = "/dev/sda\n" }, wantErr: `disk "/dev/sda\n" is not a clean /dev path`},
		{name: "disk with a space", edit: func(n *Node) { n.Disk = "/dev/sd a" }, wantErr: "not a clean /dev path"},
		{name: "disk out of /dev", edit: func(n *Node) { n.Disk = "/dev/../etc/passwd" }, wantErr: "not a clean /dev path"},
		{name: "disk not clean", edit: func(n *Node) { n.Disk = "/dev//sda" }, wantErr: "not a clean /dev path"},
		{name: "disk by id", edit: func(n *Node) { n.Disk = "/dev/disk/by-id/ata-X_1" }, want: func(n *Node) { n.ControlMAC = "00:03:1d:0c:01:02"; n.Disk = "/dev/disk/by-id/ata-X_1" }},
		{name: "power spec trimmed", edit: func(n *Node) { n.Power = " qemu:/run/n.qmp\n" }, want: func(n *Node) {
			n.ControlMAC = "00:03:1d:0c:01:02"
			n.Disk = "/dev/sda"
			n.Power = "qemu:/run/n.qmp"
		}},
		{name: "image with slash", edit: func(n *Node) { n.PXEImage = "a/b" }, wantErr: `pxe_image "a/b"`},
		{name: "several problems at once", edit: func(n *Node) { n.HRN = ""; n.ControlIP = "" }, wantErr: `hrn "" is not a valid name; control_ip "" is not an IPv4 address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.edit(&in)
			got, err := Normalize(in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := in
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFileRejectsUnknownKeys(t *testing.T) {
	_, err := ParseFile([]byte("testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: a, control_ip: 10.0.0.1, contrl_mac: x }\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4: field contrl_mac not found") {
		t.Fatalf("err = %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	in := File{
		Images: []Image{{Name: "orbit-2.0.0", Description: "ORBIT RAM image: imaging"}},
		Testbeds: []Testbed{{Domain: "sb8", Nodes: []Node{
			{HRN: "n1", Hostname: "y", ControlIP: "10.0.0.1", ControlMAC: "00:03:10:20:01:02", X: 1, Y: 2, Disk: "/dev/sda"},
			{HRN: "n2", Hostname: "true", ControlIP: "10.0.0.2", ControlMAC: "00:03:10:20:01:03", Z: 3, Disk: "/dev/sdb", PXEImage: "orbit-2.0.0"},
		}}},
	}
	out, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseFile(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if diff := cmp.Diff(in, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, out)
	}
	if !strings.Contains(string(out), `control_mac: "00:03:10:20:01:02"`) {
		t.Errorf("MAC not quoted:\n%s", out)
	}
}

// TestLoadNamesLines: every problem in a document read by Load names the
// line of its entry, for an operator editing a file; what it accepts is
// what a document read by ParseFile gives.
func TestLoadNamesLines(t *testing.T) {
	const doc = `images:
  - { name: orbit-2.0.0 }
  - { name: "a/b" }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: n1, control_ip: 10.0.0.1, control_mac: "00:03:1d:0c:01:01" }
      - &n2 { hrn: n2, control_ip: 10.0.0.2, control_mac: "00:03:1d:0c:01:02" }

      - hrn: n3
        control_ip: 10.0.0.1
        control_mac: "00:03:1d:0c:01:03"
      - { hrn: n4, control_ip: 10.0.0.300, control_mac: "00:03:1d:0c:01:04" }
  - domain: sb8
    nodes:
      - *n2
`
	tests := []struct {
		name string
		doc  string
		want []string // the problems, in order
	}{
		{"every kind of problem", doc, []string{
			`line 3: images[1]: name "a/b" is not a valid name`,
			`line 10: testbeds[0] (sb8) nodes[2]: node "n3": duplicate control_ip 10.0.0.1 (already used by node "n1" at line 7)`,
			`line 13: testbeds[0] (sb8) nodes[3]: invalid inventory entry: node "n4": control_ip "10.0.0.300" is not an IPv4 address`,
			`line 14: testbeds[1]: duplicate domain "sb8"`,
			`line 16: testbeds[1] (sb8) nodes[0]: node "n2": duplicate hrn n2 (already used by node "n2" at line 8)`,
			`line 16: testbeds[1] (sb8) nodes[0]: node "n2": duplicate control_ip 10.0.0.2 (already used by node "n2" at line 8)`,
			`line 16: testbeds[1] (sb8) nodes[0]: node "n2": duplicate control_mac 00:03:1d:0c:01:02 (already used by node "n2" at line 8)`,
		}},
		{"not an inventory: the decoder's error, with its line", "x: &tb\n  domain: sb8\n  nodes:\n    - { hrn: n1, control_ip: 10.0.0.1, control_mac: zz }\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Load([]byte(tc.doc))
			if err == nil {
				_, err = f.Normalize()
			}
			if tc.want == nil {
				// Not a document ParseFile takes: its own error, with its line.
				if err == nil || !strings.Contains(err.Error(), "line 1: field x not found") {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("Load: %v, want an *Error", err)
			}
			var got []string
			for _, p := range ie.Problems {
				got = append(got, p.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
	good := "testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: n1, control_ip: 10.0.0.1, control_mac: 00-03-1D-0C-01-01 }\n"
	f, err := Load([]byte(good))
	if err == nil {
		f, err = f.Normalize()
	}
	parsed, _ := ParseFile([]byte(good))
	want, _ := parsed.Normalize()
	if err != nil || !cmp.Equal(f, want) {
		t.Errorf("Load and Normalize of a good document: %+v, %v; want %+v", f, err, want)
	}
}
