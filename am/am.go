// Package am is the Aggregate Manager: one HTTP server carrying the OMF
// services as OMF 5.4 spoke them (/pxe, /inventory) and the JSON API under
// /api/v1 (and, beside them, the boot files of am/httpboot). Both sides resolve nodes and change boot links through the same
// code, so they cannot disagree.
package am

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/guard"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// Inventory is what the AM reads and writes of the database.
type Inventory interface {
	Nodes(ctx context.Context, domain string) ([]inventory.Node, error)
	Node(ctx context.Context, hrn string) (inventory.Node, error)
	NodeByIP(ctx context.Context, ip string) (inventory.Node, error)
	LookupNode(ctx context.Context, domain, name string) (inventory.Node, error)
	LookupNodes(ctx context.Context, domain string, names []string) ([]inventory.Node, []string, error)
	PutNode(ctx context.Context, n inventory.Node) (bool, error)
	DeleteNode(ctx context.Context, hrn string) error
	Testbeds(ctx context.Context) ([]store.Testbed, error)
	Images(ctx context.Context) ([]inventory.Image, error)
	PutImage(ctx context.Context, img inventory.Image) error
	Import(ctx context.Context, f inventory.File) error
	SyncInventory(ctx context.Context, f inventory.File) (store.SyncResult, error)
	Export(ctx context.Context) (inventory.File, error)
	EventsAfter(ctx context.Context, hrn string, after int64) ([]store.Event, error)
	AddEvent(ctx context.Context, e store.Event) error
	Discovered(ctx context.Context) ([]store.Discovered, error)
	CreateToken(ctx context.Context, t store.Token, hash string) error
	Tokens(ctx context.Context) ([]store.Token, error)
	RevokeToken(ctx context.Context, name string, at time.Time) error
}

// Config configures the AM.
type Config struct {
	Listen       string // HTTP listen address, e.g. ":5054"
	DefaultImage string // PXE image for nodes whose inventory names none
	// Guard admits each route's callers by its role; it must be set.
	Guard *guard.Guard
	// RC, if set, adds the Resource Controller broker's routes under /api/v1.
	RC interface {
		Register(*gin.RouterGroup, apierr.Guard)
	}
	// BootFiles, if set, adds the boot-file routes (am/httpboot) at the
	// root, under their own prefix.
	BootFiles interface {
		Register(*gin.RouterGroup, apierr.Guard)
	}
	// InventoryFile, if set, is the inventory's source of truth
	// (inventory.file): LoadInventoryFile reads it, and the API refuses to
	// change nodes.
	InventoryFile string
	// IPXE, with a Prefix, adds the per-node iPXE scripts (IPXEPath).
	IPXE IPXEConfig
}

// Server is the AM's HTTP server.
type Server struct {
	cfg   Config
	inv   Inventory
	links *pxelink.Manager
	log   *slog.Logger
	h     http.Handler
	ready chan struct{} // closed once Serve has bound its socket, or failed to
	addr  net.Addr      // the bound address, set before ready is closed

	fileMu     sync.Mutex // one reading of InventoryFile at a time
	statusMu   sync.Mutex // guards fileStatus, read while a reading runs
	fileStatus apiv1.InventoryStatus
}

// maxHeaderBytes lets an oversized query reach our handlers, which answer
// it with a 400 that names the parameter instead of a bare 431.
const maxHeaderBytes = 16 << 20

// New builds the AM's router.
func New(cfg Config, inv Inventory, links *pxelink.Manager, log *slog.Logger) *Server {
	if cfg.Guard == nil {
		// Every route is registered behind it: without one none could be.
		panic("am: Config.Guard is not set")
	}
	s := &Server{cfg: cfg, inv: inv, links: links, log: log, ready: make(chan struct{})}
	s.fileStatus = apiv1.InventoryStatus{Source: apiv1.InventoryFromAPI}
	if cfg.InventoryFile != "" {
		s.fileStatus = apiv1.InventoryStatus{Source: apiv1.InventoryFromFile, File: cfg.InventoryFile}
	}
	r := gin.New()
	// The peer is the client: a header naming another (X-Forwarded-For)
	// must not pass for it in the logs, the audit or omf.allow.
	_ = r.SetTrustedProxies(nil)
	r.Use(s.logRequests, gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, err any) {
		s.log.Error("panic in handler", "path", c.Request.URL.Path, "err", err)
		c.String(http.StatusInternalServerError, "internal error\n")
	}))
	root := r.Group("/")
	s.omfRoutes(root)
	api := r.Group("/api/v1")
	s.apiRoutes(api)
	if cfg.RC != nil {
		cfg.RC.Register(api, cfg.Guard)
	}
	if cfg.BootFiles != nil {
		cfg.BootFiles.Register(root, cfg.Guard)
	}
	s.ipxeRoutes(root)
	s.h = r
	return s
}

// Handler returns the AM's HTTP handler.
func (s *Server) Handler() http.Handler { return s.h }

// Ready is closed once Serve has bound its socket (Addr is then valid), or
// failed to.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address once Ready is closed: with a listen address
// of port 0, the port the system chose. Nil before, or if the bind failed.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// Serve serves on cfg.Listen until ctx is done, then shuts down gracefully.
// A listen error (port in use) is returned at once. Serve may be called
// once.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		close(s.ready)
		return fmt.Errorf("am: http listen %s: %w", s.cfg.Listen, err)
	}
	s.addr = ln.Addr()
	close(s.ready)
	srv := &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.log.Info("AM listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("am: serve: %w", err)
	case <-ctx.Done():
	}
	// ctx is done: the drain gets its own few seconds, as its caller asked
	// for the stop.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("am: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("am: serve: %w", err)
	}
	return nil
}

func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	path := c.Request.URL.Path
	// Changes are worth a line; reads, and the RCs' polls and progress
	// reports (several a second per node while imaging), are not.
	level := slog.LevelDebug
	if c.Writer.Status() >= 400 || (c.Request.Method != http.MethodGet && !strings.HasPrefix(path, "/api/v1/rc/")) {
		level = slog.LevelInfo
	}
	if len(path) > 200 {
		path = path[:200] + "..."
	}
	s.log.Log(c.Request.Context(), level, "http", "method", c.Request.Method, "path", path,
		"status", c.Writer.Status(), "dur", time.Since(start), "client", c.ClientIP())
}
