package apiv1_test

import (
	"bytes"
	"encoding"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/rc/proto"
)

var update = flag.Bool("update", false, "write openapi.json from the wire types and the operation table")

// The document is generated from two sources: the wire types (their JSON
// shape, by reflection) and the operation table below, which says per
// route what it takes and answers. A new route goes into the table (the
// AM's TestOpenAPIRoutes fails until it does); a changed wire type changes
// the document by itself (TestOpenAPI fails until it is written again).

// param is one path or query parameter.
type param struct {
	name, in, desc string
	schema         map[string]any
}

var (
	str   = map[string]any{"type": "string"}
	pNode = param{"hrn", "path", "The node: its HRN, or a host name unique in the inventory or in the testbed ?domain= names.", str}
	pHRN  = param{"hrn", "path", "The node's HRN (the inventory's key).", str}
	pDom  = param{"domain", "query", "The testbed in which a host name in the path is looked up.", str}
	pID   = param{"id", "path", "The command's id.", map[string]any{"type": "integer", "format": "int64", "minimum": 1}}
	pImg  = param{"name", "path", "The image's name.", str}
)

// body is a request or response body: a Go value of the wire type (its
// schema by reflection), or a media type without a schema (files, YAML).
type body struct {
	media string // "": application/json
	v     any    // nil: no schema
	// input: a request body whose fields are all optional (the server
	// fills in what is left out: the path's name, defaults), described
	// by the type's schema without its required list, named <Type>Input.
	input bool
}

func jsonOf(v any) *body { return &body{v: v} }

func inputOf(v any) *body { return &body{v: v, input: true} }

// resp is one success answer.
type resp struct {
	status int
	desc   string
	body   *body // nil: no body
}

type op struct {
	method, path, summary string
	role                  string // as am/guard's table declares it
	params                []param
	req                   *body
	ok                    []resp
	errs                  []int // besides the ones every role may get
}

// The media types of the files the API moves.
const (
	yamlType = "application/yaml"
	octets   = "application/octet-stream"
)

// ops is every /api/v1 route, in the order of the AM's and the broker's
// route tables.
var ops = []op{
	{method: "GET", path: "/nodes", summary: "List the nodes, of every testbed or of ?domain=", role: "viewer",
		params: []param{{"domain", "query", "Only this testbed's nodes.", str}}, ok: []resp{{200, "The nodes.", jsonOf([]apiv1.Node{})}}, errs: []int{400}},
	{method: "GET", path: "/nodes/:hrn", summary: "Read one node", role: "viewer", params: []param{pNode, pDom},
		ok: []resp{{200, "The node.", jsonOf(apiv1.Node{})}}, errs: []int{400, 404, 409}},
	{method: "PUT", path: "/nodes/:hrn", summary: "Create or replace a node (refused while inventory.file is set)", role: "admin", params: []param{pHRN},
		req: inputOf(apiv1.Node{}), ok: []resp{{200, "Replaced.", jsonOf(apiv1.Node{})}, {201, "Created.", jsonOf(apiv1.Node{})}}, errs: []int{400, 409, 413}},
	{method: "DELETE", path: "/nodes/:hrn", summary: "Delete a node and its boot link", role: "admin", params: []param{pHRN},
		ok: []resp{{204, "Deleted.", nil}}, errs: []int{400, 404, 409}},
	{method: "GET", path: "/nodes/:hrn/events", summary: "The node's boot timeline, oldest first", role: "viewer",
		params: []param{pNode, pDom, {"after", "query", "Only the events after the one with this id (a follower's cursor).", map[string]any{"type": "integer", "format": "int64", "minimum": 0}}},
		ok:     []resp{{200, "The events.", jsonOf([]apiv1.Event{})}}, errs: []int{400, 404, 409}},
	{method: "PUT", path: "/nodes/:hrn/boot", summary: "Link the node to a PXE image for its next boots", role: "operator", params: []param{pNode, pDom},
		req: jsonOf(apiv1.BootRequest{}), ok: []resp{{200, "The link.", jsonOf(apiv1.BootLink{})}}, errs: []int{400, 404, 409, 413}},
	{method: "POST", path: "/nodes/:hrn/power", summary: "Power the node on, off, reboot or reset it, or read its state", role: "operator", params: []param{pNode, pDom},
		req: jsonOf(apiv1.PowerRequest{}), ok: []resp{{200, "Done, and the state after.", jsonOf(apiv1.PowerReply{})}}, errs: []int{400, 404, 409, 413, 502, 503}},
	{method: "DELETE", path: "/nodes/:hrn/boot", summary: "Clear the node's boot link: it boots its local disk", role: "operator", params: []param{pNode, pDom},
		ok: []resp{{204, "Cleared.", nil}}, errs: []int{400, 404, 409}},
	{method: "GET", path: "/boot", summary: "List the boot links", role: "viewer", ok: []resp{{200, "The links.", jsonOf([]apiv1.BootLink{})}}},
	{method: "GET", path: "/discovered", summary: "MACs that asked for DHCP without being in the inventory", role: "viewer",
		ok: []resp{{200, "The MACs.", jsonOf([]apiv1.Discovered{})}}},
	{method: "GET", path: "/testbeds", summary: "List the testbeds", role: "viewer", ok: []resp{{200, "The testbeds.", jsonOf([]apiv1.Testbed{})}}},
	{method: "GET", path: "/images", summary: "List the PXE images", role: "viewer", ok: []resp{{200, "The images.", jsonOf([]apiv1.Image{})}}},
	{method: "PUT", path: "/images/:name", summary: "Create or replace a PXE image's description", role: "admin", params: []param{pImg},
		req: inputOf(apiv1.Image{}), ok: []resp{{200, "The image.", jsonOf(apiv1.Image{})}}, errs: []int{400, 413}},
	{method: "GET", path: "/inventory", summary: "Export the inventory as YAML", role: "viewer", ok: []resp{{200, "The inventory file.", &body{media: yamlType}}}},
	{method: "POST", path: "/inventory", summary: "Import an inventory file (YAML): all of it, or nothing with every problem listed", role: "admin",
		req: &body{media: yamlType}, ok: []resp{{200, "Imported.", jsonOf(apiv1.ImportReply{})}}, errs: []int{400, 409, 413}},
	{method: "GET", path: "/inventory/status", summary: "Where the inventory comes from, and the last reading of inventory.file", role: "viewer",
		ok: []resp{{200, "The status.", jsonOf(apiv1.InventoryStatus{})}}},
	{method: "POST", path: "/tokens", summary: "Create an API token (its secret is shown once)", role: "admin",
		req: jsonOf(apiv1.TokenRequest{}), ok: []resp{{201, "The token, with its secret.", jsonOf(apiv1.TokenCreated{})}}, errs: []int{400, 409, 413}},
	{method: "GET", path: "/tokens", summary: "List the API tokens (never their secrets)", role: "admin", ok: []resp{{200, "The tokens.", jsonOf([]apiv1.Token{})}}},
	{method: "DELETE", path: "/tokens/:name", summary: "Revoke an API token", role: "admin", params: []param{{"name", "path", "The token's name.", str}},
		ok: []resp{{204, "Revoked.", nil}}, errs: []int{400, 404, 409}},
	{method: "GET", path: "/audit", summary: "The audit log of mutations, newest first", role: "viewer",
		params: []param{
			{"since", "query", "An RFC 3339 time, or a positive Go duration back from now (24h).", str},
			{"node", "query", "Only the entries about this node.", str},
			{"limit", "query", "At most this many entries.", map[string]any{"type": "integer", "minimum": 1}},
		}, ok: []resp{{200, "The entries.", jsonOf([]apiv1.AuditEntry{})}}, errs: []int{400}},
	{method: "GET", path: "/openapi.json", summary: "This document", role: "viewer", ok: []resp{{200, "The OpenAPI document.", &body{media: "application/json"}}}},
	{method: "GET", path: "/whoami", summary: "The caller's token: its name and role", role: "viewer", ok: []resp{{200, "The token.", jsonOf(apiv1.WhoAmI{})}}},
	{method: "GET", path: "/events/stream", summary: "Every node's boot events as they happen (Server-Sent Events): first the newest of each node's timeline, then the live ones; a reader too slow to keep up gets a reload event and the stream ends", role: "viewer",
		params: []param{{"recent", "query", "How many of each node's newest events to send first (default 20, 0 for none).", map[string]any{"type": "integer", "minimum": 0, "maximum": 500}}},
		ok:     []resp{{200, "The event stream.", &body{media: "text/event-stream"}}}, errs: []int{400, 503}},

	// The RC broker's routes: the RC's own calls first.
	{method: "POST", path: "/rc/enroll", summary: "An RC enrolls, from its node's control IP; the answer holds its secret", role: "node",
		req: jsonOf(proto.EnrollRequest{}), ok: []resp{{200, "Enrolled.", jsonOf(proto.EnrollResponse{})}}, errs: []int{400, 403, 404, 409, 413}},
	{method: "GET", path: "/rc/poll", summary: "An RC's long poll for its next command (bearer: its enrollment secret)", role: "node",
		params: []param{
			{"wait", "query", "How long to wait for a command, a Go duration (at most the appliance's poll wait).", str},
			{"running", "query", "The ids of the commands the RC is running, comma-separated.", str},
		}, ok: []resp{{200, "A command, signed.", jsonOf(proto.Envelope{})}, {204, "No command in time.", nil}}, errs: []int{400}},
	{method: "POST", path: "/rc/commands/:id/report", summary: "An RC reports on one of its commands", role: "node", params: []param{pID},
		req: jsonOf(proto.Report{}), ok: []resp{{204, "Recorded.", nil}}, errs: []int{400, 404, 409, 413}},
	{method: "GET", path: "/rc", summary: "The RC status of every enrolled node", role: "viewer", ok: []resp{{200, "The statuses.", jsonOf([]proto.RCStatus{})}}},
	{method: "GET", path: "/nodes/:hrn/rc", summary: "The node's RC status", role: "viewer", params: []param{pNode, pDom},
		ok: []resp{{200, "The status.", jsonOf(proto.RCStatus{})}}, errs: []int{400, 404, 409}},
	{method: "POST", path: "/nodes/:hrn/commands", summary: "Queue a command for the node's RC", role: "operator", params: []param{pNode, pDom},
		req: jsonOf(proto.CommandRequest{}), ok: []resp{{202, "Queued.", jsonOf(proto.CommandStatus{})}}, errs: []int{400, 404, 409, 413}},
	{method: "GET", path: "/nodes/:hrn/commands", summary: "The node's commands, newest first", role: "viewer",
		params: []param{pNode, pDom, {"limit", "query", "At most this many.", map[string]any{"type": "integer", "minimum": 1}}},
		ok:     []resp{{200, "The commands.", jsonOf([]proto.CommandStatus{})}}, errs: []int{400, 404, 409}},
	{method: "GET", path: "/commands", summary: "Every node's queued and running commands, oldest first (the loads in progress)", role: "viewer",
		ok: []resp{{200, "The commands.", jsonOf([]proto.CommandStatus{})}}},
	{method: "GET", path: "/commands/:id", summary: "One command", role: "viewer", params: []param{pID},
		ok: []resp{{200, "The command.", jsonOf(proto.CommandStatus{})}}, errs: []int{400, 404}},
	{method: "GET", path: "/disk-images", summary: "List the disk images", role: "viewer", ok: []resp{{200, "The images.", jsonOf([]proto.DiskImage{})}}},
	{method: "GET", path: "/disk-images/:name", summary: "Download a disk image (an RC loading it, or a viewer token); Range and conditional requests are answered", role: "node",
		params: []param{pImg}, ok: []resp{{200, "The image as stored.", &body{media: "*/*"}}, {206, "The range asked for.", &body{media: "*/*"}}}, errs: []int{400, 404, 416}},
	{method: "HEAD", path: "/disk-images/:name", summary: "A disk image's size and checksum", role: "node", params: []param{pImg},
		ok: []resp{{200, "The headers of the GET.", nil}}, errs: []int{400, 404}},
	{method: "GET", path: "/disk-images/:name/manifest", summary: "A chunked disk image's manifest, as stored", role: "node", params: []param{pImg},
		ok: []resp{{200, "The manifest.", &body{media: "application/json"}}}, errs: []int{400, 404, 409}},
	{method: "PUT", path: "/disk-images/:name", summary: "Upload a disk image (an RC saving it, or an operator token); X-Content-Sha256 as a header or trailer", role: "node",
		params: []param{pImg}, req: &body{media: octets}, ok: []resp{{201, "Stored.", jsonOf(proto.DiskImage{})}}, errs: []int{400, 409, 413, 507}},
	{method: "DELETE", path: "/disk-images/:name", summary: "Delete a disk image", role: "operator", params: []param{pImg},
		ok: []resp{{204, "Deleted.", nil}}, errs: []int{400, 404, 409}},
}

// errorText says what each error status means for the API's caller.
var errorText = map[int]string{
	400: "The request is wrong: the message says which part.",
	401: "No token, or a token that is not valid (unknown, expired, revoked); for an RC, an unknown enrollment: enroll again.",
	403: "The token's role may not make this call, or the caller's address may not.",
	404: "What the request names does not exist.",
	409: "The request conflicts with the state: a host name of several nodes, a node the inventory file manages, a command that is over.",
	413: "The body is larger than the limit.",
	416: "The range is outside the file.",
	429: "Too many requests, or failed authentications, from this source: Retry-After says when to come back.",
	500: "The appliance failed.",
	502: "The node's power controller failed.",
	503: "The node has no power controller, or it is busy.",
	507: "The appliance has no room for the image.",
}

// generate builds the document.
func generate() map[string]any {
	schemas := map[string]any{}
	types := map[string]reflect.Type{}
	schemaFor := func(v any) map[string]any { return schemaOf(reflect.TypeOf(v), schemas, types) }
	schemaFor(apiv1.ErrorBody{})
	errRef := func(status int) map[string]any {
		return map[string]any{"$ref": "#/components/responses/" + strconv.Itoa(status)}
	}
	responses := map[string]any{}
	for status, text := range errorText {
		responses[strconv.Itoa(status)] = map[string]any{"description": text,
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/ErrorBody"}}}}
	}
	content := func(b *body) map[string]any {
		media := b.media
		if media == "" {
			media = "application/json"
		}
		mt := map[string]any{}
		if b.v != nil {
			mt["schema"] = schemaFor(b.v)
		}
		if b.input {
			name := reflect.TypeOf(b.v).Name()
			in := map[string]any{}
			for k, v := range schemas[name].(map[string]any) {
				if k != "required" {
					in[k] = v
				}
			}
			schemas[name+"Input"] = in
			mt["schema"] = map[string]any{"$ref": "#/components/schemas/" + name + "Input"}
		}
		return map[string]any{media: mt}
	}
	paths := map[string]any{}
	for _, o := range ops {
		path := "/api/v1" + ginToOpenAPI(o.path)
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		operation := map[string]any{
			"summary":     o.summary,
			"operationId": operationID(o.method, o.path),
			"x-role":      o.role,
		}
		if o.role == "node" && o.path == "/rc/enroll" {
			operation["security"] = []any{} // admitted by its source address
		}
		var params []any
		for _, p := range o.params {
			pm := map[string]any{"name": p.name, "in": p.in, "description": p.desc, "schema": p.schema}
			if p.in == "path" {
				pm["required"] = true
			}
			params = append(params, pm)
		}
		if params != nil {
			operation["parameters"] = params
		}
		if o.req != nil {
			operation["requestBody"] = map[string]any{"required": true, "content": content(o.req)}
		}
		rs := map[string]any{}
		for _, r := range o.ok {
			rm := map[string]any{"description": r.desc}
			if r.body != nil {
				rm["content"] = content(r.body)
			}
			rs[strconv.Itoa(r.status)] = rm
		}
		// Every call may meet the guard (401, 403), the per-source limits
		// (429) and a failure of the appliance (500).
		for _, status := range append([]int{401, 403, 429, 500}, o.errs...) {
			rs[strconv.Itoa(status)] = errRef(status)
		}
		operation["responses"] = rs
		item[strings.ToLower(o.method)] = operation
	}
	return map[string]any{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
		"info": map[string]any{
			"title":   "netbootd API",
			"version": "v1",
			"description": "The operator API of the netboot appliance (nbctl, the web view, an Experiment Controller) and the Resource Controllers' calls. " +
				"Every call but an RC's enrollment takes a bearer token: an operator's API token (viewer < operator < admin; x-role says what each call needs), " +
				"or an RC's enrollment secret for x-role node. Errors answer the ErrorBody. Generated from the wire types (am/apiv1, rc/proto).",
		},
		"servers":    []any{map[string]any{"url": "/"}},
		"security":   []any{map[string]any{"bearer": []any{}}},
		"paths":      paths,
		"components": map[string]any{"schemas": schemas, "responses": responses, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
}

var ginParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// ginToOpenAPI turns gin's /nodes/:hrn into OpenAPI's /nodes/{hrn}.
func ginToOpenAPI(path string) string { return ginParam.ReplaceAllString(path, "{$1}") }

// operationID is e.g. putNodesHrnBoot.
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == ':' || r == '-' || r == '.' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

var (
	timeType = reflect.TypeFor[time.Time]()
	textType = reflect.TypeFor[encoding.TextMarshaler]()
)

// schemaOf is the JSON Schema of t as encoding/json writes it; a struct
// goes to schemas under its name (types holds which type took a name, so
// that two types of one name fail instead of mixing).
func schemaOf(t reflect.Type, schemas map[string]any, types map[string]reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Implements(textType): // netip.Addr, MAC
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		// Every pointer of the wire types is omitempty: absent, never null.
		return schemaOf(t.Elem(), schemas, types)
	case reflect.Struct:
		name := t.Name()
		if prev, ok := types[name]; ok {
			if prev != t {
				panic(fmt.Sprintf("openapi: two wire types named %s: %s and %s", name, prev, t))
			}
		} else {
			types[name] = t
			schemas[name] = structSchema(t, schemas, types)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas, types)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas, types)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float64, reflect.Float32:
		return map[string]any{"type": "number"}
	}
	panic(fmt.Sprintf("openapi: no schema for %s", t))
}

// structSchema is an object with t's JSON fields (embedded structs'
// fields flattened, as encoding/json does); a field without omitempty or
// omitzero is required, and no other property is allowed: a response that
// grows a field the document lacks fails the tests.
func structSchema(t reflect.Type, schemas map[string]any, types map[string]reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type, schemas, types)
			if !strings.Contains(","+opts+",", ",omitempty,") && !strings.Contains(","+opts+",", ",omitzero,") {
				required = append(required, name)
			}
		}
	}
	walk(t)
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}

// TestOpenAPI: the committed document is what the wire types and the
// table give, and kin-openapi loads it as a valid OpenAPI 3.1 document.
func TestOpenAPI(t *testing.T) {
	want, err := json.MarshalIndent(generate(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile("openapi.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := apiv1.OpenAPI(); !bytes.Equal(got, want) {
		t.Fatalf("openapi.json is stale: run go test ./am/apiv1 -run TestOpenAPI -update (and rebuild)")
	}
	doc, err := openapi3.NewLoader().LoadFromData(want)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("the document is not valid: %v", err)
	}
}

// TestOpenAPISchemas: the schemas accept what the server sends and refuse
// what it never would.
func TestOpenAPISchemas(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(apiv1.OpenAPI())
	if err != nil || doc.Components == nil {
		t.Fatalf("openapi.json: %v, or no components", err)
	}
	mac, _ := apiv1.ParseMAC("00:03:1d:0c:01:02")
	node, _ := json.Marshal(apiv1.Node{HRN: "node1-2.sb8", Domain: "sb8", ControlMAC: mac})
	tests := []struct {
		schema, body string
		ok           bool
	}{
		{"Node", string(node), true},
		{"Node", `{"hrn":"n"}`, false}, // required fields missing
		{"ErrorBody", `{"error":"no","problems":["a","b"]}`, true},
		{"ErrorBody", `{"error":"no","extra":1}`, false}, // a field the document lacks
		{"Event", `{"id":1,"hrn":"n","at":"2026-01-02T03:04:05Z","source":"dhcp","what":"DHCPACK"}`, true},
		{"Event", `{"id":"1","hrn":"n","at":"2026-01-02T03:04:05Z","source":"dhcp","what":"DHCPACK"}`, false},
	}
	for _, tt := range tests {
		s := doc.Components.Schemas[tt.schema]
		if s == nil {
			t.Fatalf("no schema %s", tt.schema)
		}
		var v any
		if err := json.Unmarshal([]byte(tt.body), &v); err != nil {
			t.Fatal(err)
		}
		err := s.Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
		if (err == nil) != tt.ok {
			t.Errorf("%s %s: %v, want ok=%v", tt.schema, tt.body, err, tt.ok)
		}
	}
	if got := len(doc.Paths.Map()); got < 25 {
		t.Errorf("%d paths", got)
	}
}
