// Package inventory defines the testbed inventory as OMF modelled it
// (testbeds, nodes, PXE images) and the YAML document used to seed, import
// and export it. It checks a document as a whole so that an operator sees
// every bad entry at once.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/orbit-lab/netboot/internal/powerspec"
)

// File is the seed/import/export document.
type File struct {
	Images   []Image   `yaml:"images" json:"images"`
	Testbeds []Testbed `yaml:"testbeds" json:"testbeds"`
	// Lines, set by Load, are where the entries were in the text they
	// were read from, for Check to name in its problems. They are not part
	// of the document: Check's output has none.
	Lines *Lines `yaml:"-" json:"-"`
}

// Image is a PXE image: a pxelinux configuration in cfg_dir.
type Image struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description"`
}

// MarshalYAML writes a multi-line description double-quoted: as a literal
// block scalar that starts with a space, yaml.v3 writes an indentation
// indicator that it cannot read back, which broke the export. (Invalid
// UTF-8 goes as !!binary, without the problem.)
func (img Image) MarshalYAML() (any, error) {
	type plain Image // without this method
	if !strings.Contains(img.Description, "\n") || !utf8.ValidString(img.Description) {
		return plain(img), nil
	}
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	d := str(img.Description)
	d.Style = yaml.DoubleQuotedStyle
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("name"), str(img.Name), str("description"), d}}, nil
}

// Testbed is one OMF domain (sb8, grid, ...) and its nodes.
type Testbed struct {
	Domain string `yaml:"domain" json:"domain"`
	Nodes  []Node `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// Node is one testbed node. Domain is implied by its testbed in a File and
// filled in by the store.
type Node struct {
	HRN        string `yaml:"hrn" json:"hrn"`
	Domain     string `yaml:"-" json:"domain"`
	Hostname   string `yaml:"hostname,omitempty" json:"hostname"`
	ControlIP  string `yaml:"control_ip" json:"control_ip"`
	ControlMAC string `yaml:"control_mac" json:"control_mac"`
	CmcIP      string `yaml:"cmc_ip,omitempty" json:"cmc_ip,omitempty"`
	X          int    `yaml:"x" json:"x"`
	Y          int    `yaml:"y" json:"y"`
	Z          int    `yaml:"z,omitempty" json:"z"`
	Disk       string `yaml:"disk,omitempty" json:"disk"`
	PXEImage   string `yaml:"pxe_image,omitempty" json:"pxe_image,omitempty"`
	// Bootfile, if set, is the node's DHCP boot file (option 67), whatever
	// its architecture: a path relative to the TFTP root.
	Bootfile string `yaml:"bootfile,omitempty" json:"bootfile,omitempty"`
	// Power names the node's power driver: "qemu:/path/to/qmp.sock",
	// "ipmi:HOST:USER:PASSFILE", or "none"/empty for no power control.
	Power string `yaml:"power,omitempty" json:"power,omitempty"`
}

// ErrInvalid marks an entry that is malformed in itself.
var ErrInvalid = errors.New("invalid inventory entry")

// DefaultDisk is the disk OMF assumed when the inventory names none.
const DefaultDisk = "/dev/sda"

// nameRE bounds what may become a file name or a URL path segment: hrns,
// domains and image names never contain '/', NUL or spaces.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,254}$`)

// ValidName reports whether s is acceptable as an hrn, domain, hostname or
// image name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// validBootfile accepts a relative '/'-separated path of valid names, as a
// boot ROM sends it to TFTP: no "..", no empty or absolute parts.
func validBootfile(p string) bool {
	if len(p) > 127 { // the BOOTP file field holds 128 bytes with its NUL
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if !ValidName(part) || part == ".." {
			return false
		}
	}
	return true
}

// ParseFile decodes a document strictly: an unknown key is an error that
// names it and its line.
func ParseFile(data []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return File{}, nil
		}
		return File{}, fmt.Errorf("inventory: %w", err)
	}
	return f, nil
}

// Normalize checks one node and returns it in canonical form (MAC in
// lower-case colon form, disk defaulted, power spec trimmed). Domain must
// already be set.
func Normalize(n Node) (Node, error) {
	var errs []error
	if !ValidName(n.HRN) {
		errs = append(errs, fmt.Errorf("hrn %q is not a valid name", n.HRN))
	}
	if !ValidName(n.Domain) {
		errs = append(errs, fmt.Errorf("domain %q is not a valid name", n.Domain))
	}
	if n.Hostname != "" && !ValidName(n.Hostname) {
		errs = append(errs, fmt.Errorf("hostname %q is not a valid name", n.Hostname))
	}
	ip, err := netip.ParseAddr(n.ControlIP)
	if err != nil || !ip.Is4() {
		errs = append(errs, fmt.Errorf("control_ip %q is not an IPv4 address", n.ControlIP))
	} else {
		n.ControlIP = ip.String()
	}
	mac, err := net.ParseMAC(n.ControlMAC)
	if err != nil || len(mac) != 6 {
		errs = append(errs, fmt.Errorf("control_mac %q is not an Ethernet MAC address", n.ControlMAC))
	} else {
		n.ControlMAC = mac.String()
	}
	if n.CmcIP != "" {
		if ip, err := netip.ParseAddr(n.CmcIP); err != nil || !ip.Is4() {
			errs = append(errs, fmt.Errorf("cmc_ip %q is not an IPv4 address", n.CmcIP))
		} else {
			n.CmcIP = ip.String()
		}
	}
	if n.PXEImage != "" && !ValidName(n.PXEImage) {
		errs = append(errs, fmt.Errorf("pxe_image %q is not a valid name", n.PXEImage))
	}
	if n.Bootfile != "" && !validBootfile(n.Bootfile) {
		errs = append(errs, fmt.Errorf("bootfile %q is not a relative path inside the TFTP root", n.Bootfile))
	}
	// Stored as the driver reads it, so that an export and import give the
	// same spec.
	n.Power = strings.TrimSpace(n.Power)
	if err := powerspec.Check(n.Power); err != nil {
		errs = append(errs, fmt.Errorf("power %q: %w", n.Power, err))
	}
	if n.Disk == "" {
		n.Disk = DefaultDisk
	} else if !strings.HasPrefix(n.Disk, "/dev/") || path.Clean(n.Disk) != n.Disk || strings.Contains(n.Disk, " ") || strings.ContainsFunc(n.Disk, unicode.IsControl) {
		// Clean: "/dev/../etc/passwd" starts with /dev/ too.
		errs = append(errs, fmt.Errorf("disk %q is not a clean /dev path", n.Disk))
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return Node{}, fmt.Errorf("%w: node %q: %s", ErrInvalid, n.HRN, strings.Join(msgs, "; "))
	}
	return n, nil
}

// Normalize checks the whole document and returns it in canonical form, or
// an error naming every offending entry.
func (f File) Normalize() (File, error) {
	out, problems := f.Check()
	if len(problems) > 0 {
		return File{}, &Error{Problems: problems}
	}
	return out, nil
}

// Load reads a document as ParseFile does, and notes where each entry is
// in data (File.Lines), so that each problem Check finds then names its
// entry's line, as an operator editing a file of hundreds of nodes needs:
// "line 12: testbeds[0] (sb8) nodes[3]: ...".
func Load(data []byte) (File, error) {
	f, err := ParseFile(data)
	if err != nil {
		return File{}, err
	}
	f.Lines = entryLines(data)
	return f, nil
}

// Check returns the document's valid entries in canonical form and every
// problem: malformed fields, and hrns, IPs and MACs used twice in the file.
// Problems name their entry's line where f.Lines knows it.
func (f File) Check() (File, []error) {
	at := f.Lines
	var errs []error
	out := File{}
	images := map[string]bool{}
	for i, img := range f.Images {
		where := at.where(at.image(i), fmt.Sprintf("images[%d]", i))
		switch {
		case !ValidName(img.Name):
			errs = append(errs, fmt.Errorf("%s: name %q is not a valid name", where, img.Name))
		case images[img.Name]:
			errs = append(errs, fmt.Errorf("%s: duplicate image %q", where, img.Name))
		default:
			out.Images = append(out.Images, img)
		}
		images[img.Name] = true
	}
	domains := map[string]bool{}
	seen := map[string]map[string]string{"hrn": {}, "control_ip": {}, "control_mac": {}}
	for ti, tb := range f.Testbeds {
		where := at.where(at.testbed(ti), fmt.Sprintf("testbeds[%d]", ti))
		switch {
		case !ValidName(tb.Domain):
			errs = append(errs, fmt.Errorf("%s: domain %q is not a valid name", where, tb.Domain))
		case domains[tb.Domain]:
			errs = append(errs, fmt.Errorf("%s: duplicate domain %q", where, tb.Domain))
		}
		domains[tb.Domain] = true
		ntb := Testbed{Domain: tb.Domain}
		for ni, n := range tb.Nodes {
			where := at.where(at.node(ti, ni), fmt.Sprintf("testbeds[%d] (%s) nodes[%d]", ti, tb.Domain, ni))
			n.Domain = tb.Domain
			nn, err := Normalize(n)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			dup := false
			for _, k := range []struct{ key, val string }{{"hrn", nn.HRN}, {"control_ip", nn.ControlIP}, {"control_mac", nn.ControlMAC}} {
				if first, ok := seen[k.key][k.val]; ok {
					errs = append(errs, fmt.Errorf("%s: node %q: duplicate %s %s (already used by %s)", where, nn.HRN, k.key, k.val, first))
					dup = true
				} else {
					seen[k.key][k.val] = fmt.Sprintf("node %q at %s", nn.HRN, at.ref(at.node(ti, ni), where))
				}
			}
			if !dup {
				ntb.Nodes = append(ntb.Nodes, nn)
			}
		}
		out.Testbeds = append(out.Testbeds, ntb)
	}
	return out, errs
}

// Lines are the line numbers of a document's entries, by their index in
// File (0: unknown); a nil *Lines knows none.
type Lines struct {
	Images   []int
	Testbeds []int
	Nodes    [][]int // per testbed
}

func (l *Lines) image(i int) int {
	if l == nil || i >= len(l.Images) {
		return 0
	}
	return l.Images[i]
}

func (l *Lines) testbed(i int) int {
	if l == nil || i >= len(l.Testbeds) {
		return 0
	}
	return l.Testbeds[i]
}

func (l *Lines) node(ti, ni int) int {
	if l == nil || ti >= len(l.Nodes) || ni >= len(l.Nodes[ti]) {
		return 0
	}
	return l.Nodes[ti][ni]
}

// where is an entry's place in a problem: its line first, when known.
func (l *Lines) where(line int, path string) string {
	if line == 0 {
		return path
	}
	return fmt.Sprintf("line %d: %s", line, path)
}

// ref is how another problem points at an entry: by its line, when known.
func (l *Lines) ref(line int, where string) string {
	if line == 0 {
		return where
	}
	return fmt.Sprintf("line %d", line)
}

// entryLines finds the line of each image, testbed and node entry of the
// first document in data, as ParseFile decodes it. The positions are
// yaml.v3's, so they are the lines its own errors name.
func entryLines(data []byte) *Lines {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	l := &Lines{}
	root := deref(doc.Content[0])
	if imgs := mapValue(root, "images"); imgs != nil {
		for _, it := range imgs.Content {
			l.Images = append(l.Images, it.Line)
		}
	}
	if tbs := mapValue(root, "testbeds"); tbs != nil {
		for _, it := range tbs.Content {
			l.Testbeds = append(l.Testbeds, it.Line)
			var nodes []int
			if ns := mapValue(deref(it), "nodes"); ns != nil {
				for _, n := range ns.Content {
					nodes = append(nodes, n.Line)
				}
			}
			l.Nodes = append(l.Nodes, nodes)
		}
	}
	return l
}

// deref follows an alias (*name) to the node it names: an entry written
// as an alias is at the alias's line, its contents where the anchor is.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// mapValue is the sequence under key in mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			if v := deref(m.Content[i+1]); v != nil && v.Kind == yaml.SequenceNode {
				return v
			}
			return nil
		}
	}
	return nil
}

// Error lists every problem found in a document.
type Error struct{ Problems []error }

func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return e.Summary() + ":\n  " + strings.Join(msgs, "\n  ")
}

// Summary says how many problems there are, without listing them.
func (e *Error) Summary() string {
	return fmt.Sprintf("inventory rejected, nothing changed: %d problem(s)", len(e.Problems))
}

// Marshal writes the document in the seed file's shape: one flow mapping
// per image and per node, so a testbed of hundreds of nodes stays readable
// and diffable line by line.
func (f File) Marshal() ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(f); err != nil {
		return nil, fmt.Errorf("inventory: encode: %w", err)
	}
	styleExport(&doc, "")
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("inventory: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("inventory: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// styleExport sets the presentation: flow style for the items of images
// and nodes, MACs quoted (YAML 1.1 readers take some MACs for base-60
// numbers), and no quotes where YAML 1.2 needs none (yaml.v3 quotes "y").
func styleExport(n *yaml.Node, key string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			styleExport(c, key)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if key == "images" || key == "nodes" {
				c.Style = yaml.FlowStyle
			}
			styleExport(c, key)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			k.Style = 0
			switch {
			case k.Value == "control_mac":
				v.Style = yaml.DoubleQuotedStyle
			case v.Kind == yaml.ScalarNode:
				v.Style = 0
			}
			styleExport(v, k.Value)
		}
	}
}
