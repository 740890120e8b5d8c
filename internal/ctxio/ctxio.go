// Package ctxio ties a stream to a context.
package ctxio

import (
	"context"
	"io"
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
