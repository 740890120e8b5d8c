package am

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/httpbody"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// maxBody bounds a JSON or YAML request body.
const maxBody = 16 << 20

func (s *Server) apiRoutes(g *gin.RouterGroup) {
	g.GET("/nodes", s.apiNodes)
	g.GET("/nodes/:hrn", s.apiNode)
	g.PUT("/nodes/:hrn", s.apiPutNode)
	g.DELETE("/nodes/:hrn", s.apiDeleteNode)
	g.GET("/nodes/:hrn/events", s.apiEvents)
	g.PUT("/nodes/:hrn/boot", s.apiSetBoot)
	g.POST("/nodes/:hrn/power", s.apiPower)
	g.DELETE("/nodes/:hrn/boot", s.apiClearBoot)
	g.GET("/boot", s.apiBoot)
	g.GET("/discovered", s.apiDiscovered)
	g.GET("/testbeds", s.apiTestbeds)
	g.GET("/images", s.apiImages)
	g.PUT("/images/:name", s.apiPutImage)
	g.GET("/inventory", s.apiExport)
	g.POST("/inventory", s.apiImport)
}

// apiError answers {"error": "..."} with the status the error calls for;
// an inventory rejection also lists its problems one by one.
func apiError(c *gin.Context, err error) {
	body := gin.H{"error": err.Error()}
	var ie *inventory.Error
	if errors.As(err, &ie) {
		body["error"] = ie.Summary()
		problems := make([]string, len(ie.Problems))
		for i, p := range ie.Problems {
			problems[i] = p.Error()
		}
		body["problems"] = problems
	}
	c.JSON(statusOf(err), body)
}

// hrnParam is the node named in the path, refused before any lookup if it
// could never be one.
func hrnParam(c *gin.Context) (string, bool) {
	hrn := c.Param("hrn")
	if err := checkName("hrn", hrn); err != nil {
		apiError(c, err)
		return "", false
	}
	return hrn, true
}

// decodeJSON reads a bounded body strictly. An empty body leaves v as it is.
func decodeJSON(c *gin.Context, v any) error {
	err := httpbody.JSON(c.Writer, c.Request, maxBody, v)
	if err != nil && !errors.Is(err, httpbody.ErrEmpty) {
		return bodyError(err)
	}
	return nil
}

// bodyError is a 413 for a body over the limit (the caller must send less,
// not fix a field), else a 400.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &httpError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body: larger than %d bytes", tooBig.Limit)}
	}
	return badRequest("%v", err)
}

func (s *Server) apiNodes(c *gin.Context) {
	domain := c.Query("domain")
	if domain != "" {
		if err := checkName("domain", domain); err != nil {
			apiError(c, err)
			return
		}
	}
	nodes, err := s.inv.Nodes(c.Request.Context(), domain)
	if err != nil {
		apiError(c, err)
		return
	}
	if nodes == nil {
		nodes = []inventory.Node{}
	}
	c.JSON(http.StatusOK, nodes)
}

func (s *Server) apiNode(c *gin.Context) {
	hrn, ok := hrnParam(c)
	if !ok {
		return
	}
	n, err := s.inv.Node(c.Request.Context(), hrn)
	if err != nil {
		apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, n)
}

func (s *Server) apiPutNode(c *gin.Context) {
	hrn, ok := hrnParam(c)
	if !ok {
		return
	}
	var n inventory.Node
	if err := decodeJSON(c, &n); err != nil {
		apiError(c, err)
		return
	}
	if n.HRN != "" && n.HRN != hrn {
		apiError(c, badRequest("hrn %q in the body differs from %q in the path", n.HRN, hrn))
		return
	}
	n.HRN = hrn
	created, err := s.inv.PutNode(c.Request.Context(), n)
	if err != nil {
		apiError(c, err)
		return
	}
	saved, err := s.inv.Node(c.Request.Context(), hrn)
	if err != nil {
		apiError(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, saved)
}

func (s *Server) apiDeleteNode(c *gin.Context) {
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
	if err != nil {
		apiError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) apiEvents(c *gin.Context) {
	hrn, ok := hrnParam(c)
	if !ok {
		return
	}
	if _, err := s.inv.Node(c.Request.Context(), hrn); err != nil {
		apiError(c, err)
		return
	}
	evs, err := s.inv.Events(c.Request.Context(), hrn)
	if err != nil {
		apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, evs)
}

// BootRequest is the body of PUT /api/v1/nodes/{hrn}/boot.
type BootRequest struct {
	Image    string `json:"image,omitempty"`    // default: the inventory's, else the configured default
	Lifetime string `json:"lifetime,omitempty"` // Go duration, e.g. "300s"; default: pxe.link_lifetime
}

func (s *Server) apiSetBoot(c *gin.Context) {
	hrn, ok := hrnParam(c)
	if !ok {
		return
	}
	var req BootRequest
	if err := decodeJSON(c, &req); err != nil {
		apiError(c, err)
		return
	}
	var lifetime time.Duration
	if req.Lifetime != "" {
		d, err := time.ParseDuration(req.Lifetime)
		if err != nil || d <= 0 || d > 30*24*time.Hour {
			apiError(c, badRequest("lifetime %q: want a positive duration of at most 720h, such as \"300s\"", truncate(req.Lifetime)))
			return
		}
		lifetime = d
	}
	_, targets, err := s.resolve(c.Request.Context(), "", []string{hrn}, req.Image)
	if err != nil {
		apiError(c, err)
		return
	}
	links, err := s.links.Set(c.Request.Context(), targets, lifetime)
	if err != nil {
		apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, links[0])
}

func (s *Server) apiClearBoot(c *gin.Context) {
	hrn, ok := hrnParam(c)
	if !ok {
		return
	}
	_, targets, err := s.resolve(c.Request.Context(), "", []string{hrn}, "")
	if err == nil {
		err = s.links.Clear(c.Request.Context(), targets)
	}
	if err != nil {
		apiError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) apiBoot(c *gin.Context) {
	links, err := s.links.List(c.Request.Context())
	if err != nil {
		apiError(c, err)
		return
	}
	if links == nil {
		c.JSON(http.StatusOK, []any{})
		return
	}
	c.JSON(http.StatusOK, links)
}

// apiDiscovered lists the MACs that asked for DHCP without being in the
// inventory, so an operator can add them.
func (s *Server) apiDiscovered(c *gin.Context) {
	ds, err := s.inv.Discovered(c.Request.Context())
	if err != nil {
		apiError(c, err)
		return
	}
	if ds == nil {
		ds = []store.Discovered{}
	}
	c.JSON(http.StatusOK, ds)
}

func (s *Server) apiTestbeds(c *gin.Context) {
	tbs, err := s.inv.Testbeds(c.Request.Context())
	if err != nil {
		apiError(c, err)
		return
	}
	if tbs == nil {
		c.JSON(http.StatusOK, []any{})
		return
	}
	c.JSON(http.StatusOK, tbs)
}

func (s *Server) apiImages(c *gin.Context) {
	imgs, err := s.inv.Images(c.Request.Context())
	if err != nil {
		apiError(c, err)
		return
	}
	if imgs == nil {
		imgs = []inventory.Image{}
	}
	c.JSON(http.StatusOK, imgs)
}

func (s *Server) apiPutImage(c *gin.Context) {
	name := c.Param("name")
	if err := checkName("name", name); err != nil {
		apiError(c, err)
		return
	}
	var img inventory.Image
	if err := decodeJSON(c, &img); err != nil {
		apiError(c, err)
		return
	}
	if img.Name != "" && img.Name != name {
		apiError(c, badRequest("name %q in the body differs from %q in the path", img.Name, name))
		return
	}
	img.Name = name
	if err := s.inv.PutImage(c.Request.Context(), img); err != nil {
		apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, img)
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
	apiError(c, err)
}

func (s *Server) apiImport(c *gin.Context) {
	data, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody))
	if err != nil {
		apiError(c, bodyError(fmt.Errorf("request body: %w", err)))
		return
	}
	f, err := inventory.ParseFile(data)
	if err != nil {
		apiError(c, badRequest("%v", err))
		return
	}
	if err := s.inv.Import(c.Request.Context(), f); err != nil {
		apiError(c, err)
		return
	}
	nodes := 0
	for _, tb := range f.Testbeds {
		nodes += len(tb.Nodes)
	}
	c.JSON(http.StatusOK, gin.H{"imported": gin.H{"images": len(f.Images), "testbeds": len(f.Testbeds), "nodes": nodes}})
}
