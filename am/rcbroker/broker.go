// Package rcbroker is the appliance's side of the Resource Controller
// protocol (package rc/proto): it enrolls the orbit-rc of netbooted nodes,
// queues operators' commands for them in the database, hands the commands
// out, signed, to the RCs' long polls, records what the RCs report, and
// stores the disk images that LOAD_IMAGE writes and SAVE_IMAGE reads.
//
// Its routes live in the AM's /api/v1 group (Register); a background loop
// (Run) fails commands whose RC went silent.
package rcbroker

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/mcastsend"
	"github.com/orbit-lab/netboot/internal/apitoken"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/rc/proto"
)

// Store is what the broker reads and writes of the database.
type Store interface {
	LookupNode(ctx context.Context, domain, name string) (inventory.Node, error)
	NodeByMAC(ctx context.Context, mac string) (inventory.Node, error)
	LeaseByMAC(ctx context.Context, mac string) (store.Lease, error)
	AddEvent(ctx context.Context, e store.Event) error

	PutRCEnrollment(ctx context.Context, e store.RCEnrollment, events ...store.Event) (store.RCEnrollment, error)
	RCEnrollment(ctx context.Context, hrn string) (store.RCEnrollment, error)
	RCEnrollmentBySecret(ctx context.Context, secret string) (store.RCEnrollment, error)
	RCEnrollments(ctx context.Context) ([]store.RCEnrollment, error)
	TouchRCEnrollment(ctx context.Context, id int64, at time.Time) error

	AddRCCommand(ctx context.Context, c store.RCCommand) (store.RCCommand, error)
	RCCommand(ctx context.Context, id int64) (store.RCCommand, error)
	RCCommands(ctx context.Context, hrn string, limit int) ([]store.RCCommand, error)
	ActiveRCCommands(ctx context.Context) ([]store.RCCommand, error)
	TakeRCCommand(ctx context.Context, enrollment int64, at time.Time) (store.RCCommand, error)
	RunningRCCommand(ctx context.Context, enrollment int64, typ, image string) (store.RCCommand, error)
	ReportRCCommand(ctx context.Context, id, enrollment int64, r proto.Report, maxOutput int, at time.Time) error
	FailLostRCCommands(ctx context.Context, enrollment int64, keep []int64, at time.Time) (int64, error)
	FailSilentRCCommands(ctx context.Context, before, at time.Time) ([]int64, error)
}

var _ Store = (*store.Store)(nil)

// Config configures the broker. Only ImageDir is required.
type Config struct {
	// ImageDir holds the disk images (NAME.zst or NAME.gz, each with a
	// NAME.ext.sha256 beside it); netbootd uses state_dir/images.
	ImageDir string
	// PollWait is the longest an RC's poll waits for a command (default 25s).
	PollWait time.Duration
	// MaxOutput bounds the bytes of stdout and of stderr kept per command
	// (default 1 MiB); the rest is dropped and the command marked truncated.
	MaxOutput int
	// SilentAfter fails a running command whose RC has not been heard from
	// for this long (default 2*PollWait + 30s).
	SilentAfter time.Duration
	// Multicast: how chunked images reach several nodes at once; the
	// zero value sends each node its own HTTP stream.
	Multicast Multicast
	// Metrics, if set, counts disk-image bytes (served over HTTP, sent by
	// multicast sessions, stored) and the transfers and sessions running.
	Metrics *metrics.Metrics

	// pollWaits, if set, is called each time a poll has found no command
	// and starts to wait for one, so that a test can queue a command at a
	// moment it knows a poll waits (export_test.go sets it).
	pollWaits func(hrn string)
}

// Defaults.
const (
	DefaultPollWait  = 25 * time.Second
	DefaultMaxOutput = 1 << 20
)

// Broker serves the RC protocol and the operators' RC calls.
type Broker struct {
	cfg    Config
	st     Store
	log    *slog.Logger
	images *imageStore
	mcast  *sessions // nil: multicast off
	wake   notifier
	start  time.Time

	mu      sync.Mutex
	polling map[int64]int // enrollment -> polls in progress
}

// New checks cfg, fills its defaults and prepares the image directory.
func New(cfg Config, st Store, log *slog.Logger) (*Broker, error) {
	if cfg.ImageDir == "" {
		return nil, errors.New("rcbroker: no image directory")
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	if cfg.MaxOutput <= 0 {
		cfg.MaxOutput = DefaultMaxOutput
	}
	if cfg.SilentAfter <= 0 {
		cfg.SilentAfter = 2*cfg.PollWait + 30*time.Second
	}
	images, err := openImageStore(cfg.ImageDir, log)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, st: st, log: log, images: images, start: time.Now(), polling: map[int64]int{}}
	if cfg.Multicast.enabled() {
		if !cfg.Multicast.Source.IsValid() || cfg.Multicast.Rate <= 0 || cfg.Multicast.PortLast < cfg.Multicast.PortFirst {
			return nil, errors.New("rcbroker: multicast needs a source address, a rate and a port range")
		}
		b.mcast = &sessions{cfg: cfg.Multicast, images: images, log: log, metrics: cfg.Metrics, joins: make(chan joinRequest),
			pace: mcastsend.NewLimiter(cfg.Multicast.Rate)}
	}
	return b, nil
}

// Register adds the broker's routes to the AM's /api/v1 group.
func (b *Broker) Register(g *gin.RouterGroup, guard apierr.Guard) {
	// This table is where each of the broker's routes is declared.
	apierr.Register(g, guard, []apierr.Route{
		// The RC's calls.
		{Method: http.MethodPost, Path: "/rc/enroll", Handler: b.enroll, Role: apierr.RoleNode},
		{Method: http.MethodGet, Path: "/rc/poll", Handler: b.poll, Role: apierr.RoleNode},
		{Method: http.MethodPost, Path: "/rc/commands/:id/report", Handler: b.report, Role: apierr.RoleNode},
		// The operators'.
		{Method: http.MethodGet, Path: "/rc", Handler: b.statusAll, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/nodes/:hrn/rc", Handler: b.status, Role: apierr.RoleViewer},
		{Method: http.MethodPost, Path: "/nodes/:hrn/commands", Handler: b.addCommand, Role: apierr.RoleOperator},
		{Method: http.MethodGet, Path: "/nodes/:hrn/commands", Handler: b.nodeCommands, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/commands", Handler: b.activeCommands, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/commands/:id", Handler: b.command, Role: apierr.RoleViewer},
		// Both.
		{Method: http.MethodGet, Path: "/disk-images", Handler: b.listImages, Role: apierr.RoleViewer},
		{Method: http.MethodGet, Path: "/disk-images/:name", Handler: b.getImage, Role: apierr.RoleNode},
		{Method: http.MethodHead, Path: "/disk-images/:name", Handler: b.getImage, Role: apierr.RoleNode},
		{Method: http.MethodGet, Path: "/disk-images/:name/manifest", Handler: b.getImageManifest, Role: apierr.RoleNode},
		{Method: http.MethodPut, Path: "/disk-images/:name", Handler: b.putImage, Role: apierr.RoleNode},
		{Method: http.MethodDelete, Path: "/disk-images/:name", Handler: b.deleteImage, Role: apierr.RoleOperator},
	})
}

// Run fails the running commands of RCs that went silent, until ctx is
// done. It waits SilentAfter after the broker started before the first
// check, so that RCs have time to come back after an appliance restart.
func (b *Broker) Run(ctx context.Context) error {
	if b.mcast != nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.mcast.run(ctx)
		}()
		defer func() { <-done }()
	}
	every := min(b.cfg.SilentAfter/4, 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if now.Sub(b.start) < b.cfg.SilentAfter {
				continue
			}
			ids, err := b.st.FailSilentRCCommands(ctx, now.Add(-b.cfg.SilentAfter), now)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				b.log.Error("rc: failing silent commands", "err", err)
				continue
			}
			if len(ids) > 0 {
				b.log.Warn("rc: commands failed, their RC went silent", "commands", ids)
			}
		}
	}
}

// notifier wakes the polls waiting for a node's next command.
type notifier struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

// wait returns a channel closed at the node's next notify.
func (n *notifier) wait(hrn string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = map[string]chan struct{}{}
	}
	c, ok := n.ch[hrn]
	if !ok {
		c = make(chan struct{})
		n.ch[hrn] = c
	}
	return c
}

func (n *notifier) notify(hrn string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.ch[hrn]; ok {
		close(c)
		delete(n.ch, hrn)
	}
}

// apiError answers err, and logs server-side failures.
func (b *Broker) apiError(c *gin.Context, err error) {
	if apierr.Write(c, err) >= 500 {
		b.log.Error("rc api", "path", c.Request.URL.Path, "err", err)
	}
}

// authenticate finds the enrollment of the request's bearer secret; it has
// answered 401 when it returns false.
func (b *Broker) authenticate(c *gin.Context) (store.RCEnrollment, bool) {
	tok, ok := apitoken.Bearer(c.Request)
	if !ok {
		c.Header("WWW-Authenticate", `Bearer realm="orbit-rc"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, apiv1.ErrorBody{Error: "missing bearer token"})
		return store.RCEnrollment{}, false
	}
	e, err := b.st.RCEnrollmentBySecret(c.Request.Context(), tok)
	if errors.Is(err, store.ErrNotFound) {
		c.Header("WWW-Authenticate", `Bearer realm="orbit-rc", error="invalid_token"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, apiv1.ErrorBody{Error: proto.ErrUnknownEnrollment})
		return store.RCEnrollment{}, false
	}
	if err != nil {
		b.apiError(c, err)
		return store.RCEnrollment{}, false
	}
	return e, true
}

func (b *Broker) pollStarted(id int64) {
	b.mu.Lock()
	b.polling[id]++
	b.mu.Unlock()
}

func (b *Broker) pollEnded(id int64) {
	b.mu.Lock()
	if b.polling[id]--; b.polling[id] <= 0 {
		delete(b.polling, id)
	}
	b.mu.Unlock()
}

func (b *Broker) isPolling(id int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.polling[id] > 0
}
