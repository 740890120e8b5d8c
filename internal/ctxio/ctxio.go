// Package ctxio ties a stream, or an HTTP transfer, to a context.
package ctxio

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Reader fails reads once ctx is done, so that a transfer ends when its
// owner stops instead of holding it up.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// CutOnDone makes the connection's pending write (or read) fail when ctx
// ends while a handler runs (the appliance stops, or the client left), so
// that a stalled transfer, which no context check inside the kernel's
// sendfile would notice, cannot hold a shutdown. w is the handler's
// writer; http.ResponseController finds the connection under wrappers that
// Unwrap. Call the function it returns when the handler ends: from then
// on the connection, and any pooled wrapper of w, may serve another
// request.
func CutOnDone(ctx context.Context, w http.ResponseWriter, write bool) (release func()) {
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	over := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if over {
			return
		}
		// An error here means the writer cannot be cut (no deadline
		// support): the transfer then ends when the connection does.
		if write {
			_ = rc.SetWriteDeadline(time.Now())
		} else {
			_ = rc.SetReadDeadline(time.Now())
		}
	})
	return func() {
		stop()
		mu.Lock()
		over = true
		mu.Unlock()
	}
}
