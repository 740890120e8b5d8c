package apierr

import "github.com/gin-gonic/gin"

// Route is one /api/v1 call that a package serves.
type Route struct {
	Method  string
	Path    string
	Handler gin.HandlerFunc
	// Role is what the route asks of its caller (see Role); every route
	// declares one.
	Role Role
}

// Register adds routes to g, in order.
func Register(g *gin.RouterGroup, routes []Route) {
	for _, r := range routes {
		g.Handle(r.Method, r.Path, r.Handler)
	}
}
