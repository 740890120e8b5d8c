package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// recorder is an appliance that records every request and answers none
// usefully: a command that reaches it has contacted the server.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.String())
	r.mu.Unlock()
	http.Error(w, `{"error":"the recorder answers nothing"}`, http.StatusTeapot)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// TestHelp: --help and -h, after any command and anywhere before a --,
// print the command's usage and succeed without a request to the
// appliance; so do nbctl --help, -h and help [COMMAND]. After rc exec's
// --, --help is the program's.
func TestHelp(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	type tcase struct {
		args []string
		want []string // pieces of stdout
	}
	var tests []tcase
	for _, s := range (&cli{}).commands() {
		words := strings.Fields(s.name)
		want := []string{s.synopsis()}
		if s.what != "" {
			want = append(want, strings.Split(s.what, "\n")[0])
		}
		for _, h := range []string{"--help", "-h", "-help"} {
			tests = append(tests, tcase{append(words[:len(words):len(words)], h), want})
		}
		// After an operand that would be a node's name, and after flags.
		tests = append(tests, tcase{append(words[:len(words):len(words)], "node1-1", "--help"), want},
			tcase{append(words[:len(words):len(words)], "--domain", "sb8", "-h"), want})
	}
	usageWant := []string{"usage: nbctl [--server URL] [--ca FILE | --fingerprint SHA256] [--token-file FILE] COMMAND [ARGS]", "token create", "nodes events [--domain D] [--follow] NODE", "rc exec", "image build", "--server defaults"}
	tests = append(tests,
		tcase{[]string{"--help"}, usageWant},
		tcase{[]string{"-h"}, usageWant},
		tcase{[]string{"help"}, usageWant},
		tcase{[]string{"help", "rc", "exec"}, []string{"usage: nbctl rc exec [--domain D] [--timeout DUR] [--shell] NODE -- PROGRAM [ARG...]"}},
		tcase{[]string{"help", "boot"}, []string{"boot set [--domain D]", "boot clear", "boot list"}},
		tcase{[]string{"boot", "--help"}, []string{"boot set [--domain D]", "boot clear", "boot list"}},
		tcase{[]string{"nodes", "--help"}, []string{"nodes [--domain D] [--json]", "nodes show", "nodes events", "nodes discovered"}},
		tcase{[]string{"disk", "-h"}, []string{"disk load", "disk put [--chunk-size 1048576] [--as-is] NAME FILE"}},
		tcase{[]string{"rc", "exec", "node1-1", "ls", "--help"}, []string{"usage: nbctl rc exec"}},
	)
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errs bytes.Buffer
			err := run(t.Context(), append([]string{"--server", srv.URL}, tc.args...), &out, &errs)
			if err != nil {
				t.Errorf("error %v\n%s", err, errs.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout does not say %q:\n%s", w, out.String())
				}
			}
			if !strings.Contains(out.String(), "NODE, A and B name a node as OMF's calls do") {
				t.Errorf("stdout does not say how nodes are named:\n%s", out.String())
			}
			if reqs := rec.take(); len(reqs) > 0 {
				t.Errorf("the appliance was asked: %q", reqs)
			}
		})
	}

	// What follows rc exec's -- is the program's: that call goes to the
	// appliance (the recorder proves it is one that would notice).
	err := run(t.Context(), []string{"--server", srv.URL, "rc", "exec", "node1-1", "--", "ls", "--help"}, &bytes.Buffer{}, &bytes.Buffer{})
	reqs := rec.take()
	if err == nil || len(reqs) != 1 || !strings.HasPrefix(reqs[0], "POST /api/v1/nodes/node1-1/commands") {
		t.Errorf("rc exec NODE -- ls --help: %v, requests %q; want the command sent", err, reqs)
	}
}

// TestUsageErrors: a call that does not match its command's synopsis
// fails saying what was wrong, then the synopsis from the command table,
// without a request to the appliance.
func TestUsageErrors(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		want []string // pieces of the error
	}{
		{[]string{"nodes", "show"}, []string{"usage: nbctl nodes show [--domain D] NODE (nbctl nodes show --help)"}},
		{[]string{"nodes", "show", "a", "b"}, []string{`unexpected argument "b"`, "usage: nbctl nodes show"}},
		{[]string{"nodes", "events", "--follow"}, []string{"usage: nbctl nodes events"}},
		{[]string{"boot", "set", "--image", "x"}, []string{"usage: nbctl boot set"}},
		{[]string{"boot", "list", "a"}, []string{`unexpected argument "a"`, "usage: nbctl boot list"}},
		{[]string{"rc", "status", "a", "b"}, []string{`unexpected argument "b"`, "usage: nbctl rc status"}},
		{[]string{"rc", "status", "--domain", "sb8"}, []string{"--domain names the testbed of NODE", "usage: nbctl rc status"}},
		{[]string{"rc", "exec", "a", "--"}, []string{"usage: nbctl rc exec"}},
		{[]string{"disk", "load", "a"}, []string{"usage: nbctl disk load"}},
		{[]string{"disk", "save", "a", "b", "c"}, []string{`unexpected argument "c"`, "usage: nbctl disk save"}},
		{[]string{"load", "--nodes", "a", "--image", "x", "extra"}, []string{`unexpected argument "extra"`, "usage: nbctl load"}},
		{[]string{"image", "build", "--name", "x"}, []string{"--name, --kernel-dir and --out are required",
			"usage: nbctl image build --name N --kernel-dir DIR --out TFTP_ROOT"}},
		{[]string{"image", "build", "--bogus"}, []string{"flag provided but not defined: -bogus", "usage: nbctl image build"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := run(t.Context(), append([]string{"--server", srv.URL}, tc.args...), &bytes.Buffer{}, &bytes.Buffer{})
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want one saying %q", err, w)
				}
			}
			if reqs := rec.take(); len(reqs) > 0 {
				t.Errorf("the appliance was asked: %q", reqs)
			}
		})
	}
}
