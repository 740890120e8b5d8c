package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/iprange"
)

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)

// cmpNetip compares netip values by ==, as cmp cannot see inside them.
var cmpNetip = []cmp.Option{cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })}

// wantDefaults are the defaults the README and examples/netbootd.yaml
// document, written out here rather than taken from Default.
var wantDefaults = Config{
	StateDir: "/var/lib/netboot",
	TFTPRoot: "/tftpboot",
	HTTP:     HTTP{Listen: ":5054"},
	HTTPBoot: HTTPBoot{Prefix: "/boot/"},
	TFTP:     TFTP{Listen: ":69"},
	DHCP: DHCP{Interface: "eth1", ServerIP: addr("10.18.0.1"), Subnet: prefix("10.18.0.0/16"), Router: addr("10.18.0.1"),
		DNS: []netip.Addr{addr("10.18.0.1")}, Domain: "orbit-lab.org", LeaseTime: time.Hour, Bootfile: "pxelinux.0",
		BootfileEFI: "shimx64.efi", BootfileIPXEEFI: "snponly.efi", UEFILoader: "shim", BootfileAA64: "shimaa64.efi",
		IPXEFast: true, IPXEScript: true, Mode: "server", Workers: 8},
	PXE:       PXE{CfgDir: "pxelinux.cfg", DefaultImage: "orbit-2.0.0", LinkLifetime: 300 * time.Second},
	Inventory: Inventory{File: "/etc/netboot/inventory.yaml"},
	OMF:       OMF{Allow: []netip.Prefix{prefix("127.0.0.0/8"), prefix("::1/128")}},
	Audit:     Audit{Retention: 2160 * time.Hour},
	Limits: Limits{Enroll: Limit{PerMinute: 30, Burst: 20}, AuthFail: Limit{PerMinute: 60, Burst: 100},
		OMF: Limit{PerMinute: 1200, Burst: 1000}},
	Imaging: Imaging{Multicast: prefix("239.255.18.0/24"), PortFirst: 40000, PortLast: 40999, TTL: 1, Rate: 900e6,
		Fallback: 5 * time.Second},
}

// TestExampleFile: the shipped example says its values are the defaults.
func TestExampleFile(t *testing.T) {
	c, err := Load("../../examples/netbootd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantDefaults, c, cmpNetip...); diff != "" {
		t.Errorf("examples/netbootd.yaml (-want +got):\n%s", diff)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means success
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file gives defaults", yaml: "", check: func(t *testing.T, c Config) {
			if diff := cmp.Diff(wantDefaults, c, cmpNetip...); diff != "" {
				t.Errorf("defaults (-want +got):\n%s", diff)
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
		// Every key, none at its default, so a key the decoder drops shows.
		{name: "full example", yaml: `state_dir: /srv/netboot/state
tftp_root: /srv/tftp
http:  { listen: "127.0.0.1:8054", tls_listen: "10.30.0.1:8443", tls: { cert: /etc/netboot/cert.pem, key: /etc/netboot/key.pem } }
http_boot: { prefix: /files/boot/ }
tftp:  { listen: "10.30.0.1:1069" }
dhcp:  { enabled: true, interface: br-ctl, server_ip: 10.30.0.1, subnet: 10.30.0.0/16,
         router: 10.30.0.254, dns: [10.30.0.53, 10.30.0.54], domain: lab.example, lease_time: 45m,
         bootfile: lpxelinux.0, bootfile_efi: ipxe.efi, bootfile_ipxe_efi: ipxe/snp.efi, uefi_loader: ipxe, bootfile_aa64: aa/shim.efi,
         pool: 10.30.9.1-10.30.9.99,
         ipxe_fast: false, ipxe_script: false, mode: proxy, workers: 3,
         subnets: [ { subnet: 10.31.0.0/24, router: 10.31.0.1, pool: 10.31.0.100-10.31.0.199 } ] }
pxe:   { cfg_dir: cfg, default_image: orbit-3.1.4, link_lifetime: 90s }
inventory: { seed: /srv/netboot/nodes.yaml }
omf:   { allow: [10.10.0.5, 10.10.1.0/24], allow_read: ["10.20.0.1/16"] }
audit: { retention: 168h }
limits: { enroll: { per_minute: 10, burst: 5 }, auth_fail: { per_minute: 0 }, omf: { per_minute: 600, burst: 400 } }
imaging: { multicast: 239.1.2.0/28, port_range: 5000-5009, ttl: 4, rate: 1.5Gbit, source: 10.30.0.2, fallback: 2s }
`, check: func(t *testing.T, c Config) {
			want := Config{
				StateDir: "/srv/netboot/state",
				TFTPRoot: "/srv/tftp",
				HTTP: HTTP{Listen: "127.0.0.1:8054", TLSListen: "10.30.0.1:8443",
					TLS: TLS{Cert: "/etc/netboot/cert.pem", Key: "/etc/netboot/key.pem"}},
				HTTPBoot: HTTPBoot{Prefix: "/files/boot/"},
				TFTP:     TFTP{Listen: "10.30.0.1:1069"},
				DHCP: DHCP{Enabled: true, Interface: "br-ctl", ServerIP: addr("10.30.0.1"), Subnet: prefix("10.30.0.0/16"),
					Router: addr("10.30.0.254"), DNS: []netip.Addr{addr("10.30.0.53"), addr("10.30.0.54")}, Domain: "lab.example",
					LeaseTime: 45 * time.Minute, Bootfile: "lpxelinux.0", BootfileEFI: "ipxe.efi",
					BootfileIPXEEFI: "ipxe/snp.efi", UEFILoader: "ipxe", BootfileAA64: "aa/shim.efi",
					Pool: iprange.Range{First: addr("10.30.9.1"), Last: addr("10.30.9.99")}, IPXEFast: false, Mode: "proxy", Workers: 3,
					Subnets: []DHCPSubnet{{Subnet: prefix("10.31.0.0/24"), Router: addr("10.31.0.1"),
						Pool: iprange.Range{First: addr("10.31.0.100"), Last: addr("10.31.0.199")}}}},
				PXE:       PXE{CfgDir: "cfg", DefaultImage: "orbit-3.1.4", LinkLifetime: 90 * time.Second},
				Inventory: Inventory{Seed: "/srv/netboot/nodes.yaml"},
				OMF:       OMF{Allow: []netip.Prefix{prefix("10.10.0.5/32"), prefix("10.10.1.0/24")}, AllowRead: []netip.Prefix{prefix("10.20.0.0/16")}},
				Audit:     Audit{Retention: 168 * time.Hour},
				Limits: Limits{Enroll: Limit{PerMinute: 10, Burst: 5}, AuthFail: Limit{PerMinute: 0, Burst: 100},
					OMF: Limit{PerMinute: 600, Burst: 400}},
				Imaging: Imaging{Multicast: prefix("239.1.2.0/28"), PortFirst: 5000, PortLast: 5009, TTL: 4, Rate: 1.5e9,
					Source: addr("10.30.0.2"), Fallback: 2 * time.Second},
			}
			if diff := cmp.Diff(want, c, cmpNetip...); diff != "" {
				t.Errorf("parsed (-want +got):\n%s", diff)
			}
		}},
		{name: "imaging.multicast off", yaml: "imaging: { multicast: off }\n", check: func(t *testing.T, c Config) {
			if c.Imaging.Multicast.IsValid() {
				t.Errorf("multicast %v, want off", c.Imaging.Multicast)
			}
		}},
		{name: "imaging.multicast: unicast range", yaml: "imaging: { multicast: 10.0.0.0/8 }\n", wantErr: "imaging.multicast: \"10.0.0.0/8\": not an IPv4 multicast range"},
		{name: "imaging.port_range: backwards", yaml: "imaging: { port_range: 5000-4000 }\n", wantErr: "imaging.port_range"},
		{name: "imaging.rate: no unit", yaml: "imaging: { rate: 900 }\n", wantErr: "imaging.rate: \"900\""},
		{name: "imaging.rate: tc's lower case", yaml: "imaging: { rate: 250mbit }\n", check: func(t *testing.T, c Config) {
			if c.Imaging.Rate != 250e6 {
				t.Errorf("rate %d, want 250e6", c.Imaging.Rate)
			}
		}},
		{name: "imaging.rate: not a number", yaml: "imaging: { rate: NaNbit }\n", wantErr: "imaging.rate"},
		{name: "imaging.rate: below a bit", yaml: "imaging: { rate: 0.1bit }\n", wantErr: "imaging.rate"},
		{name: "imaging.rate: zero", yaml: "imaging: { rate: 0Mbit }\n", wantErr: "imaging.rate"},
		{name: "imaging.ttl: zero", yaml: "imaging: { ttl: 0 }\n", wantErr: "imaging.ttl"},
		{name: "omf.allow: not a CIDR", yaml: "omf: { allow: [10.0.0.0/33], allow_read: [ec-host] }\n", wantErr: "omf.allow_read: \"ec-host\""},
		{name: "omf.allow: empty, nobody without a token", yaml: "omf: { allow: [] }\n", check: func(t *testing.T, c Config) {
			if len(c.OMF.Allow) != 0 {
				t.Errorf("omf.allow %v: want none", c.OMF.Allow)
			}
		}},
		{name: "inventory: seed, the older model", yaml: "inventory: { seed: /srv/nodes.yaml }\n", check: func(t *testing.T, c Config) {
			if c.Inventory != (Inventory{Seed: "/srv/nodes.yaml"}) {
				t.Errorf("inventory %+v: want the seed alone", c.Inventory)
			}
		}},
		{name: "inventory: file", yaml: "inventory: { file: /srv/nodes.yaml, seed: \"\" }\n", check: func(t *testing.T, c Config) {
			if c.Inventory != (Inventory{File: "/srv/nodes.yaml"}) {
				t.Errorf("inventory %+v: want the file alone", c.Inventory)
			}
		}},
		{name: "inventory: neither, the API alone", yaml: "inventory: { file: \"\" }\n", check: func(t *testing.T, c Config) {
			if c.Inventory != (Inventory{}) {
				t.Errorf("inventory %+v: want none", c.Inventory)
			}
		}},
		{name: "inventory: file and seed", yaml: "inventory: { file: /a.yaml, seed: /b.yaml }\n", wantErr: "inventory: file and seed are both set: set one"},
		{name: "unknown top-level key names key and line", yaml: "state_dir: /x\nbogus: 1\n", wantErr: "line 2: field bogus not found"},
		{name: "unknown nested key", yaml: "http:\n  listen: \":1\"\n  port: 5\n", wantErr: "line 3: field port not found"},
		{name: "bad CIDR", yaml: "dhcp: { subnet: 10.18.0.0/33 }\n", wantErr: "dhcp.subnet"},
		{name: "bad router", yaml: "dhcp: { router: 10.18.0 }\n", wantErr: "dhcp.router"},
		{name: "bad dns", yaml: "dhcp: { dns: [1.2.3.4, nope] }\n", wantErr: "dhcp.dns[1]"},
		{name: "bad duration", yaml: "pxe: { link_lifetime: forever }\n", wantErr: "line 1: cannot unmarshal !!str `forever` into time.Duration"},
		{name: "negative lifetime", yaml: "pxe: { link_lifetime: -5s }\n", wantErr: "must be positive"},
		{name: "tftp timeout and retries", yaml: "tftp: { listen: \":69\", timeout: 250ms, retries: 12 }\n", check: func(t *testing.T, c Config) {
			if c.TFTP != (TFTP{Listen: ":69", Timeout: 250 * time.Millisecond, Retries: 12}) {
				t.Errorf("tftp: %+v", c.TFTP)
			}
		}},
		{name: "tftp timeout too short", yaml: "tftp: { timeout: 1ms }\n", wantErr: "tftp.timeout: 1ms: want 10ms to 1m0s"},
		{name: "tftp timeout negative", yaml: "tftp: { timeout: -1s }\n", wantErr: "tftp.timeout: -1s"},
		{name: "tftp timeout too long", yaml: "tftp: { timeout: 2m }\n", wantErr: "tftp.timeout: 2m0s"},
		{name: "tftp retries negative", yaml: "tftp: { retries: -1 }\n", wantErr: "tftp.retries: -1: want 1 to 100"},
		{name: "tftp retries too many", yaml: "tftp: { retries: 1000 }\n", wantErr: "tftp.retries: 1000"},
		{name: "not a mapping", yaml: "- a\n- b\n", wantErr: "cannot unmarshal"},
		{name: "dhcp pool, relays, proxy", yaml: `dhcp:
  pool: 10.18.200.1-10.18.200.254
  ipxe_fast: false
  mode: proxy
  workers: 4
  bootfile_efi: ipxe.efi
  subnets:
    - { subnet: 10.19.0.0/16, router: 10.19.0.1, pool: 10.19.9.1 - 10.19.9.9 }
    - { subnet: 10.20.0.0/24 }
`, check: func(t *testing.T, c Config) {
			want := DHCP{Interface: "eth1", ServerIP: addr("10.18.0.1"), Subnet: prefix("10.18.0.0/16"), Router: addr("10.18.0.1"),
				DNS: []netip.Addr{addr("10.18.0.1")}, Domain: "orbit-lab.org", LeaseTime: time.Hour, Bootfile: "pxelinux.0",
				BootfileEFI: "ipxe.efi", BootfileIPXEEFI: "snponly.efi", UEFILoader: "shim", BootfileAA64: "shimaa64.efi", IPXEScript: true,
				Pool: iprange.Range{First: addr("10.18.200.1"), Last: addr("10.18.200.254")}, IPXEFast: false, Mode: "proxy", Workers: 4,
				Subnets: []DHCPSubnet{{Subnet: prefix("10.19.0.0/16"), Router: addr("10.19.0.1"),
					Pool: iprange.Range{First: addr("10.19.9.1"), Last: addr("10.19.9.9")}}, {Subnet: prefix("10.20.0.0/24")}}}
			if diff := cmp.Diff(want, c.DHCP, cmpNetip...); diff != "" {
				t.Errorf("dhcp (-want +got):\n%s", diff)
			}
		}},
		{name: "pool outside subnet", yaml: "dhcp: { pool: 10.18.0.10-10.19.0.1 }\n", wantErr: `dhcp.pool: "10.18.0.10-10.19.0.1": not inside subnet 10.18.0.0/16`},
		{name: "pool backwards", yaml: "dhcp: { pool: 10.18.0.10-10.18.0.9 }\n", wantErr: "dhcp.pool: \"10.18.0.10-10.18.0.9\": 10.18.0.10 comes after 10.18.0.9"},
		{name: "pool not a range", yaml: "dhcp: { pool: 10.18.0.10 }\n", wantErr: "dhcp.pool: \"10.18.0.10\": want FIRST-LAST"},
		{name: "pool ipv6", yaml: "dhcp: { pool: fd00::1-fd00::2 }\n", wantErr: "want FIRST-LAST, two IPv4 addresses"},
		{name: "bad uefi_loader", yaml: "dhcp: { uefi_loader: grub }\n", wantErr: `dhcp.uefi_loader: "grub": want shim or ipxe`},
		{name: "uefi_loader ipxe without its file", yaml: "dhcp: { uefi_loader: ipxe, bootfile_ipxe_efi: \"\" }\n", wantErr: "dhcp.bootfile_ipxe_efi: must not be empty"},
		{name: "bad mode", yaml: "dhcp: { mode: relay }\n", wantErr: `dhcp.mode: "relay": want server or proxy`},
		{name: "zero workers", yaml: "dhcp: { workers: 0 }\n", wantErr: "dhcp.workers: 0: want 1 to 1024"},
		{name: "ipv6 router", yaml: "dhcp: { router: \"fd00::1\" }\n", wantErr: `dhcp.router: "fd00::1" is not an IPv4 address`},
		{name: "ipv6 dns", yaml: "dhcp: { dns: [10.18.0.1, \"fd00::53\"] }\n", wantErr: `dhcp.dns[1]: "fd00::53" is not an IPv4 address`},
		{name: "ipv6 server ip", yaml: "dhcp: { server_ip: \"fd00::1\" }\n", wantErr: "dhcp.server_ip: \"fd00::1\" is not an IPv4 address"},
		{name: "relay subnet overlaps main", yaml: "dhcp: { subnets: [ { subnet: 10.18.5.0/24 } ] }\n", wantErr: "dhcp.subnets[0].subnet: 10.18.5.0/24 overlaps 10.18.0.0/16"},
		{name: "relay subnet bad", yaml: "dhcp: { subnets: [ { subnet: nope } ] }\n", wantErr: `dhcp.subnets[0].subnet: "nope" is not an IPv4 CIDR prefix`},
		{name: "relay router outside", yaml: "dhcp: { subnets: [ { subnet: 10.19.0.0/24, router: 10.19.1.1 } ] }\n", wantErr: `dhcp.subnets[0].router: "10.19.1.1" is not an address in 10.19.0.0/24`},
		{name: "relay pool outside", yaml: "dhcp: { subnets: [ { subnet: 10.19.0.0/24, pool: 10.19.0.5-10.19.1.5 } ] }\n", wantErr: `dhcp.subnets[0].pool: "10.19.0.5-10.19.1.5": not inside subnet 10.19.0.0/24`},
		{name: "http boot disabled", yaml: "http_boot: { prefix: \"\" }\n", check: func(t *testing.T, c Config) {
			if c.HTTPBoot.Prefix != "" {
				t.Errorf("prefix %q, want disabled", c.HTTPBoot.Prefix)
			}
		}},
		{name: "http boot prefix without trailing slash", yaml: "http_boot: { prefix: /boot }\n", wantErr: `http_boot.prefix: "/boot": want a path that starts and ends with "/"`},
		{name: "http boot prefix relative", yaml: "http_boot: { prefix: boot/ }\n", wantErr: `http_boot.prefix: "boot/"`},
		{name: "http boot prefix root", yaml: "http_boot: { prefix: / }\n", wantErr: `http_boot.prefix: "/": want a path`},
		{name: "http boot prefix dotdot", yaml: "http_boot: { prefix: /boot/../pxe/ }\n", wantErr: `segment ".."`},
		{name: "http boot prefix doubled slash", yaml: "http_boot: { prefix: //boot/ }\n", wantErr: `segment ""`},
		{name: "http boot prefix router wildcard", yaml: "http_boot: { prefix: \"/:x/\" }\n", wantErr: `character ':'`},
		{name: "http boot prefix on the AM's api", yaml: "http_boot: { prefix: /api/boot/ }\n", wantErr: `/api/ is the AM's`},
		{name: "http boot prefix on the AM's pxe", yaml: "http_boot: { prefix: /pxe/ }\n", wantErr: `/pxe/ is the AM's`},
		{name: "http boot prefix below an AM name is fine", yaml: "http_boot: { prefix: /b/pxe/ }\n", check: func(t *testing.T, c Config) {
			if c.HTTPBoot.Prefix != "/b/pxe/" {
				t.Errorf("prefix %q", c.HTTPBoot.Prefix)
			}
		}},
		// http: the listeners and http.tls, in both forms; every combination
		// that could not serve what it says is refused, by key.
		{name: "plain only, the default", yaml: "", check: wantHTTP(HTTP{Listen: ":5054"})},
		{name: "auto", yaml: "http: { tls_listen: \":5443\", tls: auto }\n",
			check: wantHTTP(HTTP{Listen: ":5054", TLSListen: ":5443", TLS: TLS{Auto: true}})},
		{name: "auto, block style", yaml: "http:\n  listen: \"10.18.0.1:5054\"\n  tls_listen: \":5443\"\n  tls: auto\n",
			check: wantHTTP(HTTP{Listen: "10.18.0.1:5054", TLSListen: ":5443", TLS: TLS{Auto: true}})},
		{name: "files", yaml: "http: { tls_listen: \":5443\", tls: { cert: c.pem, key: k.pem } }\n",
			check: wantHTTP(HTTP{Listen: ":5054", TLSListen: ":5443", TLS: TLS{Cert: "c.pem", Key: "k.pem"}})},
		{name: "TLS only, plain disabled", yaml: "http: { listen: \"\", tls_listen: \":5443\", tls: auto }\n",
			check: wantHTTP(HTTP{TLSListen: ":5443", TLS: TLS{Auto: true}})},
		{name: "tls null is none", yaml: "http: { tls: ~ }\n", check: wantHTTP(HTTP{Listen: ":5054"})},
		{name: "tls empty is none", yaml: "http: { tls: \"\" }\n", check: wantHTTP(HTTP{Listen: ":5054"})},
		{name: "tls_listen without tls", yaml: "http: { tls_listen: \":5443\" }\n",
			wantErr: `http.tls_listen: ":5443" needs http.tls: auto`},
		{name: "tls without tls_listen", yaml: "http: { tls: auto }\n", wantErr: "http.tls: set, but http.tls_listen is empty"},
		{name: "no listener", yaml: "http: { listen: \"\" }\n", wantErr: "http.listen and http.tls_listen: both empty"},
		{name: "one address for both", yaml: "http: { listen: \":5054\", tls_listen: \":5054\", tls: auto }\n",
			wantErr: `both ":5054": they are two listeners`},
		{name: "port 0 for both: two free ports", yaml: "http: { listen: \"127.0.0.1:0\", tls_listen: \"127.0.0.1:0\", tls: auto }\n",
			check: wantHTTP(HTTP{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", TLS: TLS{Auto: true}})},
		{name: "cert without key", yaml: "http: { tls_listen: \":5443\", tls: { cert: c.pem } }\n", wantErr: "http.tls: set both cert and key"},
		{name: "key without cert", yaml: "http: { tls_listen: \":5443\", tls: { key: k.pem } }\n", wantErr: "http.tls: set both cert and key"},
		{name: "another word", yaml: "http: { tls_listen: \":5443\", tls: yes }\n", wantErr: `line 1: http.tls: "yes": want auto or {cert: FILE, key: FILE}`},
		{name: "unknown key in the mapping", yaml: "http:\n  tls_listen: \":5443\"\n  tls: { cert: c.pem, key: k.pem, ca: x.pem }\n",
			wantErr: `line 3: http.tls: unknown key "ca"`},
		{name: "a list", yaml: "http: { tls: [auto] }\n", wantErr: "http.tls: want auto or"},
		{name: "a mapping as a file", yaml: "http: { tls_listen: \":5443\", tls: { cert: { x: 1 }, key: k.pem } }\n", wantErr: "http.tls.cert: want a file name"},
		{name: "audit and limits", yaml: "audit: { retention: 720h }\nlimits: { omf: { per_minute: 0 }, enroll: { per_minute: 6, burst: 2 } }\n", check: func(t *testing.T, c Config) {
			want := Limits{Enroll: Limit{PerMinute: 6, Burst: 2}, AuthFail: Limit{PerMinute: 60, Burst: 100}, OMF: Limit{PerMinute: 0, Burst: 1000}}
			if diff := cmp.Diff(want, c.Limits); diff != "" || c.Audit.Retention != 720*time.Hour {
				t.Errorf("retention %v; limits (-want +got):\n%s", c.Audit.Retention, diff)
			}
		}},
		{name: "zero retention", yaml: "audit: { retention: 0s }\n", wantErr: "audit.retention: 0s: must be positive"},
		{name: "negative limit", yaml: "limits: { auth_fail: { per_minute: -1 } }\n", wantErr: "limits.auth_fail.per_minute: -1: must not be negative"},
		{name: "limit without burst", yaml: "limits: { enroll: { burst: 0 } }\n", wantErr: "limits.enroll.burst: 0: must be at least 1"},
		{name: "unknown limit", yaml: "limits: { polls: { burst: 1 } }\n", wantErr: "field polls not found"},
		{name: "unknown dhcp subnet key", yaml: "dhcp: { subnets: [ { subnet: 10.19.0.0/24, gateway: 10.19.0.1 } ] }\n", wantErr: "field gateway not found"},
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

// wantHTTP checks the http section.
func wantHTTP(want HTTP) func(*testing.T, Config) {
	return func(t *testing.T, c Config) {
		t.Helper()
		if diff := cmp.Diff(want, c.HTTP); diff != "" {
			t.Errorf("http (-want +got):\n%s", diff)
		}
	}
}
