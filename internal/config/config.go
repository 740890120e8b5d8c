// Package config reads netbootd's YAML configuration: every key optional,
// unknown keys rejected, values checked once at start-up so that a bad
// config stops the appliance before it touches the network.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole of netbootd's configuration file.
type Config struct {
	StateDir  string    `yaml:"state_dir"`
	TFTPRoot  string    `yaml:"tftp_root"`
	HTTP      HTTP      `yaml:"http"`
	TFTP      TFTP      `yaml:"tftp"`
	DHCP      DHCP      `yaml:"dhcp"`
	PXE       PXE       `yaml:"pxe"`
	Inventory Inventory `yaml:"inventory"`
}

// HTTP configures the Aggregate Manager's HTTP server.
type HTTP struct {
	Listen string `yaml:"listen"`
}

// TFTP configures the TFTP server; an empty Listen disables it.
type TFTP struct {
	Listen string `yaml:"listen"`
}

// DHCP configures the DHCP server.
type DHCP struct {
	Enabled   bool          `yaml:"enabled"`
	Interface string        `yaml:"interface"`
	ServerIP  string        `yaml:"server_ip"`
	Subnet    string        `yaml:"subnet"`
	Router    string        `yaml:"router"`
	DNS       []string      `yaml:"dns"`
	Domain    string        `yaml:"domain"`
	LeaseTime time.Duration `yaml:"lease_time"`
	Bootfile  string        `yaml:"bootfile"`
	// BootfileEFI is the boot file for UEFI clients (option 93 = 6, 7 or
	// 9); Bootfile is for BIOS clients (93 = 0) and all others.
	BootfileEFI string `yaml:"bootfile_efi"`
	// Pool is "FIRST-LAST", a range inside Subnet from which MACs that are
	// not in the inventory get leases; "" ignores unknown MACs.
	Pool string `yaml:"pool"`
	// IPXEFast sends iPXE option 175.176 = 1 (skip the ProxyDHCP wait) and
	// answers IPv6 router solicitations on Interface (ends iPXE's IPv6 wait).
	IPXEFast bool `yaml:"ipxe_fast"`
	// Mode is "server" (addresses and boot info) or "proxy" (PXE boot info
	// only, on ports 67 and 4011, beside another site's DHCP server).
	Mode string `yaml:"mode"`
	// Workers bounds how many requests are handled at once.
	Workers int `yaml:"workers"`
	// Subnets are the segments behind DHCP relays, chosen by giaddr.
	Subnets []DHCPSubnet `yaml:"subnets"`
}

// DHCPSubnet is a segment reached through a relay agent.
type DHCPSubnet struct {
	Subnet string `yaml:"subnet"`
	Router string `yaml:"router"`
	Pool   string `yaml:"pool"` // "FIRST-LAST" inside Subnet, or ""
}

// PXE configures the boot-link manager.
type PXE struct {
	CfgDir       string        `yaml:"cfg_dir"`
	DefaultImage string        `yaml:"default_image"`
	LinkLifetime time.Duration `yaml:"link_lifetime"`
}

// Inventory names the seed file imported into an empty database.
type Inventory struct {
	Seed string `yaml:"seed"`
}

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		StateDir: "/var/lib/netboot",
		TFTPRoot: "/tftpboot",
		HTTP:     HTTP{Listen: ":5054"},
		TFTP:     TFTP{Listen: ":69"},
		DHCP: DHCP{
			Interface:   "eth1",
			ServerIP:    "10.18.0.1",
			Subnet:      "10.18.0.0/16",
			Router:      "10.18.0.1",
			DNS:         []string{"10.18.0.1"},
			Domain:      "orbit-lab.org",
			LeaseTime:   time.Hour,
			Bootfile:    "pxelinux.0",
			BootfileEFI: "syslinux.efi",
			IPXEFast:    true,
			Mode:        "server",
			Workers:     8,
		},
		PXE: PXE{
			CfgDir:       "pxelinux.cfg",
			DefaultImage: "orbit-2.0.0",
			LinkLifetime: 300 * time.Second,
		},
		Inventory: Inventory{Seed: "/etc/netboot/inventory.yaml"},
	}
}

// Load reads and checks the file at path. An empty path gives the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		cfg := Default()
		return cfg, cfg.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes data over the defaults and validates the result.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// yaml.v3 names the offending key and its line ("line 3: field foo not
	// found in type config.HTTP"), which is what an operator needs.
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the values that can be checked without touching the
// network; ports in use are found when the services bind.
func (c Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state_dir: must not be empty"))
	}
	if c.TFTPRoot == "" {
		errs = append(errs, errors.New("tftp_root: must not be empty"))
	}
	if c.HTTP.Listen == "" {
		errs = append(errs, errors.New("http.listen: must not be empty"))
	}
	if c.PXE.CfgDir == "" {
		errs = append(errs, errors.New("pxe.cfg_dir: must not be empty"))
	}
	if c.PXE.LinkLifetime <= 0 {
		errs = append(errs, fmt.Errorf("pxe.link_lifetime: %v: must be positive", c.PXE.LinkLifetime))
	}
	if c.DHCP.LeaseTime <= 0 {
		errs = append(errs, fmt.Errorf("dhcp.lease_time: %v: must be positive", c.DHCP.LeaseTime))
	}
	if _, err := netip.ParsePrefix(c.DHCP.Subnet); err != nil {
		errs = append(errs, fmt.Errorf("dhcp.subnet: %q is not a CIDR prefix: %w", c.DHCP.Subnet, err))
	}
	for _, f := range []struct{ key, val string }{{"dhcp.server_ip", c.DHCP.ServerIP}, {"dhcp.router", c.DHCP.Router}} {
		if _, err := netip.ParseAddr(f.val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not an IP address", f.key, f.val))
		}
	}
	for i, s := range c.DHCP.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			errs = append(errs, fmt.Errorf("dhcp.dns[%d]: %q is not an IP address", i, s))
		}
	}
	errs = append(errs, c.DHCP.validateMore()...)
	return errors.Join(errs...)
}

// validateMore checks the keys of the pool, relay and proxy features.
func (d DHCP) validateMore() []error {
	var errs []error
	switch d.Mode {
	case "server", "proxy":
	default:
		errs = append(errs, fmt.Errorf("dhcp.mode: %q: want server or proxy", d.Mode))
	}
	if d.Workers < 1 || d.Workers > 1024 {
		errs = append(errs, fmt.Errorf("dhcp.workers: %d: want 1 to 1024", d.Workers))
	}
	if d.Bootfile == "" {
		errs = append(errs, errors.New("dhcp.bootfile: must not be empty"))
	}
	if ip, err := netip.ParseAddr(d.ServerIP); err == nil && !ip.Is4() {
		errs = append(errs, fmt.Errorf("dhcp.server_ip: %q is not an IPv4 address", d.ServerIP))
	}
	var prefixes []netip.Prefix
	if main, err := netip.ParsePrefix(d.Subnet); err == nil {
		if !main.Addr().Is4() {
			errs = append(errs, fmt.Errorf("dhcp.subnet: %q is not an IPv4 prefix", d.Subnet))
		}
		prefixes = append(prefixes, main.Masked())
		if err := checkPool(d.Pool, main); err != nil {
			errs = append(errs, fmt.Errorf("dhcp.pool: %w", err))
		}
	}
	for i, sn := range d.Subnets {
		key := fmt.Sprintf("dhcp.subnets[%d]", i)
		p, err := netip.ParsePrefix(sn.Subnet)
		if err != nil || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("%s.subnet: %q is not an IPv4 CIDR prefix", key, sn.Subnet))
			continue
		}
		p = p.Masked()
		for _, q := range prefixes {
			if p.Overlaps(q) {
				errs = append(errs, fmt.Errorf("%s.subnet: %s overlaps %s", key, p, q))
			}
		}
		prefixes = append(prefixes, p)
		if sn.Router != "" {
			if r, err := netip.ParseAddr(sn.Router); err != nil || !p.Contains(r) {
				errs = append(errs, fmt.Errorf("%s.router: %q is not an address in %s", key, sn.Router, p))
			}
		}
		if err := checkPool(sn.Pool, p); err != nil {
			errs = append(errs, fmt.Errorf("%s.pool: %w", key, err))
		}
	}
	return errs
}

// checkPool checks a "FIRST-LAST" range: both ends in subnet, in order.
// The dhcpd package parses the same syntax.
func checkPool(pool string, subnet netip.Prefix) error {
	if pool == "" {
		return nil
	}
	first, last, ok := strings.Cut(pool, "-")
	a, errA := netip.ParseAddr(strings.TrimSpace(first))
	b, errB := netip.ParseAddr(strings.TrimSpace(last))
	switch {
	case !ok || errA != nil || errB != nil || !a.Is4() || !b.Is4():
		return fmt.Errorf("%q: want FIRST-LAST, two IPv4 addresses", pool)
	case b.Less(a):
		return fmt.Errorf("%q: %s comes after %s", pool, a, b)
	case !subnet.Contains(a) || !subnet.Contains(b):
		return fmt.Errorf("%q: not inside subnet %s", pool, subnet)
	}
	return nil
}
