// Package httpboot serves the boot root (tftp_root) read-only over HTTP,
// on the AM's listener under one prefix: what iPXE and UEFI HTTP Boot fetch
// their kernel, initramfs and RAM-disk image with, far faster than
// lock-step TFTP.
//
// The names a client may read are TFTP's (internal/bootpath): nothing
// outside the root, symlinks inside it followed (pxelinux.cfg/<HEX> and
// grub/grub.cfg-<HEX> are links), leading and doubled '/' dropped (shim
// asks "<dir>//grubx64.efi"), '\' read as '/', directories refused (no
// listings). A refused name is a 403, a missing one a 404, any other
// method than GET and HEAD a 405; each with a one-line text body. Range,
// HEAD and If-Modified-Since are net/http's (http.ServeContent); the body
// goes from the open file to the socket by sendfile(2).
//
// Each finished request is reported to a Sink: netbootd puts a node's GETs
// on its boot timeline, as it does its TFTP transfers.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/bootpath"
	"github.com/orbit-lab/netboot/internal/ctxio"
	"github.com/orbit-lab/netboot/internal/lograte"
	"github.com/orbit-lab/netboot/internal/peer"
)

// Content types of the boot files that have one of their own: the UEFI
// specification's for PE images, and the one UEFI HTTP Boot takes as a
// RAM-disk image (a URL ending in .img works too). The rest are
// application/octet-stream, except plain-text configs.
const (
	TypeEFI    = "application/efi"
	TypeEFIImg = "application/vnd.efi-img"
	typeText   = "text/plain; charset=utf-8"
	typeOther  = "application/octet-stream"
)

const (
	// logInterval is the shortest gap between two failure lines about one
	// client and outcome.
	logInterval = 10 * time.Second
	// limiterEntries bounds the per-client rate-limit table.
	limiterEntries = 4096
)

// ErrShort is a fetch whose client got less than the Content-Length
// announced, because the file shrank in place or the connection failed.
// net/http then closes the connection, so the client sees a truncated body
// as an error.
var ErrShort = errors.New("body cut short")

// Config configures the boot-file server.
type Config struct {
	// Root is the directory served (tftp_root), opened anew for each
	// request.
	Root string
	// Prefix is the URL path the files are under, e.g. "/boot/": it starts
	// and ends with '/'. Empty disables the server: Register adds nothing.
	Prefix string
}

// Fetch is what the server knows about one finished request.
type Fetch struct {
	// Client is the connection's peer (never a forwarded-for header: a
	// node's timeline must not be written by whoever claims its address).
	Client netip.AddrPort
	Method string
	// File is the name as resolved (relative to Root, '/'-separated, a
	// symlink not replaced by its target); for a name refused before it
	// could be resolved, the URL path as the client sent it (quoted if it
	// holds control characters, cut at MaxNameLen).
	File string
	// Status is the HTTP status answered.
	Status int
	// Range is the client's Range header when the answer is 206.
	Range string
	// Bytes is how many body bytes were handed to the connection.
	Bytes int64
	// Size is the file's size when opened; 0 if it was not opened.
	Size     int64
	Duration time.Duration
	// Err is nil for an answer that went out whole (200, 206, 304).
	// Refusals wrap bootpath.ErrNotFound or ErrAccess; a short body wraps
	// ErrShort.
	Err error
}

// Outcome is the short word logged for f, easy to grep and count.
func (f Fetch) Outcome() string {
	switch {
	case f.Err == nil && f.Status == http.StatusPartialContent:
		return "partial"
	case f.Err == nil && f.Status == http.StatusNotModified:
		return "not_modified"
	case f.Err == nil:
		return "ok"
	case errors.Is(f.Err, bootpath.ErrNotFound):
		return "not_found"
	case errors.Is(f.Err, bootpath.ErrAccess):
		return "access_violation"
	case errors.Is(f.Err, ErrShort):
		return "short"
	case f.Status >= 400 && f.Status < 500:
		return "refused"
	default:
		return "error"
	}
}

// Sink receives every finished request; netbootd turns a node's into
// events on its timeline.
type Sink interface {
	// FetchDone is called once per request, in its handler, after the
	// answer is written. ctx is the request's: it may be done.
	FetchDone(ctx context.Context, f Fetch)
}

// Server serves the boot root. Make it with New and give it to the AM,
// which calls Register on its router.
type Server struct {
	cfg  Config
	log  *slog.Logger
	sink Sink
	// failLogs rate-limits failure lines per client address and outcome,
	// as the TFTP server does: a client looping on a missing file must not
	// flood the log.
	failLogs *lograte.Limiter[limitKey]
}

type limitKey struct {
	client  netip.Addr
	outcome string
}

// New checks cfg and returns a Server. Root must be a readable directory
// unless Prefix is empty (disabled). log may be nil (nothing is logged),
// sink may be nil.
func New(cfg Config, log *slog.Logger, sink Sink) (*Server, error) {
	if cfg.Prefix != "" {
		if !strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") || cfg.Prefix == "/" || path.Clean(cfg.Prefix)+"/" != cfg.Prefix {
			return nil, fmt.Errorf("httpboot: prefix %q: want a clean path below / that starts and ends with '/', like /boot/", cfg.Prefix)
		}
		if err := bootpath.CheckRoot(cfg.Root); err != nil {
			return nil, fmt.Errorf("httpboot: root %q: %w", cfg.Root, err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, sink: sink, failLogs: lograte.New(logInterval, limiterEntries, limitKey{})}, nil
}

// Register adds the server's route to r: every method under Prefix, so
// that a write is answered 405 rather than gin's bare 404.
// Firmware fetches the files with no credentials: the routes are public.
func (s *Server) Register(r *gin.RouterGroup, guard apierr.Guard) {
	if s.cfg.Prefix == "" {
		return
	}
	var routes []apierr.Route
	for _, m := range []string{
		http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodHead,
		http.MethodOptions, http.MethodDelete, http.MethodConnect, http.MethodTrace,
	} {
		routes = append(routes, apierr.Route{Method: m, Path: s.cfg.Prefix + "*name", Handler: s.serve, Role: apierr.RolePublic})
	}
	apierr.Register(r, guard, routes)
}

func (s *Server) serve(c *gin.Context) {
	start := time.Now()
	r := c.Request
	name := c.Param("name")
	f := Fetch{Client: peer.AddrPort(r), Method: r.Method, File: printable(r.URL.Path)}
	f.Err = s.answer(c, name, &f)
	f.Status = c.Writer.Status()
	f.Duration = time.Since(start)
	s.finish(r.Context(), f)
}

// answer writes the answer to c and fills in f; it returns what went wrong.
func (s *Server) answer(c *gin.Context, name string, f *Fetch) error {
	r := c.Request
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		c.Header("Allow", "GET, HEAD")
		c.String(http.StatusMethodNotAllowed, "method %s not allowed: boot files are read-only\n", r.Method)
		return fmt.Errorf("method %s: %w", r.Method, bootpath.ErrAccess)
	}
	clean, err := bootpath.Clean(name)
	if err != nil {
		refuse(c, err)
		return err
	}
	f.File = clean
	file, fi, err := bootpath.Open(s.cfg.Root, clean)
	if err != nil {
		refuse(c, err)
		return err
	}
	defer file.Close()
	f.Size = fi.Size()
	// A transfer in flight ends when the appliance stops, instead of
	// holding its shutdown: sendfile checks no context.
	defer ctxio.CutOnDone(r.Context(), c.Writer, true)()

	w := &bodyWriter{ResponseWriter: c.Writer, raw: apierr.RawWriter(c.Writer)}
	h := w.Header()
	h.Set("Content-Type", contentType(clean))
	h.Set("X-Content-Type-Options", "nosniff")
	// The *os.File itself, not a wrapper: net/http hands it to the
	// kernel (sendfile) only then. ServeContent sends the size it finds at
	// its start, so a file grown meanwhile is cut there; a file replaced
	// by rename is still sent whole from the open descriptor.
	http.ServeContent(w, r, "", fi.ModTime(), file)

	status := c.Writer.Status()
	if status == http.StatusPartialContent {
		f.Range = r.Header.Get("Range")
	}
	f.Bytes = w.n
	switch {
	case status >= 400:
		// ServeContent's own refusals: 416 (a range outside the file), 412
		// (a failed If-Unmodified-Since), with its text.
		return fmt.Errorf("answered %d %s", status, http.StatusText(status))
	case r.Method == http.MethodGet && status != http.StatusNotModified:
		want, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64)
		if err == nil && w.n < want {
			cause := w.err
			if cause == nil {
				cause = errors.New("file shrank while being sent")
			}
			return fmt.Errorf("sent %d of %d bytes: %w: %w", w.n, want, ErrShort, cause)
		}
	}
	return nil
}

// refuse answers a name the path rule refused or could not open. The
// details (which component escaped, the errno) go to the log only: they
// describe the server's tree.
func refuse(c *gin.Context, err error) {
	switch {
	case errors.Is(err, bootpath.ErrNotFound):
		c.String(http.StatusNotFound, "file not found\n")
	case errors.Is(err, bootpath.ErrAccess):
		c.String(http.StatusForbidden, "access denied: outside the boot root, malformed, or not a regular file\n")
	default:
		c.String(http.StatusInternalServerError, "server error\n")
	}
}

// finish logs f and reports it to the sink. Answers that went out whole
// are logged at info; failures at most once per client and outcome per
// logInterval, with a count of the lines held back.
func (s *Server) finish(ctx context.Context, f Fetch) {
	attrs := []slog.Attr{
		slog.String("client", f.Client.String()),
		slog.String("method", f.Method),
		slog.String("file", f.File),
		slog.Int("status", f.Status),
		slog.Int64("bytes", f.Bytes),
		slog.Int64("size", f.Size),
		slog.Duration("duration", f.Duration),
		slog.String("outcome", f.Outcome()),
	}
	if f.Range != "" {
		attrs = append(attrs, slog.String("range", f.Range))
	}
	if f.Err == nil {
		s.log.LogAttrs(ctx, slog.LevelInfo, "http boot file", attrs...)
	} else if ok, suppressed := s.failLogs.Allow(limitKey{f.Client.Addr(), f.Outcome()}); ok {
		attrs = append(attrs, slog.String("error", f.Err.Error()), slog.Int("suppressed", suppressed))
		s.log.LogAttrs(ctx, slog.LevelWarn, "http boot file failed", attrs...)
	}
	if s.sink != nil {
		s.sink.FetchDone(ctx, f)
	}
}

// contentType is the type of a boot file by its extension. A fixed table,
// not mime.TypeByExtension, which reads the host's mime.types: the answer
// must not depend on what else is installed.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".efi":
		return TypeEFI
	case ".img":
		return TypeEFIImg
	case ".cfg", ".ipxe", ".txt", ".lst":
		return typeText
	}
	return typeOther
}

// bodyWriter counts the body bytes and passes the file to net/http's own
// writer. Gin's writer has no ReadFrom, so io.Copy through it would copy
// 32 KiB at a time in user space; net/http's ReadFrom hands an *os.File
// (in an io.LimitedReader) to the TCP connection, which sends it with
// sendfile(2). Headers and status still go through gin's writer, so that
// the AM's request log sees the status.
type bodyWriter struct {
	gin.ResponseWriter
	raw http.ResponseWriter
	n   int64
	err error // the first write error
}

func (w *bodyWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (w *bodyWriter) ReadFrom(src io.Reader) (int64, error) {
	w.WriteHeaderNow()
	rf, ok := w.raw.(io.ReaderFrom)
	if !ok {
		// Not net/http's writer (a test recorder): a plain copy.
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	n, err := rf.ReadFrom(src)
	w.n += n
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// printable is s for a log line or a timeline event: as it is if it is
// short, valid UTF-8 and free of control characters, else quoted (and
// cut), so that a request cannot write a terminal escape into an
// operator's `nbctl nodes events`.
func printable(s string) string {
	if len(s) > bootpath.MaxNameLen {
		return strconv.QuoteToASCII(s[:bootpath.MaxNameLen]) + "..."
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.QuoteToASCII(s)
	}
	return s
}
