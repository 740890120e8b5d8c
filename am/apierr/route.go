package apierr

import (
	"fmt"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

// Route is one HTTP route that a package serves: an /api/v1 call, an OMF
// service, a boot file or iPXE script path.
type Route struct {
	Method  string
	Path    string
	Handler gin.HandlerFunc
	// Role is what the route asks of its caller (see Role); every route
	// declares one.
	Role Role
}

// Guard admits a route's callers by the role the route declares (am/guard
// is the one). Admit is called once per route, at registration, with the
// route's method and full path, and returns the middleware that runs
// before its handler.
type Guard interface {
	Admit(method, path string, role Role) gin.HandlerFunc
}

// Register adds routes to g, in order, each behind guard's middleware for
// its Role. A route without a Role is a bug that would leave it open or
// shut by accident: Register panics, at start-up.
func Register(g *gin.RouterGroup, guard Guard, routes []Route) {
	for _, r := range routes {
		full := joinPath(g.BasePath(), r.Path)
		if r.Role == "" {
			panic(fmt.Sprintf("apierr: route %s %s declares no role", r.Method, full))
		}
		g.Handle(r.Method, r.Path, guard.Admit(r.Method, full, r.Role), r.Handler)
	}
}

// joinPath is the route's full path as gin joins it (gin's Engine.Routes
// lists it so): a trailing '/' of rel is kept.
func joinPath(base, rel string) string {
	if rel == "" {
		return base
	}
	p := path.Join(base, rel)
	if strings.HasSuffix(rel, "/") && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}
