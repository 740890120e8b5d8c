package apptest

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return Do(t, req)
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}
