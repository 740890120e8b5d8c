package apiv1

import _ "embed" // the OpenAPI document

// openAPI is the OpenAPI 3.1 document of /api/v1, served at OpenAPIPath.
// It is generated, never edited by hand: its schemas come from this
// package's and rc/proto's wire types by reflection, its operations from
// the table in openapi_test.go, and the test fails while the committed
// file differs from what they give (go test ./am/apiv1 -run TestOpenAPI
// -update writes it).
//
//go:embed openapi.json
var openAPI []byte

// OpenAPIPath is where the AM serves the document.
const OpenAPIPath = "/api/v1/openapi.json"

// OpenAPI returns the document (a copy: callers may keep or change it).
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }
