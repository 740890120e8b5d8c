package am

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/power"
	"github.com/orbit-lab/netboot/am/pxelink"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// The OMF services are described by data: the same table routes the calls
// and answers GET / and GET /<service> as OMF's AM server did.

type omfArg struct {
	name     string // the query key
	value    string // OMF's display name; '[x]' marks it optional
	info     string
	maxBytes int // 0: maxParam
}

func (a omfArg) required() bool { return !strings.HasPrefix(a.value, "[") }

type omfMethod struct {
	name   string
	info   string
	args   []omfArg
	handle func(c *gin.Context, p map[string]string)
}

type omfGroup struct {
	name    string
	info    string
	methods []omfMethod
}

// maxParam bounds one query value; ns may list a whole grid of names.
const (
	maxParam   = 1024
	maxNodeSet = 1 << 20
)

var (
	argDomain = omfArg{name: "domain", value: "domain", info: "domain for request."}
	argHRN    = omfArg{name: "hrn", value: "hrn", info: "HRN of the resource"}
	argTbDom  = omfArg{name: "domain", value: "domain", info: "testbed/domain for this given node"}
)

func (s *Server) omfGroups() []omfGroup {
	return []omfGroup{
		{name: "pxe", info: "Service to facilitate PXE to boot into specific image", methods: []omfMethod{
			{name: "setBootImageNS", info: "Get PXE to boot all nodes in 'nodeSet' into their respective PXE image.", args: []omfArg{
				argDomain,
				{name: "ns", value: "nodeSet", info: "list of nodes to boot from PXE", maxBytes: maxNodeSet},
				{name: "imgName", value: "[imageName]", info: "Name of the PXE image to use (optional, default image as specified by the Inventory)"},
			}, handle: s.omfSetBootImageNS},
			{name: "clearBootImageNS", info: "Prevent the nodes in 'nodeSet' from booting via PXE", args: []omfArg{
				argDomain,
				{name: "ns", value: "nodeSet", info: "list of nodes to clear from PXE booting", maxBytes: maxNodeSet},
			}, handle: s.omfClearBootImageNS},
			{name: "setBootImage", info: "Get PXE to boot one node, named by host name or HRN, into its PXE image.", args: []omfArg{
				{name: "node", value: "node", info: "host name or HRN of the node"},
				{name: "image", value: "[image]", info: "Name of the PXE image to use (optional, default image as specified by the Inventory)"},
				{name: "domain", value: "[domain]", info: "domain of the node (optional)"},
			}, handle: s.omfSetBootImage},
			{name: "clearBootImage", info: "Prevent one node, named by host name or HRN, from booting via PXE", args: []omfArg{
				{name: "node", value: "node", info: "host name or HRN of the node"},
				{name: "domain", value: "[domain]", info: "domain of the node (optional)"},
			}, handle: s.omfClearBootImage},
		}},
		{name: "inventory", info: "Service to retrieve information about nodes or testbeds from the Inventory Database", methods: []omfMethod{
			{name: "getControlIP", info: "Get the Control IP address of a given resource for a given domain", args: []omfArg{argHRN, argTbDom}, handle: s.invNodeValue("CONTROL_IP",
				func(n inventory.Node) string { return n.ControlIP }, "Inventory has no control IP for HRN '%s' (domain: %s)")},
			{name: "getPXEImage", info: "Get the PXE image of a given resource for a given domain", args: []omfArg{argHRN, argTbDom}, handle: s.invNodeValue("PXE_IMAGE",
				func(n inventory.Node) string {
					if n.PXEImage != "" {
						return n.PXEImage
					}
					return s.cfg.DefaultImage
				}, "Inventory has no PXE Image info for node %s (domain: %s)")},
			{name: "getCmcIP", info: "Get the CMC IP address of a given resource for a given domain", args: []omfArg{argHRN, argTbDom}, handle: s.invNodeValue("CMC_IP",
				func(n inventory.Node) string { return n.CmcIP }, "Inventory has no CMC IP for HRN '%s' (domain: %s)")},
			{name: "getDefaultDisk", info: "Get the default disk for a certain HRN on a given domain", args: []omfArg{{name: "hrn", value: "hrn", info: "hrn of the node"}, argTbDom}, handle: s.invNodeValue("disk",
				func(n inventory.Node) string { return n.Disk }, "Inventory has no default disk for HRN '%s' (domain: %s)")},
			{name: "getHRN", info: "Get the HRN for a certain hostname on a given domain", args: []omfArg{{name: "hrn", value: "hostname", info: "hostname of the node"}, argTbDom}, handle: s.invNodeValue("HRN",
				func(n inventory.Node) string { return n.HRN }, "Inventory has no HRN for host '%s' (domain: %s)")},
			{name: "getMacAddress", info: "Get the MAC address of a given interface on a given node for a given domain", args: []omfArg{argHRN,
				{name: "ifname", value: "[interfaceName]", info: "name of the interface (the inventory knows the control interface: control or eth1)"}, argTbDom}, handle: s.invMacAddress},
			{name: "getListOfResources", info: "Get a list of the HRNs of all available resources on a given domain", args: []omfArg{{name: "domain", value: "domain", info: "testbed/domain for this query"}}, handle: s.invListOfResources},
			{name: "getAllNodes", info: "Get detailed list of nodes defined in the inventory", handle: s.invAllNodes},
			{name: "getAllTestbeds", info: "Get list of testbeds defined in the inventory", handle: s.invAllTestbeds},
		}},
		{name: "cmc", info: "Service to switch nodes on and off (Chassis Manager Controller)", methods: []omfMethod{
			{name: "on", info: "Switch on a node", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.On)},
			{name: "offHard", info: "Switch off a node at once (hard power off)", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.OffHard)},
			{name: "offSoft", info: "Ask a node's OS to shut down (soft power off)", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.OffSoft)},
			{name: "reboot", info: "Reboot a node (power cycle)", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.Reboot)},
			{name: "reset", info: "Reset a node", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.Reset)},
			{name: "status", info: "Get the power state of a node", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.Status)},
		}},
	}
}

func (s *Server) omfRoutes(r *gin.Engine) {
	groups := s.omfGroups()
	r.GET("/", func(c *gin.Context) {
		var b strings.Builder
		b.WriteString("<?xml version='1.0'?>\n<serviceGroups>")
		for _, g := range groups {
			fmt.Fprintf(&b, "<serviceGroup path=%s name=%s><info>%s</info></serviceGroup>", attr(g.name), attr(g.name), text(g.info))
		}
		b.WriteString("</serviceGroups>")
		c.Data(http.StatusOK, "text/xml", []byte(b.String()))
	})
	for _, g := range groups {
		desc := describe(g)
		r.GET("/"+g.name, func(c *gin.Context) { c.Data(http.StatusOK, "text/xml", desc) })
		for _, m := range g.methods {
			r.GET("/"+g.name+"/"+m.name, func(c *gin.Context) {
				p, err := omfParams(c.Request.URL.RawQuery, m.args)
				if err != nil {
					omfError(c, m.name, err)
					return
				}
				m.handle(c, p)
			})
		}
	}
}

// describe renders a service group's methods, sorted by name, with their
// arguments in declaration order, as OMF's AbstractService.to_xml did.
func describe(g omfGroup) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version='1.0'?>\n<services><serviceGroup name=%s prefix=%s><info>%s</info>", attr(g.name), attr("/"+g.name), text(g.info))
	methods := append([]omfMethod(nil), g.methods...)
	sort.Slice(methods, func(i, j int) bool { return methods[i].name < methods[j].name })
	for _, m := range methods {
		fmt.Fprintf(&b, "<service name=%s><info>%s</info>", attr(m.name), text(m.info))
		if len(m.args) > 0 {
			b.WriteString("<args>")
			for _, a := range m.args {
				fmt.Fprintf(&b, "<arg name=%s value=%s isRequired=%s><info>%s</info></arg>",
					attr(a.name), attr(a.value), attr(fmt.Sprint(a.required())), text(a.info))
			}
			b.WriteString("</args>")
		}
		b.WriteString("</service>")
	}
	b.WriteString("</serviceGroup></services>")
	return []byte(b.String())
}

// omfParams parses the query strictly: a malformed query, a repeated or
// oversized argument, a control character (NUL included), a value that is
// not UTF-8 or holds a character XML cannot carry, or a missing required
// argument is a 400 that names the argument.
func omfParams(raw string, args []omfArg) (map[string]string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, apierr.BadRequest("malformed query: %v", err)
	}
	p := map[string]string{}
	for _, a := range args {
		vs := q[a.name]
		if len(vs) > 1 {
			return nil, apierr.BadRequest("parameter %q given %d times", a.name, len(vs))
		}
		if len(vs) == 0 || vs[0] == "" {
			if a.required() {
				return nil, apierr.BadRequest("missing parameter %q", a.name)
			}
			continue
		}
		v := vs[0]
		limit := a.maxBytes
		if limit == 0 {
			limit = maxParam
		}
		if len(v) > limit {
			return nil, apierr.BadRequest("parameter %q is %d bytes long, at most %d allowed", a.name, len(v), limit)
		}
		if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
			return nil, apierr.BadRequest("parameter %q holds a control character at byte %d", a.name, i)
		}
		// Values are echoed in XML answers, which cannot carry them otherwise.
		if !utf8.ValidString(v) {
			return nil, apierr.BadRequest("parameter %q is not valid UTF-8", a.name)
		}
		if i := strings.IndexFunc(v, notXMLChar); i >= 0 {
			return nil, apierr.BadRequest("parameter %q holds %U, which XML cannot carry, at byte %d", a.name, []rune(v[i:])[0], i)
		}
		p[a.name] = v
	}
	return p, nil
}

// notXMLChar reports the runes of valid UTF-8 that XML 1.0's Char
// production excludes besides the controls: U+FFFE and U+FFFF.
func notXMLChar(r rune) bool { return r == 0xFFFE || r == 0xFFFF }

// omfError answers a failed OMF call: the status says what kind of failure,
// the text/plain body says what was wrong. (OMF itself answered 500
// "internal error" to everything.)
func omfError(c *gin.Context, method string, err error) {
	c.String(apierr.Status(err), "%s: %v\n", method, err)
}

// splitNodeSet parses OMF's comma-separated node set.
func splitNodeSet(ns string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(ns, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if err := checkName("ns", n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, apierr.BadRequest("ns names no node")
	}
	return names, nil
}

func (s *Server) omfSetBootImageNS(c *gin.Context, p map[string]string) {
	s.omfSet(c, "setBootImageNS", p["domain"], p["ns"], p["imgName"])
}

func (s *Server) omfSetBootImage(c *gin.Context, p map[string]string) {
	s.omfSet(c, "setBootImage", p["domain"], p["node"], p["image"])
}

func (s *Server) omfSet(c *gin.Context, method, domain, ns, image string) {
	targets, err := s.omfTargets(c.Request.Context(), domain, ns, image)
	if err != nil {
		omfError(c, method, err)
		return
	}
	links, err := s.links.Set(c.Request.Context(), targets, 0)
	if err != nil {
		omfError(c, method, err)
		return
	}
	var b strings.Builder
	b.WriteString("<response status='OK'><action service='pxe' name='setBootImage'><nodes>")
	for _, l := range links {
		fmt.Fprintf(&b, "<node hrn=%s ip=%s img=%s hex=%s/>", attr(l.HRN), attr(l.ControlIP), attr(l.Image), attr(l.Hex))
	}
	b.WriteString("</nodes></action></response>")
	c.Data(http.StatusOK, "text/xml", []byte(b.String()))
}

// omfTargets resolves an OMF node set, in domain unless it is "", to the
// boot links to set to image ("": each node's own) or to clear.
func (s *Server) omfTargets(ctx context.Context, domain, ns, image string) ([]pxelink.Target, error) {
	names, err := splitNodeSet(ns)
	if err == nil && domain != "" {
		err = checkName("domain", domain)
	}
	if err != nil {
		return nil, err
	}
	_, targets, err := s.resolve(ctx, domain, names, image)
	return targets, err
}

func (s *Server) omfClearBootImageNS(c *gin.Context, p map[string]string) {
	s.omfClear(c, "clearBootImageNS", p["domain"], p["ns"])
}

func (s *Server) omfClearBootImage(c *gin.Context, p map[string]string) {
	s.omfClear(c, "clearBootImage", p["domain"], p["node"])
}

func (s *Server) omfClear(c *gin.Context, method, domain, ns string) {
	targets, err := s.omfTargets(c.Request.Context(), domain, ns, "")
	if err == nil {
		err = s.links.Clear(c.Request.Context(), targets)
	}
	if err != nil {
		omfError(c, method, err)
		return
	}
	c.Data(http.StatusOK, "text/xml", []byte("<response status='OK'><action service='pxe' name='clearBootImage'><nodes/></action></response>"))
}

// invNodeValue answers one of the inventory's per-node questions in OMF's
// <ROOT>value</ROOT> form, or <ROOT><ERROR>...</ERROR></ROOT> with a 404.
func (s *Server) invNodeValue(root string, get func(inventory.Node) string, notFound string) func(*gin.Context, map[string]string) {
	return func(c *gin.Context, p map[string]string) {
		name, domain := p["hrn"], p["domain"]
		value := ""
		if inventory.ValidName(name) && inventory.ValidName(domain) {
			n, err := s.inv.LookupNode(c.Request.Context(), domain, name)
			if err != nil && apierr.Status(err) != http.StatusNotFound {
				omfError(c, root, err)
				return
			}
			if err == nil {
				value = get(n)
			}
		}
		if value == "" {
			invError(c, root, fmt.Sprintf(notFound, name, domain))
			return
		}
		c.Data(http.StatusOK, "text/xml", fmt.Appendf(nil, "<%s>%s</%s>", root, text(value), root))
	}
}

func invError(c *gin.Context, root, msg string) {
	c.Data(http.StatusNotFound, "text/xml", fmt.Appendf(nil, "<%s><ERROR>%s</ERROR></%s>", root, text(msg), root))
}

// controlIfnames are the names under which the inventory knows a node's
// control interface: ORBIT nodes take DHCP on eth1.
var controlIfnames = map[string]bool{"": true, "control": true, "eth1": true}

func (s *Server) invMacAddress(c *gin.Context, p map[string]string) {
	name, ifname, domain := p["hrn"], p["ifname"], p["domain"]
	n, err := s.inv.LookupNode(c.Request.Context(), domain, name)
	if err != nil || !controlIfnames[ifname] {
		if err != nil && apierr.Status(err) != http.StatusNotFound && apierr.Status(err) != http.StatusBadRequest {
			omfError(c, "getMacAddress", err)
			return
		}
		invError(c, "MAC_Address", fmt.Sprintf("Inventory has no info on [%s] for node [%s] (domain: %s)", ifname, name, domain))
		return
	}
	tag := ifname
	if tag == "" {
		tag = "control"
	}
	c.Data(http.StatusOK, "text/xml", fmt.Appendf(nil, "<MAC_Address><%s>%s</%s></MAC_Address>", tag, text(n.ControlMAC), tag))
}

func (s *Server) invListOfResources(c *gin.Context, p map[string]string) {
	domain := p["domain"]
	var nodes []inventory.Node
	if inventory.ValidName(domain) {
		var err error
		if nodes, err = s.inv.Nodes(c.Request.Context(), domain); err != nil {
			omfError(c, "getListOfResources", err)
			return
		}
	}
	invList(c, "RESOURCES", "Inventory has no info for any resources on the domain: "+domain, len(nodes), func(b *strings.Builder, i int) {
		fmt.Fprintf(b, "<NODE>%s</NODE>", text(nodes[i].HRN))
	})
}

func (s *Server) invAllNodes(c *gin.Context, _ map[string]string) {
	nodes, err := s.inv.Nodes(c.Request.Context(), "")
	if err != nil {
		omfError(c, "getAllNodes", err)
		return
	}
	invList(c, "ALLNODES", "Inventory has no nodes defined", len(nodes), func(b *strings.Builder, i int) {
		n := nodes[i]
		fmt.Fprintf(b, "<NODE name=%s hrn=%s control_mac=%s control_ip=%s x=%s y=%s z=%s disk=%s testbed=%s/>",
			attr(n.Hostname), attr(n.HRN), attr(n.ControlMAC), attr(n.ControlIP),
			attr(fmt.Sprint(n.X)), attr(fmt.Sprint(n.Y)), attr(fmt.Sprint(n.Z)), attr(n.Disk), attr(n.Domain))
	})
}

func (s *Server) invAllTestbeds(c *gin.Context, _ map[string]string) {
	tbs, err := s.inv.Testbeds(c.Request.Context())
	if err != nil {
		omfError(c, "getAllTestbeds", err)
		return
	}
	invList(c, "ALLTESTBEDS", "Inventory has no testbeds defined", len(tbs), func(b *strings.Builder, i int) {
		fmt.Fprintf(b, "<TESTBED>%s</TESTBED>", text(tbs[i].Domain))
	})
}

// invList answers <root>item...</root>, item i written by one(b, i); with
// no items, OMF's <root><ERROR>empty</ERROR></root> and a 404.
func invList(c *gin.Context, root, empty string, n int, one func(b *strings.Builder, i int)) {
	if n == 0 {
		invError(c, root, empty)
		return
	}
	var b strings.Builder
	b.WriteString("<" + root + ">")
	for i := range n {
		one(&b, i)
	}
	b.WriteString("</" + root + ">")
	c.Data(http.StatusOK, "text/xml", []byte(b.String()))
}

var (
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")
)

// attr quotes an attribute value the way OMF's REXML wrote it: in single quotes.
func attr(v string) string { return "'" + attrEscaper.Replace(v) + "'" }

func text(v string) string { return textEscaper.Replace(v) }
