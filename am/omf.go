package am

import (
	"errors"
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
	"github.com/orbit-lab/netboot/am/webui"

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

// omfMethod is one OMF call. Its handler answers a success itself and
// returns a failure, which its group's fail answers.
type omfMethod struct {
	name   string
	info   string
	args   []omfArg
	reply  string // what OMF named its answer: the inventory's root element, the PXE service's action
	handle func(c *gin.Context, m *omfMethod, p map[string]string) error
	// readOnly: the call changes nothing, so a viewer token or a source in
	// omf.allow_read may make it (guard.OMF), and the audit does not
	// record it.
	readOnly bool
}

type omfGroup struct {
	name    string
	info    string
	methods []omfMethod
	fail    func(c *gin.Context, m *omfMethod, err error) // answers a failure in the service's own XML
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
		{name: "pxe", info: "Service to facilitate PXE to boot into specific image", fail: pxeFail, methods: []omfMethod{
			{name: "setBootImageNS", info: "Get PXE to boot all nodes in 'nodeSet' into their respective PXE image.", args: []omfArg{
				argDomain,
				{name: "ns", value: "nodeSet", info: "list of nodes to boot from PXE", maxBytes: maxNodeSet},
				{name: "imgName", value: "[imageName]", info: "Name of the PXE image to use (optional, default image as specified by the Inventory)"},
			}, reply: "setBootImage", handle: s.omfSetBootImageNS},
			{name: "clearBootImageNS", info: "Prevent the nodes in 'nodeSet' from booting via PXE", args: []omfArg{
				argDomain,
				{name: "ns", value: "nodeSet", info: "list of nodes to clear from PXE booting", maxBytes: maxNodeSet},
			}, reply: "clearBootImage", handle: s.omfClearBootImageNS},
			{name: "setBootImage", info: "Get PXE to boot one node, named by host name or HRN, into its PXE image.", args: []omfArg{
				{name: "node", value: "node", info: "host name or HRN of the node"},
				{name: "image", value: "[image]", info: "Name of the PXE image to use (optional, default image as specified by the Inventory)"},
				{name: "domain", value: "[domain]", info: "domain of the node (optional)"},
			}, reply: "setBootImage", handle: s.omfSetBootImage},
			{name: "clearBootImage", info: "Prevent one node, named by host name or HRN, from booting via PXE", args: []omfArg{
				{name: "node", value: "node", info: "host name or HRN of the node"},
				{name: "domain", value: "[domain]", info: "domain of the node (optional)"},
			}, reply: "clearBootImage", handle: s.omfClearBootImage},
		}},
		{name: "inventory", info: "Service to retrieve information about nodes or testbeds from the Inventory Database", fail: invFail, methods: []omfMethod{
			{name: "getControlIP", info: "Get the Control IP address of a given resource for a given domain", args: []omfArg{argHRN, argTbDom}, readOnly: true, reply: "CONTROL_IP", handle: s.invNodeValue(
				func(n inventory.Node) string { return n.ControlIP }, "Inventory has no control IP for HRN '%s' (domain: %s)")},
			{name: "getPXEImage", info: "Get the PXE image of a given resource for a given domain", args: []omfArg{argHRN, argTbDom}, readOnly: true, reply: "PXE_IMAGE", handle: s.invNodeValue(
				func(n inventory.Node) string { return n.PXEImage }, "Inventory has no PXE Image info for node %s (domain: %s)")},
			{name: "getCmcIP", info: "Get the CMC IP address of a given resource for a given domain", args: []omfArg{argHRN, argTbDom}, readOnly: true, reply: "CMC_IP", handle: s.invNodeValue(
				func(n inventory.Node) string { return n.CmcIP }, "Inventory has no CMC IP for HRN '%s' (domain: %s)")},
			{name: "getDefaultDisk", info: "Get the default disk for a certain HRN on a given domain", args: []omfArg{{name: "hrn", value: "hrn", info: "hrn of the node"}, argTbDom}, readOnly: true, reply: "disk", handle: s.invNodeValue(
				func(n inventory.Node) string { return n.Disk }, "Inventory has no default disk for HRN '%s' (domain: %s)")},
			{name: "getHRN", info: "Get the HRN for a certain hostname on a given domain", args: []omfArg{{name: "hrn", value: "hostname", info: "hostname of the node"}, argTbDom}, readOnly: true, reply: "HRN", handle: s.invNodeValue(
				func(n inventory.Node) string { return n.HRN }, "Inventory has no HRN for host '%s' (domain: %s)")},
			{name: "getMacAddress", info: "Get the MAC address of a given interface on a given node for a given domain", args: []omfArg{argHRN,
				{name: "ifname", value: "[interfaceName]", info: "name of the interface (the inventory knows the control interface: control or eth1)"}, argTbDom}, readOnly: true, reply: "MAC_Address", handle: s.invMacAddress},
			{name: "getListOfResources", info: "Get a list of the HRNs of all available resources on a given domain", args: []omfArg{{name: "domain", value: "domain", info: "testbed/domain for this query"}}, readOnly: true, reply: "RESOURCES", handle: s.invListOfResources},
			{name: "getAllNodes", info: "Get detailed list of nodes defined in the inventory", readOnly: true, reply: "ALLNODES", handle: s.invAllNodes},
			{name: "getAllTestbeds", info: "Get list of testbeds defined in the inventory", readOnly: true, reply: "ALLTESTBEDS", handle: s.invAllTestbeds},
		}},
		{name: "cmc", info: "Service to switch nodes on and off (Chassis Manager Controller)", fail: cmcFail, methods: []omfMethod{
			{name: "on", info: "Switch on a node", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.On)},
			{name: "offHard", info: "Switch off a node at once (hard power off)", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.OffHard)},
			{name: "offSoft", info: "Ask a node's OS to shut down (soft power off)", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.OffSoft)},
			{name: "reboot", info: "Reboot a node (power cycle)", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.Reboot)},
			{name: "reset", info: "Reset a node", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.Reset)},
			{name: "status", readOnly: true, info: "Get the power state of a node", args: []omfArg{argHRN, argTbDom}, handle: s.omfPower(power.Status)},
		}},
	}
}

func (s *Server) omfRoutes(r *gin.RouterGroup) {
	groups := s.omfGroups()
	// The descriptions are reads, refused as the CMC refuses: <ERROR>.
	describeFail := &omfMethod{name: "describe", readOnly: true}
	routes := []apierr.Route{{Method: http.MethodGet, Path: "/", Role: apierr.RoleOMF, Handler: func(c *gin.Context) {
		// A browser asks for HTML and gets the web view; OMF's EC and
		// scripts (curl sends */*) get the listing as before.
		if s.cfg.UI != nil && strings.Contains(c.GetHeader("Accept"), "text/html") {
			c.Redirect(http.StatusFound, webui.Path)
			return
		}
		if err := s.cfg.Guard.OMF(c, true); err != nil {
			cmcFail(c, describeFail, err)
			return
		}
		var b strings.Builder
		b.WriteString("<?xml version='1.0'?>\n<serviceGroups>")
		for _, g := range groups {
			fmt.Fprintf(&b, "<serviceGroup path=%s name=%s><info>%s</info></serviceGroup>", attr(g.name), attr(g.name), text(g.info))
		}
		b.WriteString("</serviceGroups>")
		c.Data(http.StatusOK, "text/xml", []byte(b.String()))
	}}}
	for _, g := range groups {
		desc := describe(g)
		routes = append(routes, apierr.Route{Method: http.MethodGet, Path: "/" + g.name, Role: apierr.RoleOMF, Handler: func(c *gin.Context) {
			if err := s.cfg.Guard.OMF(c, true); err != nil {
				cmcFail(c, describeFail, err)
				return
			}
			c.Data(http.StatusOK, "text/xml", desc)
		}})
		for _, m := range g.methods {
			routes = append(routes, apierr.Route{Method: http.MethodGet, Path: "/" + g.name + "/" + m.name, Role: apierr.RoleOMF, Handler: func(c *gin.Context) {
				err := s.cfg.Guard.OMF(c, m.readOnly)
				var p map[string]string
				if err == nil {
					p, err = omfParams(c.Request.URL.RawQuery, m.args)
				}
				if err == nil {
					err = m.handle(c, &m, p)
				}
				if err != nil {
					apierr.SetDetail(c, err.Error())
					g.fail(c, &m, err)
				}
			}})
		}
	}
	apierr.Register(r, s.cfg.Guard, routes)
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

// Each OMF service answers a failure in the XML form its own code used,
// with a message that says what was wrong: an EC logs the body. The status
// says what kind of failure, except the inventory's "nothing found", which
// OMF answered 200: its client raises on any other status before it reads
// the message, and takes an empty list for an empty result.

// pxeFail answers in the envelope of the PXE service's replies, with
// status='ERROR' and the reason as the action's text.
func pxeFail(c *gin.Context, m *omfMethod, err error) {
	c.Data(apierr.Status(err), "text/xml", fmt.Appendf(nil, "<response status='ERROR'><action service='pxe' name=%s>%s</action></response>",
		attr(m.reply), text(m.name+": "+err.Error())))
}

// invFail answers <ROOT><ERROR>message</ERROR></ROOT>, as the inventory's
// replies did; a node, interface, domain or list it has nothing for says
// so in OMF's words, with a 200.
func invFail(c *gin.Context, m *omfMethod, err error) {
	status, msg := apierr.Status(err), m.name+": "+err.Error()
	var nf *invNotFound
	if errors.As(err, &nf) {
		status, msg = http.StatusOK, nf.msg
	}
	c.Data(status, "text/xml", fmt.Appendf(nil, "<%s><ERROR>%s</ERROR></%s>", m.reply, text(msg), m.reply))
}

// cmcFail answers <ERROR>message</ERROR>, the element OMF's CMC services
// answered a failed action with.
func cmcFail(c *gin.Context, m *omfMethod, err error) {
	c.Data(apierr.Status(err), "text/xml", fmt.Appendf(nil, "<ERROR>%s</ERROR>", text(m.name+": "+err.Error())))
}

// invNotFound is the inventory's "it has nothing for that", in OMF's words.
type invNotFound struct{ msg string }

func (e *invNotFound) Error() string { return e.msg }

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

func (s *Server) omfSetBootImageNS(c *gin.Context, m *omfMethod, p map[string]string) error {
	return s.omfSet(c, m, p["domain"], p["ns"], p["imgName"])
}

func (s *Server) omfSetBootImage(c *gin.Context, m *omfMethod, p map[string]string) error {
	return s.omfSet(c, m, p["domain"], p["node"], p["image"])
}

// omfSet links each node to image, else to the inventory's image for it:
// like OMF's PXE service, and unlike the JSON API, it knows no default.
func (s *Server) omfSet(c *gin.Context, m *omfMethod, domain, ns, image string) error {
	names, err := omfNames(domain, ns)
	if err != nil {
		return err
	}
	targets, err := s.resolve(c.Request.Context(), domain, names, image, "")
	if err != nil {
		return err
	}
	setTargets(c, targets)
	links, err := s.links.Set(c.Request.Context(), targets, 0)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<response status='OK'><action service='pxe' name=%s><nodes>", attr(m.reply))
	for _, l := range links {
		fmt.Fprintf(&b, "<node hrn=%s ip=%s img=%s hex=%s/>", attr(l.HRN), attr(l.ControlIP), attr(l.Image), attr(l.Hex))
	}
	b.WriteString("</nodes></action></response>")
	c.Data(http.StatusOK, "text/xml", []byte(b.String()))
	return nil
}

// omfNames parses an OMF node set and checks its domain ("": none).
func omfNames(domain, ns string) ([]string, error) {
	names, err := splitNodeSet(ns)
	if err == nil && domain != "" {
		err = checkName("domain", domain)
	}
	return names, err
}

func (s *Server) omfClearBootImageNS(c *gin.Context, m *omfMethod, p map[string]string) error {
	return s.omfClear(c, m, p["domain"], p["ns"])
}

func (s *Server) omfClearBootImage(c *gin.Context, m *omfMethod, p map[string]string) error {
	return s.omfClear(c, m, p["domain"], p["node"])
}

func (s *Server) omfClear(c *gin.Context, m *omfMethod, domain, ns string) error {
	names, err := omfNames(domain, ns)
	if err != nil {
		return err
	}
	targets, err := s.lookup(c.Request.Context(), domain, names)
	if err == nil {
		setTargets(c, targets)
		err = s.links.Clear(c.Request.Context(), targets)
	}
	if err != nil {
		return err
	}
	c.Data(http.StatusOK, "text/xml", fmt.Appendf(nil, "<response status='OK'><action service='pxe' name=%s><nodes/></action></response>", attr(m.reply)))
	return nil
}

// invNodeValue answers one of the inventory's per-node questions in OMF's
// <ROOT>value</ROOT> form; an unknown node, or one without that value, is
// notFound's message.
func (s *Server) invNodeValue(get func(inventory.Node) string, notFound string) func(*gin.Context, *omfMethod, map[string]string) error {
	return func(c *gin.Context, m *omfMethod, p map[string]string) error {
		name, domain := p["hrn"], p["domain"]
		value := ""
		if inventory.ValidName(name) && inventory.ValidName(domain) {
			n, err := s.inv.LookupNode(c.Request.Context(), domain, name)
			if err != nil && apierr.Status(err) != http.StatusNotFound {
				return err
			}
			if err == nil {
				value = get(n)
			}
		}
		if value == "" {
			return &invNotFound{fmt.Sprintf(notFound, name, domain)}
		}
		c.Data(http.StatusOK, "text/xml", fmt.Appendf(nil, "<%s>%s</%s>", m.reply, text(value), m.reply))
		return nil
	}
}

// controlIfnames are the names under which the inventory knows a node's
// control interface: ORBIT nodes take DHCP on eth1.
var controlIfnames = map[string]bool{"": true, "control": true, "eth1": true}

func (s *Server) invMacAddress(c *gin.Context, m *omfMethod, p map[string]string) error {
	name, ifname, domain := p["hrn"], p["ifname"], p["domain"]
	n, err := s.inv.LookupNode(c.Request.Context(), domain, name)
	if err != nil || !controlIfnames[ifname] {
		if err != nil && apierr.Status(err) != http.StatusNotFound && apierr.Status(err) != http.StatusBadRequest {
			return err
		}
		return &invNotFound{fmt.Sprintf("Inventory has no info on [%s] for node [%s] (domain: %s)", ifname, name, domain)}
	}
	tag := ifname
	if tag == "" {
		tag = "control"
	}
	c.Data(http.StatusOK, "text/xml", fmt.Appendf(nil, "<%s><%s>%s</%s></%s>", m.reply, tag, text(n.ControlMAC), tag, m.reply))
	return nil
}

func (s *Server) invListOfResources(c *gin.Context, m *omfMethod, p map[string]string) error {
	domain := p["domain"]
	var nodes []inventory.Node
	if inventory.ValidName(domain) {
		var err error
		if nodes, err = s.inv.Nodes(c.Request.Context(), domain); err != nil {
			return err
		}
	}
	return invList(c, m, "Inventory has no info for any resources on the domain: "+domain, len(nodes), func(b *strings.Builder, i int) {
		fmt.Fprintf(b, "<NODE>%s</NODE>", text(nodes[i].HRN))
	})
}

func (s *Server) invAllNodes(c *gin.Context, m *omfMethod, _ map[string]string) error {
	nodes, err := s.inv.Nodes(c.Request.Context(), "")
	if err != nil {
		return err
	}
	return invList(c, m, "Inventory has no nodes defined", len(nodes), func(b *strings.Builder, i int) {
		n := nodes[i]
		fmt.Fprintf(b, "<NODE name=%s hrn=%s control_mac=%s control_ip=%s x=%s y=%s z=%s disk=%s testbed=%s/>",
			attr(n.Hostname), attr(n.HRN), attr(n.ControlMAC), attr(n.ControlIP),
			attr(fmt.Sprint(n.X)), attr(fmt.Sprint(n.Y)), attr(fmt.Sprint(n.Z)), attr(n.Disk), attr(n.Domain))
	})
}

func (s *Server) invAllTestbeds(c *gin.Context, m *omfMethod, _ map[string]string) error {
	tbs, err := s.inv.Testbeds(c.Request.Context())
	if err != nil {
		return err
	}
	return invList(c, m, "Inventory has no testbeds defined", len(tbs), func(b *strings.Builder, i int) {
		fmt.Fprintf(b, "<TESTBED>%s</TESTBED>", text(tbs[i].Domain))
	})
}

// invList answers <ROOT>item...</ROOT>, item i written by one(b, i); with
// no items, the empty message.
func invList(c *gin.Context, m *omfMethod, empty string, n int, one func(b *strings.Builder, i int)) error {
	if n == 0 {
		return &invNotFound{empty}
	}
	var b strings.Builder
	b.WriteString("<" + m.reply + ">")
	for i := range n {
		one(&b, i)
	}
	b.WriteString("</" + m.reply + ">")
	c.Data(http.StatusOK, "text/xml", []byte(b.String()))
	return nil
}

var (
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")
)

// attr quotes an attribute value the way OMF's REXML wrote it: in single quotes.
func attr(v string) string { return "'" + attrEscaper.Replace(v) + "'" }

func text(v string) string { return textEscaper.Replace(v) }
