// Package amclient is a Go client of the AM's JSON API, used by nbctl and
// by tests that drive a running netbootd. It lives under internal/ as the
// one client of our own API; it speaks only the wire types (am/apiv1,
// rc/proto) and imports no service and not the store.
package amclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// Client talks to one appliance.
type Client struct {
	base   string
	http   *http.Client
	domain string // the testbed node names are looked up in; "" for all
	token  string // the operator API token sent as the bearer; "" for none
}

// New returns a client of the AM at base (e.g. http://localhost:5054).
func New(base string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 60 * time.Second}}
}

// WithToken is a client that sends token (nbctl token create, or the
// appliance's state_dir/admin.token) with every call.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// TokenInClear reports whether c's token would cross a network
// unencrypted: it has one, and its base is http:// to a host other than
// this one (loopback, or an address of one of its interfaces, as for nbctl
// run beside netbootd). The README's threat model says don't; nbctl warns.
func (c *Client) TokenInClear() bool {
	if c.token == "" {
		return false
	}
	u, err := url.Parse(c.base)
	if err != nil || u.Scheme != "http" {
		return false
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return !ip.IsLoopback() && !localAddr(ip)
	}
	return host != "localhost" && !strings.HasSuffix(host, ".localhost")
}

// localAddr reports whether ip is an address of one of this host's
// interfaces.
func localAddr(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if local, ok := netip.AddrFromSlice(n.IP); ok && local.Unmap() == ip.Unmap() {
				return true
			}
		}
	}
	return false
}

// WithTransport is a client whose connections go through rt: a
// benchmark's dialer into the network namespace the appliance runs in.
func (c *Client) WithTransport(rt http.RoundTripper) *Client {
	cp := *c
	cp.http = &http.Client{Timeout: c.http.Timeout, Transport: rt}
	return &cp
}

// send is every call's one way out: it adds the token.
func (c *Client) send(hc *http.Client, req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return hc.Do(req)
}

// Error is a non-2xx answer, with the server's message.
type Error struct {
	Status   int
	Message  string
	Problems []string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	if len(e.Problems) > 0 {
		msg += ":\n  " + strings.Join(e.Problems, "\n  ")
	}
	return msg
}

// newError reads a non-2xx answer's body.
func newError(status int, body []byte) *Error {
	e := apiv1.ParseError(body)
	return &Error{Status: status, Message: e.Error, Problems: e.Problems}
}

func (c *Client) do(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("amclient: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.send(c.http, req)
	if err != nil {
		return fmt.Errorf("amclient: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("amclient: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return newError(resp.StatusCode, data)
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = data
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("amclient: %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, "", nil, out)
}

func (c *Client) sendJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("amclient: %w", err)
		}
		body = bytes.NewReader(data)
	}
	return c.do(ctx, method, path, "application/json", body, out)
}

// InDomain is a client whose calls about a node look its name up in one
// testbed: the appliance takes a node's HRN, or a host name unique in the
// inventory, or in domain when one is given (OMF's rule).
func (c *Client) InDomain(domain string) *Client {
	cp := *c
	cp.domain = domain
	return &cp
}

// nodePath is the path of a call about a node (tail after its name, as
// "/boot"), named by HRN or host name, with the client's domain and q as
// the query.
func (c *Client) nodePath(node, tail string, q url.Values) string {
	if c.domain != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("domain", c.domain)
	}
	p := "/api/v1/nodes/" + url.PathEscape(node) + tail
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// Nodes lists nodes, of one testbed unless domain is "".
func (c *Client) Nodes(ctx context.Context, domain string) ([]apiv1.Node, error) {
	var out []apiv1.Node
	path := "/api/v1/nodes"
	if domain != "" {
		path += "?domain=" + url.QueryEscape(domain)
	}
	return out, c.getJSON(ctx, path, &out)
}

// Node returns one node, named by HRN or host name.
func (c *Client) Node(ctx context.Context, node string) (apiv1.Node, error) {
	var out apiv1.Node
	return out, c.getJSON(ctx, c.nodePath(node, "", nil), &out)
}

// PutNode adds or replaces a node (by HRN).
func (c *Client) PutNode(ctx context.Context, n apiv1.Node) (apiv1.Node, error) {
	var out apiv1.Node
	return out, c.sendJSON(ctx, http.MethodPut, c.nodePath(n.HRN, "", nil), n, &out)
}

// DeleteNode removes a node (by HRN).
func (c *Client) DeleteNode(ctx context.Context, hrn string) error {
	return c.sendJSON(ctx, http.MethodDelete, c.nodePath(hrn, "", nil), nil, nil)
}

// Events returns a node's timeline, oldest first: all of it for after 0,
// else the events after the one with that ID (a follower's cursor; at most
// a page: ask again from the last one).
func (c *Client) Events(ctx context.Context, node string, after int64) ([]apiv1.Event, error) {
	var q url.Values
	if after > 0 {
		q = url.Values{"after": {strconv.FormatInt(after, 10)}}
	}
	var out []apiv1.Event
	return out, c.getJSON(ctx, c.nodePath(node, "/events", q), &out)
}

// Discovered lists MACs that asked for DHCP without being in the inventory.
func (c *Client) Discovered(ctx context.Context) ([]apiv1.Discovered, error) {
	var out []apiv1.Discovered
	return out, c.getJSON(ctx, "/api/v1/discovered", &out)
}

// Testbeds lists the testbeds.
func (c *Client) Testbeds(ctx context.Context) ([]apiv1.Testbed, error) {
	var out []apiv1.Testbed
	return out, c.getJSON(ctx, "/api/v1/testbeds", &out)
}

// Images lists the PXE images.
func (c *Client) Images(ctx context.Context) ([]apiv1.Image, error) {
	var out []apiv1.Image
	return out, c.getJSON(ctx, "/api/v1/images", &out)
}

// PutImage registers a PXE image in the inventory.
func (c *Client) PutImage(ctx context.Context, img apiv1.Image) error {
	return c.sendJSON(ctx, http.MethodPut, "/api/v1/images/"+url.PathEscape(img.Name), img, nil)
}

// SetBoot points a node at a PXE image ("" for its inventory image) for
// lifetime (0 for the appliance's default).
func (c *Client) SetBoot(ctx context.Context, node, image string, lifetime time.Duration) (apiv1.BootLink, error) {
	req := apiv1.BootRequest{Image: image}
	if lifetime > 0 {
		req.Lifetime = lifetime.String()
	}
	var out apiv1.BootLink
	return out, c.sendJSON(ctx, http.MethodPut, c.nodePath(node, "/boot", nil), req, &out)
}

// ClearBoot removes a node's boot link.
func (c *Client) ClearBoot(ctx context.Context, node string) error {
	return c.sendJSON(ctx, http.MethodDelete, c.nodePath(node, "/boot", nil), nil, nil)
}

// Boot lists the active boot links.
func (c *Client) Boot(ctx context.Context) ([]apiv1.BootLink, error) {
	var out []apiv1.BootLink
	return out, c.getJSON(ctx, "/api/v1/boot", &out)
}

// ImportInventory sends a YAML inventory document.
func (c *Client) ImportInventory(ctx context.Context, yamlDoc []byte) error {
	return c.do(ctx, http.MethodPost, "/api/v1/inventory", "application/yaml", bytes.NewReader(yamlDoc), nil)
}

// InventoryStatus says where the inventory comes from and how the last
// reading of the inventory file went.
func (c *Client) InventoryStatus(ctx context.Context) (apiv1.InventoryStatus, error) {
	var out apiv1.InventoryStatus
	return out, c.getJSON(ctx, "/api/v1/inventory/status", &out)
}

// ExportInventory returns the inventory as a YAML document.
func (c *Client) ExportInventory(ctx context.Context) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, http.MethodGet, "/api/v1/inventory", "", nil, &out)
}

// Power runs a power action (on, offHard, offSoft, reboot, reset, status)
// on a node through its inventory power driver and returns the node's
// power state after it (on, off, unknown).
func (c *Client) Power(ctx context.Context, node, action string) (string, error) {
	var out apiv1.PowerReply
	err := c.sendJSON(ctx, http.MethodPost, c.nodePath(node, "/power", nil), apiv1.PowerRequest{Action: action}, &out)
	return out.State, err
}

// CreateToken makes a token; the answer holds it, the one time it is shown.
func (c *Client) CreateToken(ctx context.Context, req apiv1.TokenRequest) (apiv1.TokenCreated, error) {
	var out apiv1.TokenCreated
	return out, c.sendJSON(ctx, http.MethodPost, "/api/v1/tokens", req, &out)
}

// Tokens lists the tokens, without their secrets.
func (c *Client) Tokens(ctx context.Context) ([]apiv1.Token, error) {
	var out []apiv1.Token
	return out, c.getJSON(ctx, "/api/v1/tokens", &out)
}

// RevokeToken revokes the named token.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(name), "", nil, nil)
}

// AuditQuery selects audit entries: Since is an RFC 3339 time or a
// duration back from now ("24h"), Node a node's HRN; empty and 0 are
// unset.
type AuditQuery struct {
	Since string
	Node  string
	Limit int
}

// Audit lists the recorded mutations that q selects, oldest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]apiv1.AuditEntry, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/api/v1/audit"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out []apiv1.AuditEntry
	return out, c.getJSON(ctx, path, &out)
}
