// Package apierr is the one way the AM and its RC broker answer a failed
// /api/v1 call: the status that tells the caller what to fix, and the
// apiv1.ErrorBody that says it. It also holds the Route table type both
// declare their /api/v1 routes in, how both read the node a route names
// (NodeRef, LookupNode), and the writer that file bodies go to (RawWriter).
package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// statusError is an error that knows its HTTP status.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// New is an error answered with status.
func New(status int, format string, args ...any) error {
	return &statusError{status: status, msg: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400: the caller must fix the request.
func BadRequest(format string, args ...any) error {
	return New(http.StatusBadRequest, format, args...)
}

// BadBody answers a request body that could not be read or decoded: a 413
// for one over the limit (the caller must send less, not fix a field), else
// a 400.
func BadBody(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return New(http.StatusRequestEntityTooLarge, "request body: larger than %d bytes", tooBig.Limit)
	}
	return BadRequest("%v", err)
}

// StatusClientGone answers a request whose client went away; nobody
// reads it.
const StatusClientGone = 499

// Status maps an error to the status that tells the caller what to fix.
func Status(err error) int {
	var se *statusError
	var ie *inventory.Error
	switch {
	case errors.As(err, &se):
		return se.status
	case errors.Is(err, store.ErrNotFound), errors.Is(err, pxelink.ErrNoImage):
		return http.StatusNotFound
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrAmbiguous):
		// A host name of several nodes: the name is fine, the inventory
		// holds more than one node it could mean.
		return http.StatusConflict
	case errors.Is(err, store.ErrInvalidReport),
		errors.Is(err, pxelink.ErrInvalid), errors.Is(err, inventory.ErrInvalid), errors.As(err, &ie):
		return http.StatusBadRequest
	case errors.Is(err, context.Canceled):
		return StatusClientGone
	}
	return http.StatusInternalServerError
}

// Body is the answer's body: an inventory rejection also lists its
// problems one by one.
func Body(err error) apiv1.ErrorBody {
	var ie *inventory.Error
	if !errors.As(err, &ie) {
		return apiv1.ErrorBody{Error: err.Error()}
	}
	problems := make([]string, len(ie.Problems))
	for i, p := range ie.Problems {
		problems[i] = p.Error()
	}
	return apiv1.ErrorBody{Error: ie.Summary(), Problems: problems}
}

// Write answers err and ends the request; it returns the status, for
// the caller that logs server-side failures.
func Write(c *gin.Context, err error) int {
	status := Status(err)
	body := Body(err)
	SetDetail(c, body.Error)
	c.AbortWithStatusJSON(status, body)
	return status
}

// NodeRef reads the node that a /nodes/:hrn route names, as OMF's calls
// take one: its HRN, or a host name unique in the inventory, or in the
// testbed that ?domain= names. Both are refused (400) before any lookup if
// they can never be a name; the caller looks the node up with the store's
// LookupNode, the lookup of the OMF calls.
func NodeRef(c *gin.Context) (domain, name string, err error) {
	name, domain = c.Param("hrn"), c.Query("domain")
	if !inventory.ValidName(name) {
		return "", "", BadRequest("node: %.64q is not a valid name", name)
	}
	if _, set := c.GetQuery("domain"); set && !inventory.ValidName(domain) {
		return "", "", BadRequest("domain: %.64q is not a valid name", domain)
	}
	return domain, name, nil
}

// LookupNode is the existing node that a /nodes/:hrn route names (as
// NodeRef reads it), found by lookup, the store's LookupNode.
func LookupNode(c *gin.Context, lookup func(ctx context.Context, domain, name string) (inventory.Node, error)) (inventory.Node, error) {
	domain, name, err := NodeRef(c)
	if err != nil {
		return inventory.Node{}, err
	}
	return lookup(c.Request.Context(), domain, name)
}

// RawWriter is net/http's own writer under gin's: it implements
// io.ReaderFrom, so that copying an *os.File to it uses sendfile(2),
// which gin's writer does not.
func RawWriter(w gin.ResponseWriter) http.ResponseWriter {
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		return u.Unwrap()
	}
	return w
}
