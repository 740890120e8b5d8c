package apierr

import (
	"github.com/gin-gonic/gin"
	"github.com/orbit-lab/netboot/internal/peer"
)

// Role is what a route asks of its caller, and what a caller was found to
// be. The operator roles are ordered: a role may call every route whose
// role ranks at or below its own.
type Role string

const (
	// RolePublic routes answer anyone: boot files and iPXE scripts that
	// firmware fetches with no credentials.
	RolePublic Role = "public"
	// RoleNode routes are the RC's own calls, authenticated by its
	// enrollment (MAC and source address at enrollment, then the
	// enrollment's bearer and HMAC).
	RoleNode Role = "node"
	// RoleOMF routes are the OMF services (/pxe, /inventory, /cmc): a stock
	// EC sends no header, so the source address (omf.allow) or a token
	// admits it.
	RoleOMF Role = "omf"
	// RoleViewer reads: every GET of the API.
	RoleViewer Role = "viewer"
	// RoleOperator drives nodes: boot links, power, commands, load and
	// save, disk images.
	RoleOperator Role = "operator"
	// RoleAdmin changes the appliance: inventory, tokens, config-level calls.
	RoleAdmin Role = "admin"
)

// Rank orders the operator roles (viewer < operator < admin); any other
// role ranks 0.
func (r Role) Rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// AtLeast says whether a caller of role r may call a route of role need.
func (r Role) AtLeast(need Role) bool { return need.Rank() > 0 && r.Rank() >= need.Rank() }

// Caller is who made a request, as the guard found it: the token's name and
// role, or, for a caller admitted by its address (OMF) or by nothing
// (public, node routes), no name and the source address.
type Caller struct {
	Name string // the token's name; "" when no token was presented
	Role Role   // the token's role; "" when no token was presented
	Addr string // the source address
}

// callerKey is where SetCaller keeps the Caller in gin's context.
const callerKey = "netboot.caller"

// SetCaller records who made the request, for the handlers and the audit.
func SetCaller(c *gin.Context, who Caller) { c.Set(callerKey, who) }

// CallerOf is who made the request, as SetCaller recorded it; without a
// record, only the source address is known.
func CallerOf(c *gin.Context) Caller {
	if v, ok := c.Get(callerKey); ok {
		if who, ok := v.(Caller); ok {
			return who
		}
	}
	return Caller{Addr: peer.Name(c.Request)}
}
