// Package config reads netbootd's YAML configuration: every key optional,
// unknown keys rejected, values parsed into their types and checked once,
// here, at start-up, so that a bad config stops the appliance before it
// touches the network. cmd/netbootd hands each service the part it needs
// as that service's own Config; no service imports this package.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/orbit-lab/netboot/internal/iprange"
)

// Config is the whole of netbootd's configuration, parsed and checked.
type Config struct {
	StateDir  string
	TFTPRoot  string
	HTTP      HTTP
	HTTPBoot  HTTPBoot
	TFTP      TFTP
	DHCP      DHCP
	PXE       PXE
	Inventory Inventory
	OMF       OMF
	Audit     Audit
	Limits    Limits
	Imaging   Imaging
}

// OMF says who may call the OMF services (/pxe, /inventory, /cmc) with no
// token: a stock EC sends no header, so its host's address admits it.
type OMF struct {
	Allow     []netip.Prefix // every call (omf.allow); default: loopback only
	AllowRead []netip.Prefix // the read-only calls too (omf.allow_read); default: none
}

// Audit configures the audit log of mutations.
type Audit struct {
	// Retention is how long an entry is kept.
	Retention time.Duration `yaml:"retention"`
}

// Limits are the per-source abuse limits of the AM.
type Limits struct {
	Enroll   Limit `yaml:"enroll"`    // RC enrollments
	AuthFail Limit `yaml:"auth_fail"` // requests answered 401
	OMF      Limit `yaml:"omf"`       // OMF calls (/pxe, /inventory, /cmc)
}

// Limit is a per-source rate: PerMinute on average, Burst at once; a
// PerMinute of 0 turns the limit off.
type Limit struct {
	PerMinute float64 `yaml:"per_minute"`
	Burst     int     `yaml:"burst"`
}

// HTTPBoot configures the boot files served over HTTP on the AM's
// listener: tftp_root under Prefix; an empty Prefix disables them.
type HTTPBoot struct {
	Prefix string `yaml:"prefix"`
}

// HTTP configures the Aggregate Manager's HTTP server: one handler on up
// to two listeners, at least one of them set.
type HTTP struct {
	// Listen is the plain-HTTP listener, for nodes (boot files, iPXE
	// scripts, the RCs' calls with their per-enrollment HMAC) and OMF ECs
	// on the control network; "" disables it.
	Listen string
	// TLSListen is the HTTPS listener, for operators' tokens; "" for none.
	// Set exactly when TLS is.
	TLSListen string
	TLS       TLS
}

// TLS is the certificate of the HTTPS listener: Auto, or Cert and Key.
// The zero TLS is no TLS.
type TLS struct {
	// Auto: a self-signed certificate made once and kept in
	// state_dir/tls, reused on every start.
	Auto bool
	Cert string // PEM certificate (chain) file
	Key  string // PEM private key file
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.Auto || t.Cert != "" || t.Key != "" }

// httpFile is the http section as written.
type httpFile struct {
	Listen    string  `yaml:"listen"`
	TLSListen string  `yaml:"tls_listen"`
	TLS       tlsFile `yaml:"tls"`
}

// tlsFile is http.tls as written: the word auto, or a mapping of cert
// and key.
type tlsFile struct{ TLS }

// UnmarshalYAML reads `auto` or `{cert: FILE, key: FILE}`; a null or ""
// is no TLS. The mapping's keys are checked here, as a custom decoder does
// not inherit the file's KnownFields.
func (t *tlsFile) UnmarshalYAML(n *yaml.Node) error {
	const want = "want auto or {cert: FILE, key: FILE}"
	switch n.Kind {
	case yaml.ScalarNode:
		switch {
		case n.Value == "auto":
			t.Auto = true
		case n.Tag == "!!null" || n.Value == "":
		default:
			return fmt.Errorf("line %d: http.tls: %q: %s", n.Line, n.Value, want)
		}
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: http.tls.%s: want a file name", v.Line, k.Value)
			}
			switch k.Value {
			case "cert":
				t.Cert = v.Value
			case "key":
				t.Key = v.Value
			default:
				return fmt.Errorf("line %d: http.tls: unknown key %q: %s", k.Line, k.Value, want)
			}
		}
		return nil
	default:
		return fmt.Errorf("line %d: http.tls: %s", n.Line, want)
	}
}

// parse checks the http section; the files are read when netbootd starts.
func (h httpFile) parse() (HTTP, []error) {
	var errs []error
	t := h.TLS.TLS
	if !t.Auto && (t.Cert == "") != (t.Key == "") {
		errs = append(errs, errors.New("http.tls: set both cert and key (PEM files), or auto"))
	}
	switch {
	case h.Listen == "" && h.TLSListen == "":
		errs = append(errs, errors.New("http.listen and http.tls_listen: both empty: the AM would not listen"))
	case h.TLSListen != "" && !t.Enabled():
		errs = append(errs, fmt.Errorf("http.tls_listen: %q needs http.tls: auto (a self-signed certificate kept in state_dir) "+
			"or {cert: FILE, key: FILE}", h.TLSListen))
	case h.TLSListen == "" && t.Enabled():
		errs = append(errs, errors.New(`http.tls: set, but http.tls_listen is empty: set where HTTPS listens, e.g. ":5443"`))
	case h.Listen == h.TLSListen && !strings.HasSuffix(h.Listen, ":0"): // port 0: two ports the system picks
		errs = append(errs, fmt.Errorf("http.listen and http.tls_listen: both %q: they are two listeners", h.Listen))
	}
	return HTTP{Listen: h.Listen, TLSListen: h.TLSListen, TLS: t}, errs
}

// TFTP configures the TFTP server; an empty Listen disables it.
type TFTP struct {
	Listen string `yaml:"listen"`
	// Timeout is how long a block waits for its ACK before it is sent
	// again (tftpd-hpa's --retransmit), Retries how often it is sent
	// again before the transfer is given up; 0: tftpd's defaults (1 s,
	// 5). A link that loses packets boots faster with a shorter timeout
	// and more retries.
	Timeout time.Duration `yaml:"timeout"`
	Retries int           `yaml:"retries"`
}

// Bounds of tftp.timeout and tftp.retries: below 10 ms a busy boot ROM
// would be sent every block twice; past a minute or 100 retries a dead
// client holds its transfer for hours.
const (
	minTFTPTimeout = 10 * time.Millisecond
	maxTFTPTimeout = time.Minute
	maxTFTPRetries = 100
)

func (t TFTP) check() []error {
	var errs []error
	if t.Timeout != 0 && (t.Timeout < minTFTPTimeout || t.Timeout > maxTFTPTimeout) {
		errs = append(errs, fmt.Errorf("tftp.timeout: %v: want %v to %v (or 0 for the default, 1s)", t.Timeout, minTFTPTimeout, maxTFTPTimeout))
	}
	if t.Retries < 0 || t.Retries > maxTFTPRetries {
		errs = append(errs, fmt.Errorf("tftp.retries: %d: want 1 to %d (or 0 for the default, 5)", t.Retries, maxTFTPRetries))
	}
	return errs
}

// DHCP configures the DHCP server: the file's dhcp section, parsed.
type DHCP struct {
	Enabled   bool
	Interface string
	ServerIP  netip.Addr   // IPv4
	Subnet    netip.Prefix // IPv4, masked
	Router    netip.Addr   // IPv4
	DNS       []netip.Addr // IPv4
	Domain    string
	LeaseTime time.Duration
	Bootfile  string
	// BootfileEFI is the boot file for UEFI PXE clients (option 93 = 6, 7
	// or 9): shim; Bootfile is for BIOS clients (93 = 0) and all others.
	BootfileEFI string
	// BootfileIPXEEFI is for UEFI x86-64 PXE clients when UEFILoader is
	// "ipxe": snponly.efi.
	BootfileIPXEEFI string
	// UEFILoader is "shim" (Secure Boot chain) or "ipxe".
	UEFILoader string
	// BootfileAA64 is for UEFI arm64 clients (option 93 = 11, 19), used
	// only if tftp_root has it.
	BootfileAA64 string
	// Pool is a range inside Subnet from which MACs that are not in the
	// inventory get leases; the zero Range ignores unknown MACs.
	Pool iprange.Range
	// IPXEScript sends iPXE clients their per-node script over HTTP (with
	// http_boot on); false: the file for their architecture.
	IPXEScript bool
	// IPXEFast sends iPXE option 175.176 = 1 (skip the ProxyDHCP wait) and
	// answers IPv6 router solicitations on Interface (ends iPXE's IPv6 wait).
	IPXEFast bool
	// Mode is "server" (addresses and boot info) or "proxy" (PXE boot info
	// only, on ports 67 and 4011, beside another site's DHCP server).
	Mode string
	// Workers bounds how many requests are handled at once (1 to 1024).
	Workers int
	// Subnets are the segments behind DHCP relays, chosen by giaddr.
	Subnets []DHCPSubnet
}

// DHCPSubnet is a segment reached through a relay agent.
type DHCPSubnet struct {
	Subnet netip.Prefix  // IPv4, masked; overlaps no other
	Router netip.Addr    // inside Subnet, or the zero Addr
	Pool   iprange.Range // inside Subnet, or the zero Range
}

// PXE configures the boot-link manager.
type PXE struct {
	CfgDir       string        `yaml:"cfg_dir"`
	DefaultImage string        `yaml:"default_image"`
	LinkLifetime time.Duration `yaml:"link_lifetime"`
}

// Inventory says where the inventory comes from: at most one of File and
// Seed is set.
type Inventory struct {
	// File is the inventory's source of truth: netbootd reads it at start
	// and on SIGHUP, the database follows it (nodes it drops are deleted),
	// and the API refuses to change nodes.
	File string
	// Seed is imported once into an empty database; after that the API
	// (nbctl inventory import, PUT and DELETE of nodes) keeps the inventory.
	Seed string
}

// DefaultInventoryFile is inventory.file when the config names neither
// inventory.file nor inventory.seed.
const DefaultInventoryFile = "/etc/netboot/inventory.yaml"

// file is the YAML document as written: addresses, prefixes and ranges
// are text until parse turns them into a Config.
type file struct {
	StateDir  string        `yaml:"state_dir"`
	TFTPRoot  string        `yaml:"tftp_root"`
	HTTP      httpFile      `yaml:"http"`
	HTTPBoot  HTTPBoot      `yaml:"http_boot"`
	TFTP      TFTP          `yaml:"tftp"`
	DHCP      dhcpFile      `yaml:"dhcp"`
	PXE       PXE           `yaml:"pxe"`
	Inventory inventoryFile `yaml:"inventory"`
	OMF       omfFile       `yaml:"omf"`
	Audit     Audit         `yaml:"audit"`
	Limits    Limits        `yaml:"limits"`
	Imaging   imagingFile   `yaml:"imaging"`
}

// omfFile is the omf section as written: CIDRs, or single addresses.
type omfFile struct {
	Allow     []string `yaml:"allow"`
	AllowRead []string `yaml:"allow_read"`
}

// inventoryFile is the inventory section as written: a key that is given,
// even as "", turns the default inventory.file off.
type inventoryFile struct {
	File *string `yaml:"file"`
	Seed *string `yaml:"seed"`
}

// dhcpFile is the dhcp section as written; DHCP says what each key means.
type dhcpFile struct {
	Enabled     bool             `yaml:"enabled"`
	Interface   string           `yaml:"interface"`
	ServerIP    string           `yaml:"server_ip"`
	Subnet      string           `yaml:"subnet"`
	Router      string           `yaml:"router"`
	DNS         []string         `yaml:"dns"`
	Domain      string           `yaml:"domain"`
	LeaseTime   time.Duration    `yaml:"lease_time"`
	Bootfile    string           `yaml:"bootfile"`
	BootfileEFI string           `yaml:"bootfile_efi"`
	BootfileIPX string           `yaml:"bootfile_ipxe_efi"`
	UEFILoader  string           `yaml:"uefi_loader"`
	BootfileA64 string           `yaml:"bootfile_aa64"`
	Pool        string           `yaml:"pool"` // "FIRST-LAST" or ""
	IPXEFast    bool             `yaml:"ipxe_fast"`
	IPXEScript  bool             `yaml:"ipxe_script"`
	Mode        string           `yaml:"mode"`
	Workers     int              `yaml:"workers"`
	Subnets     []dhcpSubnetFile `yaml:"subnets"`
}

// dhcpSubnetFile is one entry of dhcp.subnets as written.
type dhcpSubnetFile struct {
	Subnet string `yaml:"subnet"`
	Router string `yaml:"router"`
	Pool   string `yaml:"pool"` // "FIRST-LAST" inside Subnet, or ""
}

// defaults is the configuration used for every key the file leaves out.
func defaults() file {
	return file{
		StateDir: "/var/lib/netboot",
		TFTPRoot: "/tftpboot",
		HTTP:     httpFile{Listen: ":5054"},
		HTTPBoot: HTTPBoot{Prefix: "/boot/"},
		TFTP:     TFTP{Listen: ":69"},
		DHCP: dhcpFile{
			Interface:   "eth1",
			ServerIP:    "10.18.0.1",
			Subnet:      "10.18.0.0/16",
			Router:      "10.18.0.1",
			DNS:         []string{"10.18.0.1"},
			Domain:      "orbit-lab.org",
			LeaseTime:   time.Hour,
			Bootfile:    "pxelinux.0",
			BootfileEFI: "shimx64.efi",
			BootfileIPX: "snponly.efi",
			UEFILoader:  "shim",
			BootfileA64: "shimaa64.efi",
			IPXEFast:    true,
			IPXEScript:  true,
			Mode:        "server",
			Workers:     8,
		},
		PXE: PXE{
			CfgDir:       "pxelinux.cfg",
			DefaultImage: "orbit-2.0.0",
			LinkLifetime: 300 * time.Second,
		},
		OMF:   omfFile{Allow: []string{"127.0.0.0/8", "::1/128"}},
		Audit: Audit{Retention: 90 * 24 * time.Hour},
		// Per source: each node enrolls from its own address, once a boot
		// (a few times when it retries), so a whole grid booting at once
		// stays far below the enrollment limit. An EC drives a grid from
		// one address: a burst of one call per node (400) and more.
		Limits: Limits{
			Enroll:   Limit{PerMinute: 30, Burst: 20},
			AuthFail: Limit{PerMinute: 60, Burst: 100},
			OMF:      Limit{PerMinute: 1200, Burst: 1000},
		},
		Imaging: defaultImaging(),
	}
}

// Load reads and checks the file at path. An empty path gives the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		return Parse(nil)
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

// Parse decodes data over the defaults, then parses and checks the result.
func Parse(data []byte) (Config, error) {
	f := defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// yaml.v3 names the offending key and its line ("line 3: field foo not
	// found in type config.HTTP"), which is what an operator needs.
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	return f.parse()
}

// parse checks the values that can be checked without touching the
// network (ports in use are found when the services bind) and returns
// them typed. Every problem is reported, each under its key.
func (f file) parse() (Config, error) {
	var errs []error
	if f.StateDir == "" {
		errs = append(errs, errors.New("state_dir: must not be empty"))
	}
	if f.TFTPRoot == "" {
		errs = append(errs, errors.New("tftp_root: must not be empty"))
	}
	errs = append(errs, f.TFTP.check()...)
	http, httpErrs := f.HTTP.parse()
	errs = append(errs, httpErrs...)
	if err := checkBootPrefix(f.HTTPBoot.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("http_boot.prefix: %q: %w", f.HTTPBoot.Prefix, err))
	}
	if f.PXE.CfgDir == "" {
		errs = append(errs, errors.New("pxe.cfg_dir: must not be empty"))
	}
	if f.PXE.LinkLifetime <= 0 {
		errs = append(errs, fmt.Errorf("pxe.link_lifetime: %v: must be positive", f.PXE.LinkLifetime))
	}
	if f.Audit.Retention <= 0 {
		errs = append(errs, fmt.Errorf("audit.retention: %v: must be positive", f.Audit.Retention))
	}
	for _, l := range []struct {
		key string
		l   Limit
	}{{"limits.enroll", f.Limits.Enroll}, {"limits.auth_fail", f.Limits.AuthFail}, {"limits.omf", f.Limits.OMF}} {
		switch {
		case l.l.PerMinute < 0:
			errs = append(errs, fmt.Errorf("%s.per_minute: %v: must not be negative (0 turns the limit off)", l.key, l.l.PerMinute))
		case l.l.PerMinute > 0 && l.l.Burst < 1:
			errs = append(errs, fmt.Errorf("%s.burst: %d: must be at least 1", l.key, l.l.Burst))
		}
	}
	inv, err := f.Inventory.parse()
	if err != nil {
		errs = append(errs, err)
	}
	var omf OMF
	omf.Allow, err = parsePrefixes("omf.allow", f.OMF.Allow)
	errs = append(errs, err)
	omf.AllowRead, err = parsePrefixes("omf.allow_read", f.OMF.AllowRead)
	errs = append(errs, err)
	dhcp, dhcpErrs := f.DHCP.parse()
	errs = append(errs, dhcpErrs...)
	imaging, imagingErrs := f.Imaging.parse()
	if err := errors.Join(append(errs, imagingErrs...)...); err != nil {
		return Config{}, err
	}
	return Config{
		StateDir: f.StateDir, TFTPRoot: f.TFTPRoot, HTTP: http, HTTPBoot: f.HTTPBoot, TFTP: f.TFTP,
		DHCP: dhcp, PXE: f.PXE, Inventory: inv, OMF: omf, Audit: f.Audit, Limits: f.Limits,
		Imaging: imaging,
	}, nil
}

// parsePrefixes reads a list of CIDRs (10.18.0.0/24) or addresses
// (10.18.0.5, one host), IPv4 or IPv6, each masked; the problems are
// joined under key.
func parsePrefixes(key string, vs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, v := range vs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%s: %q: want a CIDR such as 10.18.0.0/24, or an address", key, v))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// amPaths are the first path segments the AM's own routes use: a boot
// prefix under one of them would shadow them or clash in the router.
var amPaths = []string{"api", "pxe", "inventory", "cmc"}

// checkBootPrefix allows "" (disabled) or a path like /boot/ or
// /files/boot/: segments of letters, digits, '.', '_', '-', '~', neither
// "." nor "..", none of them ':' or '*' (which the router would read as
// parameters), the first not one of the AM's.
func checkBootPrefix(p string) error {
	if p == "" {
		return nil
	}
	inner, lead := strings.CutPrefix(p, "/")
	inner, trail := strings.CutSuffix(inner, "/")
	if !lead || !trail || inner == "" {
		return errors.New(`want a path that starts and ends with "/", like /boot/, or "" to disable`)
	}
	for i, seg := range strings.Split(inner, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf(`segment %q: must not be empty, "." or ".."`, seg)
		}
		if at := strings.IndexFunc(seg, notPrefixChar); at >= 0 {
			r, _ := utf8.DecodeRuneInString(seg[at:])
			return fmt.Errorf("segment %q: character %q (want letters, digits, . _ - ~)", seg, r)
		}
		if i == 0 && slices.Contains(amPaths, seg) {
			return fmt.Errorf("/%s/ is the AM's", seg)
		}
	}
	return nil
}

func notPrefixChar(r rune) bool {
	ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-~", r)
	return !ok
}

// parse picks the inventory's model: the file (the default), the seed, or
// neither.
func (i inventoryFile) parse() (Inventory, error) {
	if i.File == nil && i.Seed == nil {
		return Inventory{File: DefaultInventoryFile}, nil
	}
	var out Inventory
	if i.File != nil {
		out.File = *i.File
	}
	if i.Seed != nil {
		out.Seed = *i.Seed
	}
	if out.File != "" && out.Seed != "" {
		return Inventory{}, errors.New("inventory: file and seed are both set: set one (file: the inventory follows the file, " +
			"read at start and on SIGHUP; seed: imported once into an empty database, then kept through the API)")
	}
	return out, nil
}

// parse checks and types the dhcp section.
func (d dhcpFile) parse() (DHCP, []error) {
	var errs []error
	addr := func(key, s string) netip.Addr {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not an IP address", key, s))
		case !a.Is4():
			errs = append(errs, fmt.Errorf("%s: %q is not an IPv4 address", key, s))
		}
		return a
	}
	out := DHCP{
		Enabled: d.Enabled, Interface: d.Interface, Domain: d.Domain, LeaseTime: d.LeaseTime,
		Bootfile: d.Bootfile, BootfileEFI: d.BootfileEFI, IPXEFast: d.IPXEFast, Mode: d.Mode, Workers: d.Workers,
		BootfileIPXEEFI: d.BootfileIPX, UEFILoader: d.UEFILoader, BootfileAA64: d.BootfileA64, IPXEScript: d.IPXEScript,
	}
	switch d.UEFILoader {
	case "shim", "ipxe":
	default:
		errs = append(errs, fmt.Errorf("dhcp.uefi_loader: %q: want shim or ipxe", d.UEFILoader))
	}
	if d.UEFILoader == "ipxe" && d.BootfileIPX == "" {
		errs = append(errs, errors.New("dhcp.bootfile_ipxe_efi: must not be empty with uefi_loader: ipxe"))
	}
	if d.LeaseTime <= 0 {
		errs = append(errs, fmt.Errorf("dhcp.lease_time: %v: must be positive", d.LeaseTime))
	}
	main, mainErr := netip.ParsePrefix(d.Subnet)
	if mainErr != nil {
		errs = append(errs, fmt.Errorf("dhcp.subnet: %q is not a CIDR prefix: %w", d.Subnet, mainErr))
	}
	out.ServerIP = addr("dhcp.server_ip", d.ServerIP)
	out.Router = addr("dhcp.router", d.Router)
	for i, s := range d.DNS {
		out.DNS = append(out.DNS, addr(fmt.Sprintf("dhcp.dns[%d]", i), s))
	}
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
	var prefixes []netip.Prefix
	if mainErr == nil {
		if !main.Addr().Is4() {
			errs = append(errs, fmt.Errorf("dhcp.subnet: %q is not an IPv4 prefix", d.Subnet))
		}
		out.Subnet = main.Masked()
		prefixes = append(prefixes, out.Subnet)
		var err error
		if out.Pool, err = parsePool(d.Pool, main); err != nil {
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
		relay := DHCPSubnet{Subnet: p}
		if sn.Router != "" {
			r, err := netip.ParseAddr(sn.Router)
			if err != nil || !p.Contains(r) {
				errs = append(errs, fmt.Errorf("%s.router: %q is not an address in %s", key, sn.Router, p))
			}
			relay.Router = r
		}
		if relay.Pool, err = parsePool(sn.Pool, p); err != nil {
			errs = append(errs, fmt.Errorf("%s.pool: %w", key, err))
		}
		out.Subnets = append(out.Subnets, relay)
	}
	return out, errs
}

// parsePool parses a "FIRST-LAST" range ("" is none) that must lie inside
// subnet.
func parsePool(pool string, subnet netip.Prefix) (iprange.Range, error) {
	r, err := iprange.Parse(pool)
	if err != nil {
		return iprange.Range{}, err
	}
	if !r.Within(subnet) {
		return iprange.Range{}, fmt.Errorf("%q: not inside subnet %s", pool, subnet)
	}
	return r, nil
}
