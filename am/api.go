package am

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/httpbody"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/textclip"
)

// maxBody bounds a JSON or YAML request body.
const maxBody = 16 << 20

func (s *Server) apiRoutes(g *gin.RouterGroup) {
	// This table is where each of the AM's /api/v1 routes is declared.
	apierr.Register(g, s.cfg.Guard, []apierr.Route{
		{Method: http.MethodGet, Path: "/nodes", Handler: s.apiNodes, Role: apierr.RoleViewer},
		// A :hrn is the node's HRN, or a host name unique in the inventory
		// or in ?domain= (apierr.NodeRef), except for the PUT and DELETE of
		// the node itself, which take its HRN.
		{Method: http.MethodGet, Path: "/nodes/:hrn", Handler: s.apiNode, Role: apierr.RoleViewer},
		{Method: http.MethodPut, Path: "/nodes/:hrn", Handler: s.apiPutNode, Role: apierr.RoleAdmin},
		{Method: http.MethodDelete, Path: "/nodes/:hrn", Handler: s.apiDeleteNode, Role: apierr.RoleAdmin},
		{Method: http.MethodGet, Path: "/nodes/:hrn/events", Handler: s.apiEvents, Role: apierr.RoleViewer},
		{Method: http.MethodPut, Path: "/nodes/:hrn/boot", Handler: s.apiSetBoot, Role: apierr.RoleOperator},
		{Method: http.MethodPost, Path: "/nodes/:hrn/power", Handler: s.apiPower, Role: apierr.RoleOperator},
		{Method: http.MethodDelete, Path: "/nodes/:hrn/boot", Handler: s.apiClearBoot, Role: apierr.RoleOperator},
		{Method: http.MethodGet, Path: "/boot", Handler: s.apiBoot, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/discovered", Handler: s.apiDiscovered, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/testbeds", Handler: s.apiTestbeds, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/images", Handler: s.apiImages, Role: apierr.RoleViewer},
		{Method: http.MethodPut, Path: "/images/:name", Handler: s.apiPutImage, Role: apierr.RoleAdmin},
		{Method: http.MethodGet, Path: "/inventory", Handler: s.apiExport, Role: apierr.RoleViewer},
		{Method: http.MethodPost, Path: "/inventory", Handler: s.apiImport, Role: apierr.RoleAdmin},
		{Method: http.MethodGet, Path: "/inventory/status", Handler: s.apiInventoryStatus, Role: apierr.RoleViewer},
		{Method: http.MethodPost, Path: "/tokens", Handler: s.apiCreateToken, Role: apierr.RoleAdmin},
		{Method: http.MethodGet, Path: "/tokens", Handler: s.apiTokens, Role: apierr.RoleAdmin},
		{Method: http.MethodDelete, Path: "/tokens/:name", Handler: s.apiRevokeToken, Role: apierr.RoleAdmin},
		{Method: http.MethodGet, Path: "/audit", Handler: s.apiAudit, Role: apierr.RoleViewer},
		// The lowest operator role: the document tells nothing a viewer
		// cannot learn by calling, and the test asks every API read of it.
		{Method: http.MethodGet, Path: "/openapi.json", Handler: apiOpenAPI, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/whoami", Handler: apiWhoAmI, Role: apierr.RoleViewer},
	})
}

// apiWhoAmI answers the caller's token name and role, as the guard found
// them.
func apiWhoAmI(c *gin.Context) {
	who := apierr.CallerOf(c)
	c.JSON(http.StatusOK, apiv1.WhoAmI{Name: who.Name, Role: string(who.Role)})
}

// apiOpenAPI answers the OpenAPI document of /api/v1 (apiv1.OpenAPI).
func apiOpenAPI(c *gin.Context) { c.Data(http.StatusOK, "application/json", apiv1.OpenAPI()) }

// nodeParam is the existing node that the path names: by HRN, or by a
// host name unique in the inventory or in ?domain= (apierr.NodeRef). On
// false the answer has been written.
func (s *Server) nodeParam(c *gin.Context) (inventory.Node, bool) {
	n, err := apierr.LookupNode(c, s.inv.LookupNode)
	if err != nil {
		apierr.Write(c, err)
		return inventory.Node{}, false
	}
	apierr.SetTarget(c, n.HRN)
	return n, true
}

// hrnParam is the node named in the path by its HRN alone, refused before
// any lookup if it could never be one: PUT and DELETE of the node itself
// address the inventory's key.
func hrnParam(c *gin.Context) (string, bool) {
	hrn := c.Param("hrn")
	if err := checkName("hrn", hrn); err != nil {
		apierr.Write(c, err)
		return "", false
	}
	return hrn, true
}

// decodeBody reads the JSON body of a request; on false the answer has
// been written.
func decodeBody(c *gin.Context, body any) bool {
	if err := decodeJSON(c, body); err != nil {
		apierr.Write(c, err)
		return false
	}
	return true
}

// writeJSON answers with v, or with err where there is one.
func writeJSON(c *gin.Context, status int, v any, err error) {
	if err != nil {
		apierr.Write(c, err)
		return
	}
	c.JSON(status, v)
}

// writeList answers a list call: its error, or each item in its wire
// form (an empty list is [], never null).
func writeList[T, W any](c *gin.Context, items []T, err error, wire func(T) W) {
	out := make([]W, len(items))
	for i, it := range items {
		out[i] = wire(it)
	}
	writeJSON(c, http.StatusOK, out, err)
}

// writeDone answers a call that returns nothing: its error, or 204.
func writeDone(c *gin.Context, err error) {
	if err != nil {
		apierr.Write(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// decodeJSON reads a bounded body strictly. An empty body leaves v as it is.
func decodeJSON(c *gin.Context, v any) error {
	err := httpbody.JSON(c.Writer, c.Request, maxBody, v)
	if err != nil && !errors.Is(err, httpbody.ErrEmpty) {
		return apierr.BadBody(err)
	}
	return nil
}

func (s *Server) apiNodes(c *gin.Context) {
	domain := c.Query("domain")
	if domain != "" {
		if err := checkName("domain", domain); err != nil {
			apierr.Write(c, err)
			return
		}
	}
	nodes, err := s.inv.Nodes(c.Request.Context(), domain)
	writeList(c, nodes, err, apiNode)
}

func (s *Server) apiNode(c *gin.Context) {
	if n, ok := s.nodeParam(c); ok {
		c.JSON(http.StatusOK, apiNode(n))
	}
}

func (s *Server) apiPutNode(c *gin.Context) {
	if err := s.fileManaged(); err != nil {
		apierr.Write(c, err)
		return
	}
	// Read as the inventory model: its checks name each bad field (see
	// package apiv1).
	var n inventory.Node
	hrn, ok := hrnParam(c)
	if !ok || !decodeBody(c, &n) {
		return
	}
	if n.HRN != "" && n.HRN != hrn {
		apierr.Write(c, apierr.BadRequest("hrn %q in the body differs from %q in the path", n.HRN, hrn))
		return
	}
	n.HRN = hrn
	created, err := s.inv.PutNode(c.Request.Context(), n)
	if err != nil {
		apierr.Write(c, err)
		return
	}
	saved, err := s.inv.Node(c.Request.Context(), hrn)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(c, status, apiNode(saved), err)
}

func (s *Server) apiDeleteNode(c *gin.Context) {
	if err := s.fileManaged(); err != nil {
		apierr.Write(c, err)
		return
	}
	hrn, ok := hrnParam(c)
	if !ok {
		return
	}
	n, err := s.inv.Node(c.Request.Context(), hrn)
	if err == nil {
		// A deleted node must not keep booting what it was last told to.
		err = s.links.Clear(c.Request.Context(), []pxelink.Target{{HRN: n.HRN, IP: n.ControlIP}})
	}
	if err == nil {
		err = s.inv.DeleteNode(c.Request.Context(), hrn)
	}
	writeDone(c, err)
}

// apiEvents answers the node's timeline; with ?after=ID, only the events
// after that one (a follower's cursor: see store.EventsAfter).
func (s *Server) apiEvents(c *gin.Context) {
	var after int64
	if v, set := c.GetQuery("after"); set {
		a, err := strconv.ParseInt(v, 10, 64)
		if err != nil || a < 0 {
			apierr.Write(c, apierr.BadRequest("after: %.64q is not an event id", v))
			return
		}
		after = a
	}
	n, ok := s.nodeParam(c)
	if !ok {
		return
	}
	evs, err := s.inv.EventsAfter(c.Request.Context(), n.HRN, after)
	writeJSON(c, http.StatusOK, evs, err)
}

// nodeNames is the node that a boot route names, for resolve and lookup,
// which read host names as the OMF calls do; on false the answer has been
// written.
func nodeNames(c *gin.Context) (domain string, names []string, ok bool) {
	domain, name, err := apierr.NodeRef(c)
	if err != nil {
		apierr.Write(c, err)
		return "", nil, false
	}
	return domain, []string{name}, true
}

func (s *Server) apiSetBoot(c *gin.Context) {
	var req apiv1.BootRequest
	domain, names, ok := nodeNames(c)
	if !ok || !decodeBody(c, &req) {
		return
	}
	var lifetime time.Duration
	if req.Lifetime != "" {
		d, err := time.ParseDuration(req.Lifetime)
		if err != nil || d <= 0 || d > 30*24*time.Hour {
			apierr.Write(c, apierr.BadRequest("lifetime %q: want a positive duration of at most 720h, such as \"300s\"", textclip.Text(req.Lifetime, 64)))
			return
		}
		lifetime = d
	}
	targets, err := s.resolve(c.Request.Context(), domain, names, req.Image, s.cfg.DefaultImage)
	if err != nil {
		apierr.Write(c, err)
		return
	}
	apierr.SetTarget(c, targets[0].HRN)
	links, err := s.links.Set(c.Request.Context(), targets, lifetime)
	if err != nil {
		apierr.Write(c, err)
		return
	}
	c.JSON(http.StatusOK, apiBootLink(links[0]))
}

func (s *Server) apiClearBoot(c *gin.Context) {
	domain, names, ok := nodeNames(c)
	if !ok {
		return
	}
	targets, err := s.lookup(c.Request.Context(), domain, names)
	if err == nil {
		setTargets(c, targets)
		err = s.links.Clear(c.Request.Context(), targets)
	}
	writeDone(c, err)
}

func (s *Server) apiBoot(c *gin.Context) {
	links, err := s.links.List(c.Request.Context())
	writeList(c, links, err, apiBootLink)
}

// apiDiscovered lists the MACs that asked for DHCP without being in the
// inventory, so an operator can add them.
func (s *Server) apiDiscovered(c *gin.Context) {
	ds, err := s.inv.Discovered(c.Request.Context())
	writeList(c, ds, err, apiDiscovered)
}

func (s *Server) apiTestbeds(c *gin.Context) {
	tbs, err := s.inv.Testbeds(c.Request.Context())
	if err != nil {
		apierr.Write(c, err)
		return
	}
	if tbs == nil {
		tbs = []apiv1.Testbed{}
	}
	c.JSON(http.StatusOK, tbs)
}

func (s *Server) apiImages(c *gin.Context) {
	imgs, err := s.inv.Images(c.Request.Context())
	writeList(c, imgs, err, func(img inventory.Image) apiv1.Image { return apiv1.Image(img) })
}

func (s *Server) apiPutImage(c *gin.Context) {
	name := c.Param("name")
	if err := checkName("name", name); err != nil {
		apierr.Write(c, err)
		return
	}
	var img apiv1.Image
	if err := decodeJSON(c, &img); err != nil {
		apierr.Write(c, err)
		return
	}
	if img.Name != "" && img.Name != name {
		apierr.Write(c, apierr.BadRequest("name %q in the body differs from %q in the path", img.Name, name))
		return
	}
	img.Name = name
	err := s.inv.PutImage(c.Request.Context(), inventory.Image(img))
	writeJSON(c, http.StatusOK, img, err)
}

func (s *Server) apiExport(c *gin.Context) {
	f, err := s.inv.Export(c.Request.Context())
	if err == nil {
		var out []byte
		if out, err = f.Marshal(); err == nil {
			c.Data(http.StatusOK, "application/yaml", out)
			return
		}
	}
	apierr.Write(c, err)
}

func (s *Server) apiImport(c *gin.Context) {
	if err := s.fileManaged(); err != nil {
		apierr.Write(c, err)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody))
	if err != nil {
		apierr.Write(c, apierr.BadBody(fmt.Errorf("request body: %w", err)))
		return
	}
	// Load, not ParseFile: each problem in the document itself names its
	// line.
	f, err := inventory.Load(data)
	if err != nil {
		apierr.Write(c, apierr.BadRequest("%v", err))
		return
	}
	if err := s.inv.Import(c.Request.Context(), f); err != nil {
		apierr.Write(c, err)
		return
	}
	nodes := 0
	for _, tb := range f.Testbeds {
		nodes += len(tb.Nodes)
	}
	c.JSON(http.StatusOK, apiv1.ImportReply{Imported: apiv1.ImportCounts{Images: len(f.Images), Nodes: nodes, Testbeds: len(f.Testbeds)}})
}

// apiNode is a stored node as the API shows it. The store holds only
// addresses inventory.Normalize accepted, so none fails to parse.
func apiNode(n inventory.Node) apiv1.Node {
	ip, _ := netip.ParseAddr(n.ControlIP)
	cmc, _ := netip.ParseAddr(n.CmcIP)
	mac, _ := apiv1.ParseMAC(n.ControlMAC)
	return apiv1.Node{
		HRN: n.HRN, Domain: n.Domain, Hostname: n.Hostname,
		ControlIP: ip, ControlMAC: mac, CmcIP: cmc,
		X: n.X, Y: n.Y, Z: n.Z, Disk: n.Disk, PXEImage: n.PXEImage, Bootfile: n.Bootfile, Power: n.Power,
	}
}

// apiBootLink is a stored link as the API shows it; pxelink keeps the
// control IP as the text it names files by.
func apiBootLink(l store.BootLink) apiv1.BootLink {
	ip, _ := netip.ParseAddr(l.ControlIP)
	return apiv1.BootLink{HRN: l.HRN, ControlIP: ip, Hex: l.Hex, Image: l.Image, SetAt: l.SetAt, ExpiresAt: l.ExpiresAt, Refs: l.Refs}
}

// apiDiscovered is a discovered MAC as the API shows it; the DHCP server
// records its addresses as text.
func apiDiscovered(d store.Discovered) apiv1.Discovered {
	mac, _ := apiv1.ParseMAC(d.MAC)
	last, _ := netip.ParseAddr(d.LastIP)
	relay, _ := netip.ParseAddr(d.Relay)
	return apiv1.Discovered{MAC: mac, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen, Count: d.Count,
		LastIP: last, VendorClass: d.VendorClass, Relay: relay}
}
