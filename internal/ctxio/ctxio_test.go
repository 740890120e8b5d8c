package ctxio

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("read before cancel: %d, %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %d, %v", n, err)
	}
}

// TestCutOnDone: a handler blocked writing to a client that reads nothing
// gets an error once the request's context ends (the server stops).
func TestCutOnDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrote := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer CutOnDone(r.Context(), w, true)()
		buf := make([]byte, 64<<10)
		var err error
		for err == nil {
			_, err = w.Write(buf)
		}
		wrote <- err
	}))
	srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The client reads nothing more: the handler fills the buffers and
	// blocks, until the cut.
	select {
	case err := <-wrote:
		t.Fatalf("the write ended before the cut: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-wrote:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("write error %v, want the deadline's", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the write was not cut")
	}
}
