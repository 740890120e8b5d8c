package apptest

import (
	"io"
	"net"
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

// Do sends req, for a request Call cannot make (a streamed body), and
// returns the whole answer; a request that cannot be sent or read fails t.
func Do(t testing.TB, req *http.Request) Response {
	t.Helper()
	return DoWith(t, http.DefaultClient, req)
}

// DoWith is Do through client.
func DoWith(t testing.TB, client *http.Client, req *http.Request) Response {
	t.Helper()
	resp, err := client.Do(req)
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

// ClientFrom is an HTTP client whose connections come from ip: on
// loopback, one of 127/8's many addresses stands for another source
// than 127.0.0.1 (a per-source limit, an address-based admission).
func ClientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}
