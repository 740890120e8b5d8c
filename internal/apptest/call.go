package apptest

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/openapicheck"
)

// Response is what a running netbootd answered to Call.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Call sends one request to url with body ("" for none) and header (nil
// for none), and returns the whole answer; a request that cannot be sent
// or read fails t.
func Call(t testing.TB, method, url, body string, header http.Header) Response {
	t.Helper()
	return CallWith(t, http.DefaultClient, method, url, body, header)
}

// CallWith is Call through client, e.g. one of ClientFrom.
func CallWith(t testing.TB, client *http.Client, method, url, body string, header http.Header) Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return DoWith(t, client, req)
}

// Call is apptest.Call to this appliance with its admin token, unless
// header has an Authorization of its own: path is the URL's path and
// query ("/api/v1/nodes").
func (a *Appliance) Call(t testing.TB, method, path, body string, header http.Header) Response {
	t.Helper()
	return Call(t, method, a.URL+path, body, a.Authorized(header))
}

// Authorized is header (nil for none) with the admin token, unless it has
// an Authorization of its own.
func (a *Appliance) Authorized(header http.Header) http.Header {
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Authorization") == "" {
		h.Set("Authorization", "Bearer "+a.Token)
	}
	return h
}

// Do sends req, for a request Call cannot make (a streamed body), and
// returns the whole answer; a request that cannot be sent or read fails t.
func Do(t testing.TB, req *http.Request) Response {
	t.Helper()
	return DoWith(t, http.DefaultClient, req)
}

// DoWith is Do through client c (ClientFrom).
func DoWith(t testing.TB, c *http.Client, req *http.Request) Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	if strings.HasPrefix(req.URL.Path, "/api/v1/") {
		checkOpenAPI(t, req, resp, b)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

var (
	openAPIOnce sync.Once
	openAPI     *openapicheck.Checker
	openAPIErr  error
)

// checkOpenAPI fails t (and goes on) when an /api/v1 answer is not as the
// OpenAPI document says: every JSON-API test checks the document so.
func checkOpenAPI(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	openAPIOnce.Do(func() { openAPI, openAPIErr = openapicheck.New() })
	if openAPIErr != nil {
		t.Fatal(openAPIErr)
	}
	if err := openAPI.Response(req, resp.StatusCode, resp.Header, body); err != nil {
		t.Errorf("%v\nbody: %.500s", err, body)
	}
}

// DoFrom is Do from source address from (ClientFrom); "" is any.
func DoFrom(t testing.TB, from string, req *http.Request) Response {
	t.Helper()
	if from == "" {
		return Do(t, req)
	}
	c := ClientFrom(from)
	defer c.CloseIdleConnections()
	return DoWith(t, c, req)
}

// ClientFrom is an HTTP client whose connections leave from address ip. The
// appliance admits an RC only from its node's own address (its inventory
// control IP); Linux routes all of 127.0.0.0/8 to lo, so a simulated node
// whose control IP is 127.0.0.N speaks from 127.0.0.N, as a real one
// speaks from its own.
func ClientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	// The buffers are orbit-rc's own (rc.newHTTPClient): image transfers
	// through this client run at the real RC's pace.
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second,
		ReadBufferSize: 1 << 20, WriteBufferSize: 1 << 20}}
}
