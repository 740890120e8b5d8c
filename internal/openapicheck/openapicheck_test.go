package openapicheck

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestResponse: answers as documented pass; a drift in status, content
// type or body fails; paths the document has not are left alone.
func TestResponse(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	json := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	event := `{"id":1,"hrn":"n1.sb8","at":"2026-01-02T03:04:05Z","source":"dhcp","what":"DHCPACK"}`
	tests := []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		ok                 bool
	}{
		{"a documented list", "GET", "/api/v1/nodes/n1.sb8/events?after=3", 200, json, "[" + event + "]", true},
		{"an empty list", "GET", "/api/v1/nodes/n1.sb8/events", 200, json, "[]", true},
		{"null for a list", "GET", "/api/v1/nodes/n1.sb8/events", 200, json, "null", false},
		{"a field the document lacks", "GET", "/api/v1/nodes/n1.sb8/events", 200, json, `[{"id":1,"hrn":"n","at":"2026-01-02T03:04:05Z","source":"dhcp","what":"x","new":1}]`, false},
		{"a documented error", "GET", "/api/v1/nodes/n1.sb8/events", 404, json, `{"error":"node n1.sb8: not found"}`, true},
		{"an error without its message", "GET", "/api/v1/nodes/n1.sb8/events", 404, json, `{"message":"no"}`, false},
		{"an undocumented status", "GET", "/api/v1/nodes/n1.sb8/events", 418, json, `{"error":"teapot"}`, false},
		{"an undocumented content type", "GET", "/api/v1/nodes", 200, http.Header{"Content-Type": {"text/plain"}}, "[]", false},
		{"YAML where the document says so", "GET", "/api/v1/inventory", 200, http.Header{"Content-Type": {"application/yaml"}}, "testbeds: []\n", true},
		{"no content", "DELETE", "/api/v1/nodes/n1.sb8/boot", 204, http.Header{}, "", true},
		{"a path not in the document", "GET", "/api/v1/no-such-route", 404, http.Header{"Content-Type": {"text/plain"}}, "404 page not found", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://127.0.0.1:5054"+tt.path, nil)
			err := c.Response(req, tt.status, tt.header, []byte(tt.body))
			if (err == nil) != tt.ok {
				t.Errorf("Response = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tt.path[:strings.IndexAny(tt.path+"?", "?")]) {
				t.Errorf("the error does not name the path: %v", err)
			}
		})
	}
}
