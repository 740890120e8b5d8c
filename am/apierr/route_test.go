package apierr

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
)

// recorder is a Guard that notes each route it is asked to admit.
type recorder map[string]Role

func (r recorder) Admit(method, path string, role Role) gin.HandlerFunc {
	r[method+" "+path] = role
	return func(*gin.Context) {}
}

func TestRegister(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	rec := recorder{}
	ok := func(*gin.Context) {}
	Register(e.Group("/api/v1"), rec, []Route{
		{Method: http.MethodGet, Path: "/nodes", Handler: ok, Role: RoleViewer},
		{Method: http.MethodPut, Path: "/nodes/:hrn/boot", Handler: ok, Role: RoleOperator},
	})
	Register(e.Group("/"), rec, []Route{
		{Method: http.MethodGet, Path: "/", Handler: ok, Role: RoleOMF},
		{Method: http.MethodGet, Path: "/ipxe/:hex", Handler: ok, Role: RolePublic},
		{Method: http.MethodGet, Path: "/boot/*name", Handler: ok, Role: RolePublic},
	})
	// The guard is told each route's path as gin lists it.
	for _, r := range e.Routes() {
		if _, found := rec[r.Method+" "+r.Path]; !found {
			t.Errorf("gin's %s %s was not declared to the guard (it got %v)", r.Method, r.Path, rec)
		}
	}
	if len(rec) != len(e.Routes()) {
		t.Errorf("%d routes declared, gin has %d", len(rec), len(e.Routes()))
	}

	defer func() {
		if recover() == nil {
			t.Error("a route without a role was registered")
		}
	}()
	Register(e.Group("/api/v1"), rec, []Route{{Method: http.MethodDelete, Path: "/nodes/:hrn", Handler: ok}})
}
