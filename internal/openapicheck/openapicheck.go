// Package openapicheck checks the AM's answers against the OpenAPI
// document of /api/v1 (apiv1.OpenAPI), with kin-openapi: a test kit, so
// that a response that drifts from the document fails the test that got
// it (internal/apptest checks every /api/v1 answer it reads).
package openapicheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// Checker holds the loaded document and its router; it is safe for
// concurrent use.
type Checker struct {
	router routers.Router
}

// New loads the document, which must be valid OpenAPI 3.1.
func New() (*Checker, error) {
	doc, err := openapi3.NewLoader().LoadFromData(apiv1.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("openapicheck: load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapicheck: the document is not valid: %w", err)
	}
	// The routes match by path alone, whatever host a test serves on.
	doc.Servers = nil
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapicheck: router: %w", err)
	}
	return &Checker{router: r}, nil
}

// Response checks the answer (status, header, body) to req against the
// operation the document has for req's method and path: its status must
// be documented, its content type one the status lists, and a JSON body
// must match the schema. A request the document has no operation for is
// not checked here (the AM's TestOpenAPIRoutes keeps the document
// complete; a path gin does not route is answered by gin, not the API).
func (c *Checker) Response(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.router.FindRoute(req)
	// The router answers new RouteErrors, not its sentinel values.
	var re *routers.RouteError
	if errors.As(err, &re) && (re.Reason == routers.ErrPathNotFound.Error() || re.Reason == routers.ErrMethodNotAllowed.Error()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("openapicheck: %s %s: %w", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("%s %s answered %d, not as the OpenAPI document says: %w", req.Method, req.URL.Path, status, err)
	}
	return nil
}
