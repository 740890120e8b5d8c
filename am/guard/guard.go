// Package guard admits the AM's callers by the role each route declares
// (apierr.Route.Role): operator API tokens (internal/apitoken) for the
// API, the source address or a token for the OMF services, nothing for
// the boot files. It records who called (apierr.SetCaller) for the
// handlers and the audit.
package guard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/apitoken"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
)

// Tokens finds a token by its hash (the store).
type Tokens interface {
	TokenByHash(ctx context.Context, hash string) (store.Token, error)
}

// Config says which sources the OMF services admit without a token.
type Config struct {
	// OMFAllow admits every OMF call (omf.allow): the EC hosts, which send
	// no header.
	OMFAllow []netip.Prefix
	// OMFAllowRead admits the read-only OMF calls (omf.allow_read).
	OMFAllowRead []netip.Prefix
}

// DefaultOMFAllow is omf.allow's default (config's): this host.
func DefaultOMFAllow() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// Guard is the AM's admission check, one per server.
type Guard struct {
	cfg    Config
	tokens Tokens
	now    func() time.Time

	mu    sync.Mutex
	roles map[string]apierr.Role // "METHOD /full/path" -> the role Admit was given
}

var _ apierr.Guard = (*Guard)(nil)

// New returns a guard that checks tokens against tokens.
func New(cfg Config, tokens Tokens) *Guard {
	return &Guard{cfg: cfg, tokens: tokens, now: time.Now, roles: map[string]apierr.Role{}}
}

// Roles is every route Admit was called for, as "METHOD /path", with its
// role: what a test holds gin's route list against.
func (g *Guard) Roles() map[string]apierr.Role {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.roles)
}

// Admit is the middleware of a route of role: see apierr.Role for who
// each admits.
func (g *Guard) Admit(method, path string, role apierr.Role) gin.HandlerFunc {
	g.mu.Lock()
	g.roles[method+" "+path] = role
	g.mu.Unlock()
	switch role {
	case apierr.RolePublic, apierr.RoleOMF:
		// Public: no credentials, and a stray header is not looked at. OMF:
		// its handler asks OMF, which answers a refusal in the service's
		// own XML.
		return func(c *gin.Context) { apierr.SetCaller(c, apierr.Caller{Addr: peer.Name(c.Request)}) }
	case apierr.RoleNode:
		return g.node
	case apierr.RoleViewer, apierr.RoleOperator, apierr.RoleAdmin:
		return func(c *gin.Context) { g.operator(c, role) }
	}
	panic(fmt.Sprintf("guard: route %s %s: unknown role %q", method, path, role))
}

// operator admits a token of role need or above: no token or a bad one is
// 401, a lower role 403.
func (g *Guard) operator(c *gin.Context, need apierr.Role) {
	who, err := g.token(c)
	if err == nil && who.Name == "" {
		err = &refusal{status: http.StatusUnauthorized, msg: fmt.Sprintf(
			"this call needs a token of role %s or above: send Authorization: Bearer <token> (nbctl reads $NBCTL_TOKEN)", need)}
	}
	if err == nil && !who.Role.AtLeast(need) {
		err = &refusal{status: http.StatusForbidden, msg: fmt.Sprintf("token %q has role %s; this call needs %s or above", who.Name, who.Role, need)}
	}
	if err != nil {
		abort(c, err)
		return
	}
	apierr.SetCaller(c, who)
}

// node admits everyone, as the RC broker authenticates the RC's own
// bearer; a token of ours (an operator fetching a disk image) is checked
// here and recorded, for the handler to see its role.
func (g *Guard) node(c *gin.Context) {
	who := apierr.Caller{Addr: peer.Name(c.Request)}
	if tok, _ := apitoken.Bearer(c.Request); apitoken.Is(tok) {
		var err error
		if who, err = g.token(c); err != nil {
			abort(c, err)
			return
		}
	}
	apierr.SetCaller(c, who)
}

// OMF admits an OMF call, read-only or not, and records the caller: with a
// token of role viewer (reads) or operator; else from a source in
// omf.allow, or for a read in omf.allow_read. A refusal is an error with
// its status (apierr.Status) and a reason, for the service to answer in
// its XML.
func (g *Guard) OMF(c *gin.Context, readOnly bool) error {
	need := apierr.RoleOperator
	if readOnly {
		need = apierr.RoleViewer
	}
	who, err := g.token(c)
	var r *refusal
	if errors.As(err, &r) {
		return apierr.New(r.status, "%s", r.msg)
	}
	if err != nil {
		return err
	}
	if who.Name != "" {
		if !who.Role.AtLeast(need) {
			return apierr.New(http.StatusForbidden, "token %q has role %s; this call needs %s or above", who.Name, who.Role, need)
		}
		apierr.SetCaller(c, who)
		return nil
	}
	addr := peer.Addr(c.Request)
	admitted := inAny(g.cfg.OMFAllow, addr) || (readOnly && inAny(g.cfg.OMFAllowRead, addr))
	if !admitted {
		key := "omf.allow"
		if readOnly {
			key = "omf.allow or omf.allow_read"
		}
		return apierr.New(http.StatusForbidden, "source %s is not in %s: add its CIDR to the config, or send a token of role %s (Authorization: Bearer)", who.Addr, key, need)
	}
	apierr.SetCaller(c, who)
	return nil
}

// token is the caller as the request's bearer token shows it: no name
// without one; an unknown, revoked or expired token, or a header of
// another form, is a 401.
func (g *Guard) token(c *gin.Context) (apierr.Caller, error) {
	who := apierr.Caller{Addr: peer.Name(c.Request)}
	h := c.GetHeader("Authorization")
	if h == "" {
		return who, nil
	}
	tok, ok := apitoken.Bearer(c.Request)
	if !ok || !apitoken.Is(tok) {
		return who, &refusal{status: http.StatusUnauthorized, invalid: true, msg: "Authorization: want Bearer and a token nbctl token create made (" + apitoken.Prefix + "...)"}
	}
	t, err := g.tokens.TokenByHash(c.Request.Context(), apitoken.Hash(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return who, &refusal{status: http.StatusUnauthorized, invalid: true, msg: "unknown token"}
	case err != nil:
		return who, fmt.Errorf("guard: %w", err)
	case !t.Revoked.IsZero():
		return who, &refusal{status: http.StatusUnauthorized, invalid: true, msg: fmt.Sprintf("token %q was revoked", t.Name)}
	case !t.Active(g.now()):
		return who, &refusal{status: http.StatusUnauthorized, invalid: true, msg: fmt.Sprintf("token %q expired at %s", t.Name, t.Expires.UTC().Format(time.RFC3339))}
	}
	who.Name, who.Role = t.Name, apierr.Role(t.Role)
	return who, nil
}

// refusal is a failed admission: its status, and whether the token itself
// was bad (the WWW-Authenticate error).
type refusal struct {
	status  int
	invalid bool
	msg     string
}

func (r *refusal) Error() string { return r.msg }

// abort answers err as the API does: JSON, with the WWW-Authenticate
// challenge on a 401.
func abort(c *gin.Context, err error) {
	var r *refusal
	if !errors.As(err, &r) {
		apierr.Write(c, err)
		c.Abort()
		return
	}
	if r.status == http.StatusUnauthorized {
		challenge := `Bearer realm="netboot"`
		if r.invalid {
			challenge += `, error="invalid_token"`
		}
		c.Header("WWW-Authenticate", challenge)
	}
	c.AbortWithStatusJSON(r.status, apiv1.ErrorBody{Error: r.msg})
}

func inAny(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if a.IsValid() && p.Contains(a) {
			return true
		}
	}
	return false
}
