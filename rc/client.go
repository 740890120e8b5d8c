package rc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/rc/proto"
)

// StatusError is a non-2xx answer of the appliance.
type StatusError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %s (HTTP %d)", e.Method, e.Path, e.Message, e.Status)
}

// ErrUnknownEnrollment is returned when the appliance does not know the
// RC's enrollment (any more): the RC enrolls again.
var ErrUnknownEnrollment = errors.New(proto.ErrUnknownEnrollment)

// permanent reports whether retrying the call that failed with err cannot
// help: the appliance answered, and not with a server-side failure.
func permanent(err error) bool {
	var se *StatusError
	return errors.Is(err, ErrUnknownEnrollment) || (errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && se.Status != http.StatusRequestTimeout && se.Status != http.StatusTooManyRequests)
}

// client talks to the appliance.
type client struct {
	base   string
	http   *http.Client
	secret string // the enrollment's, once enrolled
}

// newHTTPClient is the RC's HTTP client: no proxy (the appliance is on the
// control network), short connect timeouts, no overall timeout (image
// transfers are long; every call has its own context).
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        1 << 20,
		WriteBufferSize:       1 << 20,
	}}
}

// withSecret returns a copy of c that authenticates with secret.
func (c *client) withSecret(secret string) *client {
	cc := *c
	cc.secret = secret
	return &cc
}

func (c *client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	return req, nil
}

// statusError reads an error answer.
func statusError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := apiv1.ParseError(data)
	if resp.StatusCode == http.StatusUnauthorized && e.Error == proto.ErrUnknownEnrollment {
		return ErrUnknownEnrollment
	}
	return &StatusError{Method: resp.Request.Method, Path: resp.Request.URL.Path, Status: resp.StatusCode, Message: e.Error}
}

// call sends a JSON body (nil for none) and decodes a JSON answer into out
// (nil to discard it).
func (c *client) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, statusError(resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	// Drained so the connection is reused; a failed drain only costs that.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func (c *client) enroll(ctx context.Context, req proto.EnrollRequest) (proto.EnrollResponse, error) {
	var out proto.EnrollResponse
	_, err := c.call(ctx, http.MethodPost, "/api/v1/rc/enroll", req, &out)
	if err == nil && (out.Secret == "" || out.HRN == "" || out.Enrollment == 0) {
		err = errors.New("enroll: the appliance's answer lacks hrn, enrollment or secret")
	}
	return out, err
}

// poll waits up to wait for a command; nil if none came.
func (c *client) poll(ctx context.Context, wait time.Duration, running []int64) (*proto.Envelope, error) {
	q := url.Values{"wait": {wait.String()}}
	if len(running) > 0 {
		ids := make([]string, len(running))
		for i, id := range running {
			ids[i] = strconv.FormatInt(id, 10)
		}
		q.Set("running", strings.Join(ids, ","))
	}
	ctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
	defer cancel()
	var env proto.Envelope
	status, err := c.call(ctx, http.MethodGet, "/api/v1/rc/poll?"+q.Encode(), nil, &env)
	if err != nil || status == http.StatusNoContent {
		return nil, err
	}
	return &env, nil
}

func (c *client) report(ctx context.Context, id int64, r proto.Report) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.call(ctx, http.MethodPost, "/api/v1/rc/commands/"+strconv.FormatInt(id, 10)+"/report", r, nil)
	return err
}

// getImage starts the download of a disk image.
func (c *client) getImage(ctx context.Context, name string) (*http.Response, error) {
	req, err := c.newRequest(ctx, http.MethodGet, proto.DiskImagePath(name), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

// putImage uploads body as a disk image; sum is called when body is read
// to its end and returns the checksum sent in the trailer.
func (c *client) putImage(ctx context.Context, name string, body io.Reader, trailer http.Header) (proto.DiskImage, error) {
	req, err := c.newRequest(ctx, http.MethodPut, proto.DiskImagePath(name), body)
	if err != nil {
		return proto.DiskImage{}, err
	}
	req.ContentLength = -1 // chunked, so that a trailer can follow
	req.Trailer = trailer
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return proto.DiskImage{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return proto.DiskImage{}, statusError(resp)
	}
	var img proto.DiskImage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&img); err != nil {
		return img, fmt.Errorf("PUT %s: answer: %w", proto.DiskImagePath(name), err)
	}
	return img, nil
}
