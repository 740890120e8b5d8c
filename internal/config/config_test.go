package config

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means success
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file gives defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.HTTP.Listen != ":5054" || c.PXE.LinkLifetime != 300*time.Second || c.TFTP.Listen != ":69" {
				t.Errorf("defaults not applied: %+v", c)
			}
		}},
		{name: "keys override defaults", yaml: "tftp_root: /srv/tftp\npxe: { link_lifetime: 600s, default_image: x }\ntftp: { listen: \"\" }\n",
			check: func(t *testing.T, c Config) {
				if c.TFTPRoot != "/srv/tftp" || c.PXE.LinkLifetime != 600*time.Second || c.PXE.DefaultImage != "x" || c.TFTP.Listen != "" {
					t.Errorf("got %+v", c)
				}
				if c.PXE.CfgDir != "pxelinux.cfg" {
					t.Errorf("sibling default lost: cfg_dir = %q", c.PXE.CfgDir)
				}
			}},
		{name: "full example", yaml: `state_dir: /var/lib/netboot
tftp_root: /tftpboot
http:  { listen: ":5054" }
tftp:  { listen: ":69" }
dhcp:  { enabled: false, interface: eth1, server_ip: 10.18.0.1, subnet: 10.18.0.0/16,
         router: 10.18.0.1, dns: [10.18.0.1], domain: orbit-lab.org, lease_time: 1h,
         bootfile: pxelinux.0 }
pxe:   { cfg_dir: pxelinux.cfg, default_image: orbit-2.0.0, link_lifetime: 300s }
inventory: { seed: /etc/netboot/inventory.yaml }
`},
		{name: "unknown top-level key names key and line", yaml: "state_dir: /x\nbogus: 1\n", wantErr: "line 2: field bogus not found"},
		{name: "unknown nested key", yaml: "http:\n  listen: \":1\"\n  port: 5\n", wantErr: "line 3: field port not found"},
		{name: "bad CIDR", yaml: "dhcp: { subnet: 10.18.0.0/33 }\n", wantErr: "dhcp.subnet"},
		{name: "bad router", yaml: "dhcp: { router: 10.18.0 }\n", wantErr: "dhcp.router"},
		{name: "bad dns", yaml: "dhcp: { dns: [1.2.3.4, nope] }\n", wantErr: "dhcp.dns[1]"},
		{name: "bad duration", yaml: "pxe: { link_lifetime: forever }\n", wantErr: "line 1: cannot unmarshal !!str `forever` into time.Duration"},
		{name: "negative lifetime", yaml: "pxe: { link_lifetime: -5s }\n", wantErr: "must be positive"},
		{name: "not a mapping", yaml: "- a\n- b\n", wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
