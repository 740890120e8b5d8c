package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
)

// syncWatch is an output that a running nbctl writes while the test reads
// it, and that says when it changed.
type syncWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncWatch() *syncWatch { return &syncWatch{changed: make(chan struct{}, 1)} }

func (w *syncWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return w.buf.Write(p)
}

func (w *syncWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the output has a line holding every part; 30 s
// without means nbctl hung.
func (w *syncWatch) waitFor(t *testing.T, parts ...string) {
	t.Helper()
	hung := time.NewTimer(30 * time.Second)
	defer hung.Stop()
	for !apptest.HasLine(w.String(), parts...) {
		select {
		case <-w.changed:
		case <-hung.C:
			t.Fatalf("no line with %q within 30s:\n%s", parts, w.String())
		}
	}
}

// TestEventsFollow: nodes events --follow prints the timeline, then each
// event netbootd records after it started, once, across a restart of
// netbootd, and ends without an error when its context ends (Ctrl-C).
func TestEventsFollow(t *testing.T) {
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Inventory: rcInventory})
	a.Start()
	// An RC enrolling is an event on its node's timeline.
	rcClient := apptest.ClientFrom(rcIP[node11.HRN])
	defer rcClient.CloseIdleConnections()
	enroll := func(image string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, a.URL+"/api/v1/rc/enroll", strings.NewReader(`{"macs":["`+node11.ControlMAC+`"],"image":"`+image+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		r := apptest.DoWith(t, rcClient, req)
		if r.Status != http.StatusOK {
			t.Fatalf("enroll: %d %s", r.Status, r.Body)
		}
	}
	enroll("before-1")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, errs := newSyncWatch(), newSyncWatch()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--server", a.URL, "--token-file", a.TokenFile, "nodes", "events", "--follow", "--domain", "sb8", "n11"}, out, errs)
	}()
	// Once the timeline so far is printed, nbctl follows it.
	out.waitFor(t, "rc", "enrolled", "before-1")
	enroll("after-2")
	out.waitFor(t, "rc", "enrolled", "after-2")
	// A restart of netbootd does not end it: it says so, and goes on.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	errs.waitFor(t, "asking again")
	a.Start()
	enroll("after-3")
	out.waitFor(t, "rc", "enrolled", "after-3")
	errs.waitFor(t, "the appliance answers again")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow ended with %v, want no error\n%s", err, errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("follow did not end within 30s of its context")
	}
	text := out.String()
	if !strings.HasPrefix(text, "TIME ") {
		t.Errorf("no header first:\n%s", text)
	}
	for _, img := range []string{"before-1", "after-2", "after-3"} {
		if n := strings.Count(text, "enrolled          "+img); n != 1 {
			t.Errorf("%s printed %d times, want once:\n%s", img, n, text)
		}
	}
}
