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
			Interface: "eth1",
			ServerIP:  "10.18.0.1",
			Subnet:    "10.18.0.0/16",
			Router:    "10.18.0.1",
			DNS:       []string{"10.18.0.1"},
			Domain:    "orbit-lab.org",
			LeaseTime: time.Hour,
			Bootfile:  "pxelinux.0",
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
	return errors.Join(errs...)
}
