// Package am is the Aggregate Manager: one HTTP server carrying the OMF
// services as OMF 5.4 spoke them (/pxe, /inventory) and the JSON API under
// /api/v1 (and, beside them, the boot files of am/httpboot). Both sides resolve nodes and change boot links through the same
// code, so they cannot disagree.
package am

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
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
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/textclip"
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
	Listen string // plain HTTP listen address, e.g. ":5054"; "" for none
	// TLSListen, if set, is an HTTPS listener of the same handler, with
	// TLS as its config (its certificate).
	TLSListen    string
	TLS          *tls.Config
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
	// UI, if set, adds the web view (am/webui): its page at the root and
	// its event stream under /api/v1; then "/" redirects browsers to it.
	UI interface {
		Register(root, api *gin.RouterGroup, g apierr.Guard)
	}
	// InventoryFile, if set, is the inventory's source of truth
	// (inventory.file): LoadInventoryFile reads it, and the API refuses to
	// change nodes.
	InventoryFile string
	// IPXE, with a Prefix, adds the per-node iPXE scripts (IPXEPath).
	IPXE IPXEConfig
	// Audit, if set, records every mutation (see audit.go), kept for
	// AuditRetention (0: DefaultAuditRetention) by KeepAudit.
	Audit          AuditLog
	AuditRetention time.Duration
	// Limits are the per-source abuse limits (see limits.go); the zero
	// value limits nothing.
	Limits Limits
	// Metrics, if set, counts every request by route and status, and is
	// served at MetricsPath (role viewer: a scraper sends a token).
	Metrics *metrics.Metrics
}

// MetricsPath is where the Prometheus metrics are served.
const MetricsPath = "/metrics"

// Server is the AM's HTTP server.
type Server struct {
	cfg   Config
	inv   Inventory
	links *pxelink.Manager
	log   *slog.Logger
	h     http.Handler
	ready chan struct{} // closed once Serve has bound its sockets, or failed to
	// The bound addresses, set before ready is closed.
	addr, tlsAddr net.Addr

	fileMu     sync.Mutex // one reading of InventoryFile at a time
	statusMu   sync.Mutex // guards fileStatus, read while a reading runs
	fileStatus apiv1.InventoryStatus

	omf        map[string]omfCall // the OMF methods by route, for the audit and the limits
	limits     *limiters
	auditBatch auditBatcher
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
	s.omf = omfCalls(s.omfGroups())
	s.limits = newLimiters(cfg.Limits)
	r := gin.New()
	// No proxy is trusted: the source a request is logged, audited and
	// limited under is its peer's address, never a header it sent.
	_ = r.SetTrustedProxies(nil) // fails only on a malformed proxy list
	// The middleware, outermost first: the request log; the audit, which
	// sees every answer, refusals and panics included; the recovery; the
	// per-source limits, which answer 429 before any guard or handler
	// runs; then the routes.
	r.Use(s.logRequests, s.audit, gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, err any) {
		s.log.Error("panic in handler", "path", c.Request.URL.Path, "err", err)
		c.String(http.StatusInternalServerError, "internal error\n")
	}), s.limit)
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
	if cfg.UI != nil {
		cfg.UI.Register(root, api, cfg.Guard)
	}
	if cfg.Metrics != nil {
		apierr.Register(root, cfg.Guard, []apierr.Route{
			{Method: http.MethodGet, Path: MetricsPath, Handler: gin.WrapH(cfg.Metrics.Handler()), Role: apierr.RoleViewer},
		})
	}
	s.h = r
	return s
}

// Handler returns the AM's HTTP handler.
func (s *Server) Handler() http.Handler { return s.h }

// Ready is closed once Serve has bound its sockets (Addr and TLSAddr are
// then valid), or failed to.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the plain listener's bound address once Ready is closed: with a
// listen address of port 0, the port the system chose. Nil before, if the
// bind failed, or with no plain listener.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// TLSAddr is Addr for the TLS listener.
func (s *Server) TLSAddr() net.Addr {
	select {
	case <-s.ready:
		return s.tlsAddr
	default:
		return nil
	}
}

// Serve serves on cfg.Listen and cfg.TLSListen (each if set) until ctx is
// done, then shuts both down gracefully. A listen error (port in use) is
// returned at once. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if s.cfg.TLSListen != "" && s.cfg.TLS == nil {
		close(s.ready)
		return errors.New("am: TLSListen without a TLS config")
	}
	var plain, secure net.Listener
	var err error
	if s.cfg.Listen != "" {
		if plain, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			close(s.ready)
			return fmt.Errorf("am: http listen %s: %w", s.cfg.Listen, err)
		}
		s.addr = plain.Addr()
	}
	if s.cfg.TLSListen != "" {
		if secure, err = net.Listen("tcp", s.cfg.TLSListen); err != nil {
			if plain != nil {
				plain.Close()
			}
			s.addr = nil
			close(s.ready)
			return fmt.Errorf("am: https listen %s: %w", s.cfg.TLSListen, err)
		}
		s.tlsAddr = secure.Addr()
	}
	close(s.ready)
	if secure != nil {
		cfg := s.cfg.TLS.Clone()
		// Both listeners go through Serve, which sets HTTP/2 up once per
		// server, the same whichever comes first; the TLS one offers it
		// here. (ServeTLS beside Serve would offer h2 without setting it
		// up whenever the plain Serve came first, and cut off every
		// HTTP/2 client: curl, nbctl.)
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		secure = tls.NewListener(secure, cfg)
	}
	// One server for both listeners: one handler, and one Shutdown that
	// drains them both.
	srv := &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          log.New(serverErrors{s.log}, "", 0),
	}
	errc := make(chan error, 2)
	serving := 0
	if plain != nil {
		s.log.Info("AM listening", "addr", plain.Addr().String())
		serving++
		go func() { errc <- srv.Serve(plain) }()
	}
	if secure != nil {
		s.log.Info("AM listening", "addr", secure.Addr().String(), "tls", true)
		serving++
		go func() { errc <- srv.Serve(secure) }()
	}
	select {
	case err := <-errc:
		// One listener failed: the other stops too.
		serving--
		_ = srv.Close()
		for ; serving > 0; serving-- {
			if other := <-errc; !errors.Is(other, http.ErrServerClosed) {
				err = errors.Join(err, other)
			}
		}
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
	for ; serving > 0; serving-- {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("am: serve: %w", err)
		}
	}
	return nil
}

// serverErrors is net/http's error log: a TLS handshake a client broke
// off (an nbctl that does not trust the certificate, plain HTTP on the TLS
// port), which any client can cause at will, at debug; the rest at warn.
type serverErrors struct{ log *slog.Logger }

func (w serverErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	// By the route's pattern, never the path: one series per route.
	s.cfg.Metrics.HTTPRequest(c.Request.Method, c.FullPath(), c.Writer.Status(), time.Since(start))
	path := c.Request.URL.Path
	// Changes are worth a line; reads, and the RCs' polls and progress
	// reports (several a second per node while imaging), are not.
	level := slog.LevelDebug
	if c.Writer.Status() >= 400 || (c.Request.Method != http.MethodGet && !strings.HasPrefix(path, "/api/v1/rc/")) {
		level = slog.LevelInfo
	}
	path = textclip.Text(path, 200)
	s.log.Log(c.Request.Context(), level, "http", "method", c.Request.Method, "path", path,
		"status", c.Writer.Status(), "dur", time.Since(start), "client", peer.Name(c.Request))
}
