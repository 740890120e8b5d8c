package webui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/webui"
	"github.com/orbit-lab/netboot/internal/apptest"
)

// anyone admits every caller: these tests are about the stream, the
// guard's own tests about admission.
type anyone struct{}

func (anyone) Admit(string, string, apierr.Role) gin.HandlerFunc { return func(*gin.Context) {} }

// events is the store's side: its snapshot, and a gate that holds the
// snapshot's read until the test opens it.
type events struct {
	snapshot []apiv1.Event
	gate     chan struct{}
	mu       sync.Mutex
	perNode  int
}

func (e *events) RecentEvents(ctx context.Context, perNode int) ([]apiv1.Event, error) {
	e.mu.Lock()
	e.perNode = perNode
	e.mu.Unlock()
	if e.gate != nil {
		select {
		case <-e.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return e.snapshot, nil
}

func serve(t *testing.T, ui *webui.UI) string {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	ui.Register(r.Group("/"), r.Group("/api/v1"), anyone{})
	s := httptest.NewServer(r)
	t.Cleanup(s.Close)
	return s.URL
}

type sse struct{ name, data string }

// open starts a stream read into a channel of its events, closed at its
// end.
func open(t *testing.T, url string) <-chan sse {
	t.Helper()
	out, err := openStream(t, url, "")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// openStream is open for another goroutine than the test's: it returns
// its error.
func openStream(t *testing.T, url, token string) (<-chan sse, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // the reader goroutine closes it
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		return nil, fmt.Errorf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sse, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					out <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		// Drained so that the reader ends.
		for range out {
		}
	})
	return out, nil
}

func next(t *testing.T, c <-chan sse) sse {
	t.Helper()
	select {
	case ev, ok := <-c:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event from the stream")
	}
	return sse{}
}

// waitSubscribers waits until the UI has n streams open.
func waitSubscribers(t *testing.T, ui *webui.UI, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ui.Subscribers() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", ui.Subscribers(), n)
		}
	}
}

// TestStream: a stream starts with the snapshot of each node's newest
// events (as many as asked), then carries each published event, to every
// open stream; no more than MaxStreams are open.
func TestStream(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := &events{snapshot: []apiv1.Event{{ID: 7, HRN: "node1-1.sb8", At: at, Source: "dhcp", What: "DHCPACK", Detail: "file=pxelinux.0"}}}
	ui := webui.New(webui.Config{MaxStreams: 2}, ev, slog.New(slog.DiscardHandler))
	url := serve(t, ui)
	a := open(t, url+"/api/v1/events/stream?recent=3")
	if got := next(t, a); got.name != "snapshot" || got.data != `[{"id":7,"hrn":"node1-1.sb8","at":"2026-01-02T03:04:05Z","source":"dhcp","what":"DHCPACK","detail":"file=pxelinux.0"}]` {
		t.Errorf("snapshot: %+v", got)
	}
	if ev.perNode != 3 {
		t.Errorf("the snapshot read %d per node, want 3", ev.perNode)
	}
	b := open(t, url+"/api/v1/events/stream?recent=0")
	if got := next(t, b); got.name != "snapshot" || got.data != "[]" {
		t.Errorf("recent=0: %+v", got)
	}
	waitSubscribers(t, ui, 2)
	// A third is one too many.
	if r := apptest.Call(t, http.MethodGet, url+"/api/v1/events/stream", "", nil); r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "2 event streams are open") {
		t.Errorf("a third stream: %d %s", r.Status, r.Body)
	}
	live := apiv1.Event{HRN: "node1-2.sb8", At: at.Add(time.Second), Source: "rc", What: "enrolled", Detail: "<b>&"}
	ui.Publish(live)
	for name, c := range map[string]<-chan sse{"a": a, "b": b} {
		got := next(t, c)
		var e apiv1.Event
		if err := json.Unmarshal([]byte(got.data), &e); got.name != "event" || err != nil || e != live {
			t.Errorf("%s: %+v (%v)", name, got, err)
		}
	}
}

// TestSlowReaderDropped: a reader that falls more than Buffer events
// behind is dropped, without Publish ever waiting for it, and told to
// reload; its stream then ends. The other readers go on.
func TestSlowReaderDropped(t *testing.T) {
	ev := &events{snapshot: []apiv1.Event{}, gate: make(chan struct{})}
	ui := webui.New(webui.Config{Buffer: 2}, ev, slog.New(slog.DiscardHandler))
	url := serve(t, ui)
	// The stream subscribes, then reads its snapshot, held at the gate:
	// it reads none of what is published meanwhile.
	type opened struct {
		c   <-chan sse
		err error
	}
	slowc := make(chan opened, 1)
	go func() {
		c, err := openStream(t, url+"/api/v1/events/stream", "")
		slowc <- opened{c, err}
	}()
	waitSubscribers(t, ui, 1)
	done := make(chan struct{})
	go func() {
		for i := range 5 {
			ui.Publish(apiv1.Event{HRN: "n", What: string(rune('a' + i))})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish waited for a reader")
	}
	if n := ui.Subscribers(); n != 0 {
		t.Errorf("%d streams after the overflow, want the slow one dropped", n)
	}
	close(ev.gate)
	o := <-slowc
	if o.err != nil {
		t.Fatal(o.err)
	}
	slow := o.c
	var names []string
	for e := range slow {
		names = append(names, e.name)
	}
	if len(names) < 2 || names[0] != "snapshot" || names[len(names)-1] != "reload" {
		t.Errorf("the dropped stream said %q; want the snapshot first and reload last", names)
	}
	for _, n := range names[1 : len(names)-1] {
		if n != "event" {
			t.Errorf("the dropped stream said %q", names)
		}
	}
}
