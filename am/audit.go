package am

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/textclip"
)

// AuditLog is where the AM records mutations (the store's audit table).
type AuditLog interface {
	AddAudits(ctx context.Context, entries []store.AuditEntry) error
	Audit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error)
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

// DefaultAuditRetention is how long entries are kept when Config says
// nothing.
const DefaultAuditRetention = 90 * 24 * time.Hour

// Bounds of what one entry keeps of a request: a path or query may be
// megabytes long.
const (
	maxAuditTarget = 1024
	maxAuditDetail = 256
)

// unaudited are the RCs' own high-rate calls: a poll held open per node,
// and progress reports several times a second while imaging. Their effects
// are the commands', which are audited when queued.
var unaudited = map[string]bool{
	"/api/v1/rc/poll":                true,
	"/api/v1/rc/commands/:id/report": true,
}

// omfCall is one OMF method with its service's way of failing, by route.
type omfCall struct {
	method omfMethod
	fail   func(c *gin.Context, m *omfMethod, err error)
}

// omfCalls indexes the OMF methods by their route.
func omfCalls(groups []omfGroup) map[string]omfCall {
	calls := map[string]omfCall{}
	for _, g := range groups {
		for _, m := range g.methods {
			calls["/"+g.name+"/"+m.name] = omfCall{method: m, fail: g.fail}
		}
	}
	return calls
}

// mutation says whether a request to route changes state: any method
// but GET and HEAD on the API, and the OMF calls not marked read. A
// request that matched no route changed nothing.
func (s *Server) mutation(method, route string) bool {
	if call, ok := s.omf[route]; ok {
		return !call.method.readOnly
	}
	return route != "" && method != http.MethodGet && method != http.MethodHead && !unaudited[route]
}

// audit records each mutation once it has been answered, whoever answered
// it: the guard's 401 and 403 and the limits' 429 as much as a handler's
// answer. It is the outermost middleware but the request log.
func (s *Server) audit(c *gin.Context) {
	c.Next()
	route := c.FullPath()
	if s.cfg.Audit == nil || !s.mutation(c.Request.Method, route) {
		return
	}
	who := apierr.CallerOf(c)
	addr := peer.Name(c.Request)
	name := who.Name
	if name == "" {
		name = addr
	}
	e := store.AuditEntry{
		At: time.Now().UTC(), Who: name, Role: string(who.Role), Addr: addr, Method: c.Request.Method, Route: route,
		Target: textclip.Line(s.auditTarget(c, route), maxAuditTarget), Status: c.Writer.Status(), Detail: textclip.Line(apierr.DetailOf(c), maxAuditDetail),
	}
	// The request is answered: its end (a client gone) must not lose it.
	if err := s.auditBatch.add(context.WithoutCancel(c.Request.Context()), s.cfg.Audit, e); err != nil {
		s.log.Error("audit: cannot record", "method", e.Method, "route", route, "who", e.Who, "status", e.Status, "err", err)
	}
}

// auditBatcher commits the entries of requests answered at once in one
// transaction (group commit): each request still waits until its entry is
// on disk, but a burst of mutations costs one commit, not one each. The
// first request to find no write going on writes every entry pending,
// its own included; requests arriving meanwhile wait, and the first of
// them writes the next batch.
type auditBatcher struct {
	mu      sync.Mutex
	writing bool
	pending []store.AuditEntry
	waiters []chan auditTurn // one per pending entry
}

// auditTurn ends a request's wait: its batch's outcome, or its turn to
// write the next batch.
type auditTurn struct {
	err  error
	lead bool
}

// add records e through log once a batch holding it is committed.
func (b *auditBatcher) add(ctx context.Context, log AuditLog, e store.AuditEntry) error {
	me := make(chan auditTurn, 1)
	b.mu.Lock()
	b.pending = append(b.pending, e)
	b.waiters = append(b.waiters, me)
	lead := !b.writing
	b.writing = true
	b.mu.Unlock()
	if !lead {
		if t := <-me; !t.lead {
			return t.err
		}
	}
	b.mu.Lock()
	batch, waiters := b.pending, b.waiters
	b.pending, b.waiters = nil, nil
	b.mu.Unlock()
	err := log.AddAudits(ctx, batch)
	b.mu.Lock()
	if len(b.waiters) > 0 {
		b.waiters[0] <- auditTurn{lead: true} // still writing: the next batch is theirs
	} else {
		b.writing = false
	}
	b.mu.Unlock()
	for _, w := range waiters {
		if w != me {
			w <- auditTurn{err: err}
		}
	}
	return err
}

// auditTarget is what the request acted on: what its handler noted,
// else the node, image or token the path names, else the OMF call's
// node or node set as given.
func (s *Server) auditTarget(c *gin.Context, route string) string {
	if t := apierr.TargetOf(c); t != "" {
		return t
	}
	for _, p := range []string{"hrn", "name"} {
		if v := c.Param(p); v != "" {
			return v
		}
	}
	if _, ok := s.omf[route]; ok {
		q, _ := url.ParseQuery(c.Request.URL.RawQuery) // what parsed of a malformed query
		for _, arg := range []string{"ns", "node", "hrn"} {
			if v := q.Get(arg); v != "" {
				return v
			}
		}
	}
	return ""
}

// apiAudit answers GET /audit?since=&node=&limit=: since is an RFC 3339
// time or a duration back from now (24h).
func (s *Server) apiAudit(c *gin.Context) {
	if s.cfg.Audit == nil {
		apierr.Write(c, apierr.New(http.StatusNotFound, "this appliance keeps no audit log"))
		return
	}
	q, err := auditQuery(c, time.Now())
	if err != nil {
		apierr.Write(c, err)
		return
	}
	entries, err := s.cfg.Audit.Audit(c.Request.Context(), q)
	writeJSON(c, http.StatusOK, entries, err)
}

// auditQuery reads GET /audit's parameters.
func auditQuery(c *gin.Context, now time.Time) (store.AuditQuery, error) {
	var q store.AuditQuery
	if v := c.Query("since"); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			q.Since = t
		} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
			q.Since = now.Add(-d)
		} else {
			return q, apierr.BadRequest("since: %q: want an RFC 3339 time (2026-05-01T12:00:00Z) or a positive duration back from now (24h)", textclip.Text(v, 64))
		}
	}
	if v, set := c.GetQuery("node"); set {
		if err := checkName("node", v); err != nil {
			return q, err
		}
		q.Node = v
	}
	if v, set := c.GetQuery("limit"); set {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxAuditLimit {
			return q, apierr.BadRequest("limit: %q: want a number from 1 to %d", textclip.Text(v, 64), store.MaxAuditLimit)
		}
		q.Limit = n
	}
	return q, nil
}

// KeepAudit deletes audit entries older than the retention, at once and
// then a few times per retention (at least hourly), until ctx is done.
func (s *Server) KeepAudit(ctx context.Context) error {
	if s.cfg.Audit == nil {
		return nil
	}
	keep := s.cfg.AuditRetention
	if keep <= 0 {
		keep = DefaultAuditRetention
	}
	t := time.NewTicker(max(min(keep/10, time.Hour), time.Second))
	defer t.Stop()
	for {
		n, err := s.cfg.Audit.PruneAudit(ctx, time.Now().Add(-keep))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("audit: pruning", "err", err)
		case n > 0:
			s.log.Info("audit: pruned old entries", "entries", n, "retention", keep)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// setTargets notes the nodes a call resolved to as its audit target.
func setTargets(c *gin.Context, targets []pxelink.Target) {
	hrns := make([]string, len(targets))
	for i, t := range targets {
		hrns[i] = t.HRN
	}
	apierr.SetTarget(c, strings.Join(hrns, ","))
}
