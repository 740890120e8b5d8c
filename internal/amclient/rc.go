package amclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// RCs lists the Resource Controllers of every enrolled node.
func (c *Client) RCs(ctx context.Context) ([]proto.RCStatus, error) {
	var out []proto.RCStatus
	return out, c.getJSON(ctx, "/api/v1/rc", &out)
}

// RCStatus returns a node's Resource Controller (Enrolled false if none).
func (c *Client) RCStatus(ctx context.Context, node string) (proto.RCStatus, error) {
	var out proto.RCStatus
	return out, c.getJSON(ctx, c.nodePath(node, "/rc", nil), &out)
}

// SendCommand queues a command for a node's RC.
func (c *Client) SendCommand(ctx context.Context, node string, req proto.CommandRequest) (proto.CommandStatus, error) {
	var out proto.CommandStatus
	return out, c.sendJSON(ctx, http.MethodPost, c.nodePath(node, "/commands", nil), req, &out)
}

// Command returns a command and its state.
func (c *Client) Command(ctx context.Context, id int64) (proto.CommandStatus, error) {
	var out proto.CommandStatus
	return out, c.getJSON(ctx, "/api/v1/commands/"+strconv.FormatInt(id, 10), &out)
}

// NodeCommands lists a node's latest commands, newest first (limit 0: the
// appliance's default).
func (c *Client) NodeCommands(ctx context.Context, node string, limit int) ([]proto.CommandStatus, error) {
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var out []proto.CommandStatus
	return out, c.getJSON(ctx, c.nodePath(node, "/commands", q), &out)
}

// WaitCommand polls a command every interval until it is over, calling
// seen (if not nil) with each state it reads, and returns the last.
func (c *Client) WaitCommand(ctx context.Context, id int64, every time.Duration, seen func(proto.CommandStatus)) (proto.CommandStatus, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, err := c.Command(ctx, id)
		if err != nil {
			return st, err
		}
		if seen != nil {
			seen(st)
		}
		if proto.Terminal(st.State) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-t.C:
		}
	}
}

// DiskImages lists the disk images stored on the appliance.
func (c *Client) DiskImages(ctx context.Context) ([]proto.DiskImage, error) {
	var out []proto.DiskImage
	return out, c.getJSON(ctx, "/api/v1/disk-images", &out)
}

// PutDiskImage uploads a gzip or zstd disk image whose bytes have the
// SHA-256 sum (hex) given; the appliance keeps it only if they do. There is
// no overall timeout: bound it with ctx.
func (c *Client) PutDiskImage(ctx context.Context, name string, r io.Reader, sum string) (proto.DiskImage, error) {
	var out proto.DiskImage
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+proto.DiskImagePath(name), r)
	if err != nil {
		return out, fmt.Errorf("amclient: %w", err)
	}
	req.Header.Set(proto.HeaderSHA256, sum)
	req.Header.Set("Content-Type", "application/octet-stream")
	return out, c.stream(req, &out, nil)
}

// GetDiskImage downloads a disk image, as stored, into w.
func (c *Client) GetDiskImage(ctx context.Context, name string, w io.Writer) (sum string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+proto.DiskImagePath(name), nil)
	if err != nil {
		return "", fmt.Errorf("amclient: %w", err)
	}
	var h http.Header
	if err := c.stream(req, w, &h); err != nil {
		return "", err
	}
	return h.Get(proto.HeaderSHA256), nil
}

// stream runs a request that may move a lot of data: no overall timeout.
// A 2xx body is decoded into out (JSON) or copied to it (io.Writer); hdr,
// if not nil, gets the answer's header.
func (c *Client) stream(req *http.Request, out any, hdr *http.Header) error {
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := c.send(hc, req)
	if err != nil {
		return fmt.Errorf("amclient: %w", err)
	}
	defer resp.Body.Close()
	if hdr != nil {
		*hdr = resp.Header
	}
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return newError(resp.StatusCode, data)
	}
	if w, ok := out.(io.Writer); ok {
		if _, err := io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("amclient: %s %s: %w", req.Method, req.URL.Path, err)
		}
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("amclient: %s %s: decode: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// PutDiskImageTrailer uploads a disk image streamed as it is made: the
// checksum (proto.HeaderSHA256) goes in trailer, which the caller sets
// before r ends. There is no overall timeout: bound it with ctx.
func (c *Client) PutDiskImageTrailer(ctx context.Context, name string, r io.Reader, trailer http.Header) (proto.DiskImage, error) {
	var out proto.DiskImage
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+proto.DiskImagePath(name), r)
	if err != nil {
		return out, fmt.Errorf("amclient: %w", err)
	}
	req.ContentLength = -1 // chunked, so that a trailer can follow
	req.Trailer = trailer
	req.Header.Set("Content-Type", "application/octet-stream")
	return out, c.stream(req, &out, nil)
}
