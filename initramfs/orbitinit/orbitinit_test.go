package orbitinit

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"console=tty0 console=ttyS0,115200\n", []string{"console=tty0", "console=ttyS0,115200"}},
		{"  a=1\tb  c ", []string{"a=1", "b", "c"}},
		{`initrd=x orbit.am="http://h:5054/a b" quiet`, []string{"initrd=x", "orbit.am=http://h:5054/a b", "quiet"}},
		{`"quoted whole=1"`, []string{"quoted whole=1"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ParseCmdline(tt.in).Args); diff != "" {
			t.Errorf("ParseCmdline(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestCmdlineGet(t *testing.T) {
	c := ParseCmdline("orbit.ctl=eth0 BOOTIF=01-aa-bb-cc-dd-ee-ff orbit.ctl=eth2 flag orbit.am=")
	for _, tt := range []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"orbit.ctl", "eth2", true}, // the last one wins, as in the kernel
		{"BOOTIF", "01-aa-bb-cc-dd-ee-ff", true},
		{"orbit.am", "", true},
		{"flag", "", false}, // no '='
		{"missing", "", false},
		{"orbit", "", false}, // a prefix is not a key
	} {
		got, ok := c.Get(tt.key)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestParseBootIf(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"01-52-54-00-99-00-32", "52:54:00:99:00:32", false},
		{"01-52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef", false},
		{"01:52:54:00:99:00:32", "52:54:00:99:00:32", false},
		{"52-54-00-99-00-32", "", true}, // no hardware type
		{" 01-52-54-00-99-00-32 ", "52:54:00:99:00:32", false},
		{"06-52-54-00-99-00-32", "", true}, // not Ethernet
		{"01-52-54-00-99-00", "", true},
		{"01-52-54-00-99-00-zz", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseBootIf(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseBootIf(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseBootIf(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestChooseControl(t *testing.T) {
	eth0 := NIC{Name: "eth0", MAC: mac("52:54:00:00:00:01"), Carrier: true}
	eth1 := NIC{Name: "eth1", MAC: mac("52:54:00:00:00:02")}
	eth2 := NIC{Name: "eth2", MAC: mac("52:54:00:00:00:03"), Carrier: true}
	eth3 := NIC{Name: "eth3", MAC: mac("52:54:00:00:00:04")}
	eth4 := NIC{Name: "eth4", MAC: mac("52:54:00:ab:cd:ef"), Carrier: true}
	tests := []struct {
		name       string
		cmdline    string
		nics       []NIC
		want       string
		wantReason string
		wantErr    error
	}{
		{"BOOTIF picks by MAC", "BOOTIF=01-52-54-00-00-00-03", []NIC{eth0, eth1, eth2}, "eth2", "BOOTIF=01-52-54-00-00-00-03", nil},
		// Hex digits of either case name the same MAC.
		{"BOOTIF upper-case hex", "BOOTIF=01-52-54-00-AB-CD-EF", []NIC{eth0, eth1, eth4}, "eth4", "BOOTIF=01-52-54-00-AB-CD-EF", nil},
		{"BOOTIF lower-case hex", "BOOTIF=01-52-54-00-ab-cd-ef", []NIC{eth0, eth1, eth4}, "eth4", "BOOTIF=01-52-54-00-ab-cd-ef", nil},
		{"orbit.ctl wins over BOOTIF", "BOOTIF=01-52-54-00-00-00-03 orbit.ctl=eth0", []NIC{eth0, eth1, eth2}, "eth0", "orbit.ctl=eth0", nil},
		{"orbit.ctl needs no carrier", "orbit.ctl=eth3", []NIC{eth0, eth3}, "eth3", "orbit.ctl=eth3", nil},
		{"orbit.ctl missing falls to BOOTIF", "orbit.ctl=eth9 BOOTIF=01-52-54-00-00-00-01", []NIC{eth0, eth1}, "eth0",
			"BOOTIF=01-52-54-00-00-00-01 (orbit.ctl=eth9: no such interface)", nil},
		{"BOOTIF unknown MAC falls to eth1", "BOOTIF=01-52-54-00-00-00-99", []NIC{eth0, eth1}, "eth1",
			"eth1 present (BOOTIF=01-52-54-00-00-00-99: no interface has MAC 52:54:00:00:00:99)", nil},
		{"bad BOOTIF falls to eth1", "BOOTIF=garbage", []NIC{eth0, eth1}, "eth1",
			`eth1 present (BOOTIF "garbage": want 01-xx-xx-xx-xx-xx-xx)`, nil},
		{"eth1 without carrier, as the old rcS", "", []NIC{eth0, eth1, eth2}, "eth1", "eth1 present", nil},
		{"no eth1: first with carrier, by name", "", []NIC{eth3, eth2, eth0}, "eth0", "first with carrier", nil},
		{"no eth1, one with carrier", "", []NIC{eth3, eth2}, "eth2", "first with carrier", nil},
		{"nothing with carrier", "", []NIC{eth3}, "", "", ErrNoControl},
		{"no NICs", "BOOTIF=01-52-54-00-00-00-03", nil, "", "", ErrNoControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseControl(ParseCmdline(tt.cmdline), tt.nics)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.NIC.Name != tt.want || got.Reason != tt.wantReason {
				t.Errorf("got %s (%s), want %s (%s)", got.NIC.Name, got.Reason, tt.want, tt.wantReason)
			}
		})
	}
}

func TestRCEnv(t *testing.T) {
	n := &Node{
		Cmdline:  ParseCmdline("BOOTIF=01-52-54-00-99-00-32 orbit.am=http://10.18.0.1:5054"),
		Image:    "orbit-2.0.0",
		Control:  Choice{NIC: NIC{Name: "eth1", MAC: mac("52:54:00:99:00:32")}},
		Hostname: "node1-2",
		Lease: &Lease{
			IP:         net.IPNet{IP: net.IPv4(10, 18, 1, 2).To4(), Mask: net.CIDRMask(16, 32)},
			Gateway:    net.IPv4(10, 18, 0, 1),
			Server:     net.IPv4(10, 18, 0, 1),
			NextServer: net.IPv4(10, 18, 0, 2),
			Domain:     "sb8.orbit-lab.org",
		},
	}
	want := []string{
		"ORBIT_AM=http://10.18.0.1:5054",
		"ORBIT_BOOTIF=01-52-54-00-99-00-32",
		"ORBIT_CONTROL_IF=eth1",
		"ORBIT_CONTROL_MAC=52:54:00:99:00:32",
		"ORBIT_DHCP_SERVER=10.18.0.1",
		"ORBIT_DOMAIN=sb8.orbit-lab.org",
		"ORBIT_GATEWAY=10.18.0.1",
		"ORBIT_HOSTNAME=node1-2",
		"ORBIT_IMAGE=orbit-2.0.0",
		"ORBIT_IP=10.18.1.2/16",
		"ORBIT_NEXT_SERVER=10.18.0.2",
		"PATH=/bin:/sbin", "HOME=/root", "TERM=linux",
	}
	if diff := cmp.Diff(want, n.RCEnv()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// Nothing learnt: every ORBIT_ variable is there, empty.
	empty := (&Node{}).RCEnv()
	for _, kv := range empty {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ORBIT_") && v != "" {
			t.Errorf("empty node: %s", kv)
		}
	}
	if len(empty) != len(want) {
		t.Errorf("empty node: %d variables, want %d", len(empty), len(want))
	}
}

func TestHostname(t *testing.T) {
	m := mac("52:54:00:99:00:32")
	tests := []struct {
		lease *Lease
		want  string
	}{
		{&Lease{Hostname: "node1-2"}, "node1-2"},
		{&Lease{Hostname: "node1-2.sb8.orbit-lab.org"}, "node1-2"},
		{&Lease{Hostname: "bad_name"}, "orbit-525400990032"},
		{&Lease{}, "orbit-525400990032"},
		{nil, "orbit-525400990032"},
	}
	for _, tt := range tests {
		if got := hostnameFor(tt.lease, m); got != tt.want {
			t.Errorf("hostnameFor(%+v) = %q, want %q", tt.lease, got, tt.want)
		}
	}
	if got := hostnameFor(nil, nil); got != "orbit" {
		t.Errorf("no lease, no MAC: %q", got)
	}
	l := &Lease{IP: net.IPNet{IP: net.IPv4(10, 18, 1, 2)}, Domain: "sb8.orbit-lab.org"}
	if got, want := hostsFile("node1-2", l), "127.0.0.1\tlocalhost\n10.18.1.2\tnode1-2.sb8.orbit-lab.org\tnode1-2\n"; got != want {
		t.Errorf("hosts = %q, want %q", got, want)
	}
}

func TestParseLoadOrder(t *testing.T) {
	got := parseLoadOrder("# comment\n/lib/modules/v/a.ko\n\n  /lib/modules/v/b.ko  \n")
	if diff := cmp.Diff([]string{"/lib/modules/v/a.ko", "/lib/modules/v/b.ko"}, got); diff != "" {
		t.Error(diff)
	}
}

func TestCmdlineGetAll(t *testing.T) {
	c := ParseCmdline(`orbit.sshkey=A quiet orbit.sshkey="ssh-ed25519 B c" orbit.sshkeyx=D`)
	if diff := cmp.Diff([]string{"A", "ssh-ed25519 B c"}, c.GetAll("orbit.sshkey")); diff != "" {
		t.Errorf("GetAll (-want +got):\n%s", diff)
	}
	if got := c.GetAll("missing"); got != nil {
		t.Errorf("GetAll(missing) = %q", got)
	}
}
