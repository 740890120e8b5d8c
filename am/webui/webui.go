// Package webui is netbootd's web view: a page of plain HTML, CSS and
// JavaScript embedded in the binary (no build step, nothing fetched from
// elsewhere: it works on an isolated control network), served at /ui/, and
// the stream of boot events it follows, GET /api/v1/events/stream.
//
// The page holds no data: it signs in with a token the operator pastes,
// and reads and acts through the JSON API like nbctl, so the guard admits
// each call by the token's role as it admits any other.
package webui

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/textclip"
)

// Path is where the page is served; "/" redirects browsers there.
const Path = "/ui/"

// StreamPath is the event stream's route under /api/v1.
const StreamPath = "/events/stream"

//go:embed static
var static embed.FS

// Events reads the timelines the stream starts from (the store).
type Events interface {
	RecentEvents(ctx context.Context, perNode int) ([]apiv1.Event, error)
}

// Config tunes the stream; the zero value takes the defaults.
type Config struct {
	// Buffer is how many events a subscriber may lag behind before it is
	// dropped (told to reload); 0: DefaultBuffer.
	Buffer int
	// Ping is how often an idle stream gets a comment, so that proxies
	// and the browser see it alive; 0: DefaultPing.
	Ping time.Duration
	// MaxStreams bounds the streams open at once (each holds a buffer);
	// one more is refused with 503. 0: DefaultMaxStreams.
	MaxStreams int
}

const (
	// DefaultBuffer holds a whole grid's boot burst (400 nodes, a few
	// DHCP and TFTP events each) without dropping a browser that reads.
	DefaultBuffer = 4096
	// DefaultPing is well under the idle timeouts of proxies (60 s).
	DefaultPing = 15 * time.Second
	// DefaultMaxStreams is a few browsers per operator of a large testbed.
	DefaultMaxStreams = 64
	// defaultRecent is how many of each node's newest events the stream
	// starts with: enough to derive its state and the current boot's
	// phases.
	defaultRecent = 20
)

// UI serves the page and fans the committed events out to the streams.
type UI struct {
	cfg    Config
	events Events
	log    *slog.Logger

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// subscriber is one open stream: its events, and lost, closed once it
// fell more than Buffer behind and was dropped.
type subscriber struct {
	ch   chan apiv1.Event
	lost chan struct{}
}

// New returns the web view, reading the first events from events.
func New(cfg Config, events Events, log *slog.Logger) *UI {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Ping <= 0 {
		cfg.Ping = DefaultPing
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	return &UI{cfg: cfg, events: events, log: log, subs: map[*subscriber]struct{}{}}
}

// Publish hands a committed event to every open stream. It never blocks:
// it runs in the store's committing goroutine (store.ObserveEvents), and a
// slow browser must not hold the DHCP server up. A stream whose buffer is
// full is dropped and told to reload.
func (u *UI) Publish(e apiv1.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for s := range u.subs {
		select {
		case s.ch <- e:
		default:
			close(s.lost)
			delete(u.subs, s)
		}
	}
}

// subscribe opens a stream's subscription; nil when MaxStreams are open.
func (u *UI) subscribe() *subscriber {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.subs) >= u.cfg.MaxStreams {
		return nil
	}
	s := &subscriber{ch: make(chan apiv1.Event, u.cfg.Buffer), lost: make(chan struct{})}
	u.subs[s] = struct{}{}
	return s
}

func (u *UI) unsubscribe(s *subscriber) {
	u.mu.Lock()
	delete(u.subs, s)
	u.mu.Unlock()
}

// Subscribers is how many streams are open.
func (u *UI) Subscribers() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.subs)
}

// Register adds the page's routes to root (public: the files hold no
// data) and the stream to api (viewer).
func (u *UI) Register(root, api *gin.RouterGroup, g apierr.Guard) {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(fmt.Sprintf("webui: embedded files: %v", err)) // the embed directive makes it
	}
	fileServer := http.StripPrefix(Path, http.FileServerFS(files))
	apierr.Register(root, g, []apierr.Route{
		{Method: http.MethodGet, Path: Path + "*file", Role: apierr.RolePublic, Handler: func(c *gin.Context) {
			h := c.Writer.Header()
			// Only our own files run, and nothing frames the page: data
			// shown by mistake as markup could run nothing anyway.
			h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cache-Control", "no-cache")
			fileServer.ServeHTTP(c.Writer, c.Request)
		}},
	})
	apierr.Register(api, g, []apierr.Route{
		{Method: http.MethodGet, Path: StreamPath, Role: apierr.RoleViewer, Handler: u.stream},
	})
}

// stream answers Server-Sent Events: "snapshot" (a JSON array: each node's
// newest events), then "event" (one JSON event) as each is committed, and
// "reload" if this reader fell too far behind, after which the stream
// ends. The page reads it with fetch() and the Authorization header, as
// every other call: EventSource sends no header, and a token in the URL
// would land in logs and the browser's history.
func (u *UI) stream(c *gin.Context) {
	recent := defaultRecent
	if v, ok := c.GetQuery("recent"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 500 {
			apierr.Write(c, apierr.BadRequest("recent %q: want 0 to 500", textclip.Text(v, 40)))
			return
		}
		recent = n
	}
	ctx := c.Request.Context()
	// Subscribed before the snapshot is read: an event committed between
	// the two comes twice (the page keeps the later of equal times), never
	// not at all.
	s := u.subscribe()
	if s == nil {
		apierr.Write(c, apierr.New(http.StatusServiceUnavailable, "%d event streams are open already: close a web view", u.cfg.MaxStreams))
		return
	}
	defer u.unsubscribe(s)
	snapshot := []apiv1.Event{}
	if recent > 0 {
		var err error
		if snapshot, err = u.events.RecentEvents(ctx, recent); err != nil {
			apierr.Write(c, fmt.Errorf("webui: %w", err))
			return
		}
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	if !u.send(c, "snapshot", snapshot) {
		return
	}
	ping := time.NewTicker(u.cfg.Ping)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.lost:
			u.log.Info("webui: a stream fell behind; told to reload", "client", peer.Name(c.Request))
			u.send(c, "reload", struct{}{})
			return
		case e := <-s.ch:
			if !u.send(c, "event", e) {
				return
			}
		case <-ping.C:
			if _, err := c.Writer.WriteString(": ping\n\n"); err != nil {
				return
			}
			c.Writer.Flush()
		}
	}
}

// send writes one event and flushes it; false once the reader is gone.
func (u *UI) send(c *gin.Context, name string, v any) bool {
	data, err := json.Marshal(v)
	if err != nil {
		u.log.Error("webui: encode", "event", name, "err", err)
		return false
	}
	// JSON holds no raw newline, so one data line carries it.
	if _, err := fmt.Fprintf(c.Writer, "event: %s\ndata: %s\n\n", name, data); err != nil {
		return false
	}
	c.Writer.Flush()
	return true
}
