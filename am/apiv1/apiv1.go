// Package apiv1 holds the JSON wire types of the operator API under
// /api/v1, as rc/proto does for the Resource Controller protocol: the AM
// (server) and amclient, nbctl and imaging (clients) share them, and none
// of the clients needs the database to speak the API. It imports only the
// standard library.
//
// Addresses are typed (netip.Addr, MAC); each marshals as the text it
// always had on the wire, and a zero one where the field was optional is
// left out (omitzero), so the JSON is byte for byte what it was.
//
// Nodes and images: the inventory's YAML model (internal/inventory) stays
// the document that seed, import and export read and write, with its
// line-numbered checks; the API answers with Node and Image, converted from
// it at the server's edge by one function. A PUT body has the same JSON
// fields, but the server reads it into the inventory model, whose string
// fields let the inventory's checks name every bad field in one 400 (a
// typed field would fail the decoding at the first bad address, without
// naming it): so there is no conversion the other way.
//
// The RC commands and disk images that operators exchange with the AM are
// the RC protocol's own shapes (proto.CommandRequest, proto.CommandStatus,
// proto.RCStatus, proto.DiskImage): they stay in rc/proto.
package apiv1

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Node is a testbed node as the API shows it (GET and PUT /nodes/{hrn}).
type Node struct {
	HRN        string     `json:"hrn"`
	Domain     string     `json:"domain"`
	Hostname   string     `json:"hostname"`
	ControlIP  netip.Addr `json:"control_ip"`
	ControlMAC MAC        `json:"control_mac"`
	CmcIP      netip.Addr `json:"cmc_ip,omitzero"`
	X          int        `json:"x"`
	Y          int        `json:"y"`
	Z          int        `json:"z"`
	Disk       string     `json:"disk"`
	PXEImage   string     `json:"pxe_image,omitzero"`
	// Bootfile, if set, is the node's DHCP boot file, relative to the
	// TFTP root.
	Bootfile string `json:"bootfile,omitzero"`
	// Power names the node's power driver ("qemu:SOCKET",
	// "ipmi:HOST:USER:PASSFILE", "none" or "").
	Power string `json:"power,omitzero"`
}

// Image is a PXE image (GET /images, PUT /images/{name}).
type Image struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Testbed is one domain and how many nodes it has (GET /testbeds).
type Testbed struct {
	Domain string `json:"domain"`
	Nodes  int    `json:"nodes"`
}

// BootLink is one active pxelinux.cfg link (GET /boot, PUT
// /nodes/{hrn}/boot): the node boots Image until ExpiresAt, the latest
// expiry of its outstanding references.
type BootLink struct {
	HRN       string     `json:"hrn"`
	ControlIP netip.Addr `json:"ip"`
	Hex       string     `json:"hex"`
	Image     string     `json:"image"`
	SetAt     time.Time  `json:"set_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	Refs      int        `json:"refs"` // OMF's per-node reference count
}

// BootRequest is the body of PUT /nodes/{hrn}/boot.
type BootRequest struct {
	Image    string `json:"image,omitzero"`    // default: the inventory's, else the configured default
	Lifetime string `json:"lifetime,omitzero"` // Go duration, e.g. "300s"; default: pxe.link_lifetime
}

// Event is one step on a node's boot timeline (GET /nodes/{hrn}/events).
type Event struct {
	ID     int64     `json:"id"`
	HRN    string    `json:"hrn"`
	At     time.Time `json:"at"`
	Source string    `json:"source"` // am, dhcp, tftp, rc, power
	What   string    `json:"what"`
	Detail string    `json:"detail,omitzero"`
}

// AuditEntry is one recorded mutation (GET /audit): who asked, what, and
// how it ended, refusals included.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Who    string    `json:"who"`             // the token's name, else the source address
	Role   string    `json:"role,omitzero"`   // the token's role; "" without a token
	Addr   string    `json:"addr"`            // the source address
	Method string    `json:"method"`          // GET for the OMF calls
	Route  string    `json:"route"`           // the route's pattern, e.g. /api/v1/nodes/:hrn/boot
	Target string    `json:"target,omitzero"` // a node's HRN or name, an image or token name, an OMF node set
	Status int       `json:"status"`
	Detail string    `json:"detail,omitzero"` // why it failed, or what the handler noted
}

// PowerRequest is the body of POST /nodes/{hrn}/power.
type PowerRequest struct {
	Action string `json:"action"` // on, offHard, offSoft, reboot, reset, status
}

// PowerReply answers it.
type PowerReply struct {
	HRN    string `json:"hrn"`
	Action string `json:"action"`
	State  string `json:"state"` // on, off, unknown
}

// Discovered is a MAC that asked for an address and is not in the
// inventory (GET /discovered).
type Discovered struct {
	MAC         MAC        `json:"mac"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastSeen    time.Time  `json:"last_seen"`
	Count       int64      `json:"count"`                 // DHCP requests seen
	LastIP      netip.Addr `json:"last_ip,omitzero"`      // last pool address offered or acked
	VendorClass string     `json:"vendor_class,omitzero"` // option 60, e.g. PXEClient:Arch:00000:UNDI:002001
	Relay       netip.Addr `json:"relay,omitzero"`        // relay (giaddr) it came through
}

// ImportReply answers POST /inventory: how many entries the document held.
type ImportReply struct {
	Imported ImportCounts `json:"imported"`
}

// ImportCounts counts the entries of an imported document.
type ImportCounts struct {
	Images   int `json:"images"`
	Nodes    int `json:"nodes"`
	Testbeds int `json:"testbeds"`
}

// Inventory sources in InventoryStatus.Source.
const (
	// InventoryFromFile: the inventory follows netbootd's inventory.file,
	// read at start and on SIGHUP; the API does not change nodes.
	InventoryFromFile = "file"
	// InventoryFromAPI: the API keeps the inventory (it may have been
	// seeded from inventory.seed into an empty database).
	InventoryFromAPI = "api"
)

// InventoryStatus answers GET /inventory/status: where the inventory comes
// from and, for a file, how its readings went.
type InventoryStatus struct {
	Source string `json:"source"`
	File   string `json:"file,omitzero"`
	// LoadedAt is when the inventory in force was read from File, and the
	// rest what that reading changed.
	LoadedAt  time.Time `json:"loaded_at,omitzero"`
	Added     []string  `json:"added,omitzero"`
	Changed   []string  `json:"changed,omitzero"`
	Removed   []string  `json:"removed,omitzero"`
	Unchanged int       `json:"unchanged,omitzero"`
	// Error, FailedAt and Problems are set when the last reading failed:
	// the inventory is still the one read at LoadedAt.
	Error    string    `json:"error,omitzero"`
	FailedAt time.Time `json:"failed_at,omitzero"`
	Problems []string  `json:"problems,omitzero"`
}

// TokenRequest is the body of POST /tokens. Role is viewer, operator or
// admin; Expires, if set, is when the token stops working.
type TokenRequest struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires,omitzero"`
}

// Token is an operator API token as GET /tokens lists it: never the
// token itself.
type Token struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// TokenCreated answers POST /tokens: the token, shown this once.
type TokenCreated struct {
	Token
	Secret string `json:"token"`
}

// ErrorBody is every non-2xx answer of /api/v1: the message, and for a
// rejected inventory document each of its problems.
type ErrorBody struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitzero"`
}

// ParseError reads an error answer's body; one that is not an ErrorBody
// (a proxy's page, a panic's text) is its own message, trimmed.
func ParseError(body []byte) ErrorBody {
	var e ErrorBody
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e = ErrorBody{Error: strings.TrimSpace(string(body))}
	}
	return e
}

// MAC is a hardware address that marshals as the usual lower-case,
// colon-separated text (net.HardwareAddr alone marshals as base64).
type MAC net.HardwareAddr

// String is the address as net.HardwareAddr writes it.
func (m MAC) String() string { return net.HardwareAddr(m).String() }

// MarshalText writes the address as String does; a nil MAC is "".
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads what ParseMAC reads.
func (m *MAC) UnmarshalText(b []byte) error {
	mac, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = mac
	return nil
}

// ParseMAC reads the forms net.ParseMAC reads, and colon-separated hex
// of any length, since the DHCP server records a client's hardware address
// as net.HardwareAddr.String wrote it whatever its length. "" is a nil MAC.
func ParseMAC(s string) (MAC, error) {
	if s == "" {
		return nil, nil
	}
	if hw, err := net.ParseMAC(s); err == nil {
		return MAC(hw), nil
	}
	colons := true
	for i := 2; i < len(s); i += 3 {
		colons = colons && s[i] == ':'
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if !colons || len(s)%3 != 2 || err != nil {
		return nil, &net.AddrError{Err: "invalid MAC address", Addr: s}
	}
	return MAC(b), nil
}

// WhoAmI answers GET /whoami: the token the call was made with, so that a
// client (the web view) shows only the actions its role may take.
type WhoAmI struct {
	Name string `json:"name"`
	Role string `json:"role"` // viewer, operator or admin
}
