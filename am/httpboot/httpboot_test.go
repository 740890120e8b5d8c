package httpboot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/guard"
	"github.com/orbit-lab/netboot/internal/bootpath"
	"github.com/orbit-lab/netboot/internal/bootpath/boottree"
)

// hung is how long a test waits for something that must happen before it
// calls the server hung; nothing is timed against it.
const hung = 30 * time.Second

// sink keeps every fetch, in order, for a test to wait on.
type sink chan Fetch

func (s sink) FetchDone(_ context.Context, f Fetch) { s <- f }

func (s sink) next(t *testing.T) Fetch {
	t.Helper()
	select {
	case f := <-s:
		return f
	case <-time.After(hung):
		t.Fatal("no fetch reported")
		return Fetch{}
	}
}

type testServer struct {
	url    string
	tr     *boottree.Tree
	fetch  sink
	cancel context.CancelFunc // what stopping the appliance does to its requests
}

// start serves tree under /boot/ on a real loopback listener, with gin
// and net/http as netbootd runs them.
func start(t *testing.T, large map[string]int) *testServer {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	tr := boottree.New(t, large)
	fetch := make(sink, 100)
	s, err := New(Config{Root: tr.Root, Prefix: "/boot/"}, nil, fetch)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	s.Register(r.Group("/"), guard.New(guard.Config{}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	hs := httptest.NewUnstartedServer(r)
	hs.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	hs.Start()
	t.Cleanup(func() { cancel(); hs.Close() })
	return &testServer{url: hs.URL, tr: tr, fetch: fetch, cancel: cancel}
}

// answer is a response read whole.
type answer struct {
	StatusCode int
	Header     http.Header
}

// do sends method on the path exactly as written (no client-side cleaning
// of "..", "//" or escapes: the request line carries it as is), with
// header name, value pairs.
func (ts *testServer) do(t *testing.T, method, path string, hdr ...string) (answer, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header}, body
}

// TestPaths: the names TFTP serves and refuses (internal/bootpath), asked
// over HTTP. Where HTTP differs from TFTP it is only in the answer: 404
// for TFTP's error 1, 403 for its error 2; and in the URL, which is
// percent-decoded before the rule sees it ("%2e%2e" is "..").
func TestPaths(t *testing.T) {
	ts := start(t, nil)
	secret, err := os.ReadFile(filepath.Join(ts.tr.Outside, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		status int
		want   string // key of tr.Files served, for a 200
	}{
		{"/boot/pxelinux.0", 200, "pxelinux.0"},
		{"/boot//pxelinux.0", 200, "pxelinux.0"}, // shim's "<dir>//grubx64.efi"
		{"/boot///pxelinux.cfg//./default", 200, "pxelinux.cfg/default"},
		{"/boot/pxelinux.cfg/0A120102", 200, "pxelinux.cfg/orbit-2.0.0"}, // a link inside the root
		{`/boot/pxelinux.cfg\0A120102`, 200, "pxelinux.cfg/orbit-2.0.0"}, // '\' is '/', as in TFTP
		{"/boot/pxelinux.cfg%5C0A120102", 200, "pxelinux.cfg/orbit-2.0.0"},
		{"/boot/pxelinux.cfg%2F0A120102", 200, "pxelinux.cfg/orbit-2.0.0"},
		{"/boot/zero", 200, "zero"},
		{"/boot/text.txt", 200, "text.txt"},
		{"/boot/../outside/secret", 403, ""},
		{"/boot/pxelinux.cfg/../pxelinux.0", 403, ""}, // ".." refused even inside, as TFTP does
		{"/boot/%2e%2e/outside/secret", 403, ""},
		{`/boot/..\outside\secret`, 403, ""},
		{"/boot/escape", 403, ""},                                        // a relative link out
		{"/boot/escape-dir/secret", 403, ""},                             // a directory link out
		{"/boot/pxelinux.cfg/escape", 403, ""},                           // out from below
		{"/boot/absolute-inside", 403, ""},                               // an absolute link, even to inside
		{"/boot/empty-dir", 403, ""},                                     // no listings
		{"/boot/empty-dir/", 403, ""},                                    //
		{"/boot/", 403, ""},                                              // the root itself
		{"/boot/pxelinux.cfg/", 403, ""},                                 //
		{"/boot/pxelinux.0%00", 403, ""},                                 // NUL
		{"/boot/pxelinux%0A.0", 403, ""},                                 // a control character
		{"/boot/%FF%FE", 403, ""},                                        // not UTF-8
		{"/boot/" + strings.Repeat("a", 513), 403, ""},                   // longer than any TFTP name
		{"/boot/missing", 404, ""},                                       //
		{"/boot/dangling", 404, ""},                                      // a link to nothing
		{"/boot/pxelinux.0/below-a-file", 404, ""},                       //
		{"/boot/" + strings.Repeat("abcdefg/", 63) + "abcdefg", 404, ""}, // "/" and 511 more: as long as allowed
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := ts.do(t, http.MethodGet, tc.path)
			f := ts.fetch.next(t) // before any Fatal, so the next case reads its own
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%q)", resp.StatusCode, tc.status, body)
			}
			if bytes.Contains(body, secret) {
				t.Fatal("served the file outside the root")
			}
			if tc.status == 200 && !bytes.Equal(body, ts.tr.Files[tc.want]) {
				t.Errorf("served %d bytes, not %s (%d bytes)", len(body), tc.want, len(ts.tr.Files[tc.want]))
			}
			if tc.status != 200 && (len(body) == 0 || len(body) > 200) {
				t.Errorf("a refusal should say why in a line: %q", body)
			}
			if f.Status != tc.status || f.Method != http.MethodGet {
				t.Errorf("reported %+v", f)
			}
			switch tc.status {
			case 200:
				if f.Err != nil || f.File != tc.want && !strings.Contains(tc.path, "0A120102") || f.Bytes != int64(len(body)) {
					t.Errorf("reported %+v", f)
				}
			case 403:
				if !errors.Is(f.Err, bootpath.ErrAccess) {
					t.Errorf("reported error %v, want ErrAccess", f.Err)
				}
			case 404:
				if !errors.Is(f.Err, bootpath.ErrNotFound) {
					t.Errorf("reported error %v, want ErrNotFound", f.Err)
				}
			}
		})
	}
}

// TestLinkIsReportedByItsName: the timeline names the file the node asked
// for (its pxelinux.cfg/<HEX> link), not the link's target.
func TestLinkIsReportedByItsName(t *testing.T) {
	ts := start(t, nil)
	ts.do(t, http.MethodGet, "/boot//pxelinux.cfg/0A120102")
	if f := ts.fetch.next(t); f.File != "pxelinux.cfg/0A120102" || f.Outcome() != "ok" {
		t.Errorf("reported %+v", f)
	}
}

func TestContentType(t *testing.T) {
	ts := start(t, nil)
	for name, want := range map[string]string{
		"shimx64.efi":             "application/efi",
		"EFI/BOOT/BOOTX64.EFI":    "application/efi",
		"orbit-2.0.0.img":         "application/vnd.efi-img",
		"grub/grub.cfg":           "text/plain; charset=utf-8",
		"orbit-2.0.0.ipxe":        "text/plain; charset=utf-8",
		"initramfs-orbit.gz":      "application/octet-stream",
		"linux-orbit-pxe":         "application/octet-stream",
		"pxelinux.cfg/0A120102":   "application/octet-stream",
		"grub/grub.cfg-0A120102":  "application/octet-stream",
		"page.html":               "application/octet-stream", // never rendered by a browser from here
		"x86_64-efi/command.lst":  "text/plain; charset=utf-8",
		"ldlinux.c32":             "application/octet-stream",
		"snponly.efi.unsigned.gz": "application/octet-stream",
	} {
		if _, ok := ts.tr.Files[name]; !ok && name != "pxelinux.cfg/0A120102" {
			ts.tr.Write(t, name, []byte("<html>MZ"+name))
		}
		resp, _ := ts.do(t, http.MethodGet, "/boot/"+name)
		ts.fetch.next(t)
		if got := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || got != want {
			t.Errorf("%s: %d %q, want %q", name, resp.StatusCode, got, want)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", name, got)
		}
	}
}

func TestHeadRangeConditional(t *testing.T) {
	ts := start(t, map[string]int{"boot.img": 1 << 20})
	img := ts.tr.Files["boot.img"]
	size := strconv.Itoa(len(img))

	resp, body := ts.do(t, http.MethodHead, "/boot/boot.img")
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != size ||
		resp.Header.Get("Content-Type") != TypeEFIImg || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD: %d, %d body bytes, headers %v", resp.StatusCode, len(body), resp.Header)
	}
	if f := ts.fetch.next(t); f.Method != http.MethodHead || f.Bytes != 0 || f.Size != int64(len(img)) || f.Err != nil {
		t.Errorf("HEAD reported %+v", f)
	}
	lastMod := resp.Header.Get("Last-Modified")

	tests := []struct {
		name      string
		hdr       []string
		status    int
		body      []byte
		outcome   string
		rangeSeen string
	}{
		{"range", []string{"Range", "bytes=1000-1999"}, 206, img[1000:2000], "partial", "bytes=1000-1999"},
		{"open-ended range", []string{"Range", "bytes=1048000-"}, 206, img[1048000:], "partial", "bytes=1048000-"},
		{"suffix range", []string{"Range", "bytes=-10"}, 206, img[len(img)-10:], "partial", "bytes=-10"},
		{"range outside the file", []string{"Range", "bytes=2000000-"}, 416, nil, "refused", ""},
		{"not modified since", []string{"If-Modified-Since", lastMod}, 304, nil, "not_modified", ""},
		{"modified since", []string{"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}, 200, img, "ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, http.MethodGet, "/boot/boot.img", tt.hdr...)
			f := ts.fetch.next(t)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %q", resp.StatusCode, tt.status, body)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body: %d bytes, want %d", len(body), len(tt.body))
			}
			if f.Outcome() != tt.outcome || f.Range != tt.rangeSeen || (tt.body != nil && f.Bytes != int64(len(tt.body))) {
				t.Errorf("reported %+v (outcome %s), want outcome %s, range %q", f, f.Outcome(), tt.outcome, tt.rangeSeen)
			}
		})
	}
}

// TestWritesRefused: the root is read-only; every other method is a 405
// that changes nothing.
func TestWritesRefused(t *testing.T) {
	ts := start(t, nil)
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch} {
		for _, name := range []string{"pxelinux.0", "new-file"} {
			req, err := http.NewRequest(m, ts.url+"/boot/"+name, strings.NewReader("overwritten"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(string(body), "read-only") {
				t.Errorf("%s %s: %d %v %q", m, name, resp.StatusCode, resp.Header, body)
			}
			if f := ts.fetch.next(t); f.Method != m || f.Status != 405 || !errors.Is(f.Err, bootpath.ErrAccess) {
				t.Errorf("reported %+v", f)
			}
		}
	}
	if got, err := os.ReadFile(filepath.Join(ts.tr.Root, "pxelinux.0")); err != nil || !bytes.Equal(got, ts.tr.Files["pxelinux.0"]) {
		t.Errorf("pxelinux.0 changed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(ts.tr.Root, "new-file")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new-file: %v", err)
	}
}

// TestFileChangesDuringTransfer: the file is opened once and what the
// client gets is that file: whole if it is replaced by rename (as
// atomicfile and image builds do), cut at the announced length if it
// grows in place, and a failed transfer (the connection closed short, an
// error for the client) if it shrinks in place: never a truncated file
// that looks complete. The client reads slowly (a small receive buffer,
// one read before the change), so the server is still sending when the
// file changes.
func TestFileChangesDuringTransfer(t *testing.T) {
	const size = 16 << 20
	tests := []struct {
		name    string
		change  func(t *testing.T, path string)
		whole   bool // the client gets the old file whole
		outcome string
	}{
		{"replaced by rename", func(t *testing.T, path string) {
			if err := os.WriteFile(path+".new", boottree.RandomBytes(99, size/2), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, true, "ok"},
		{"grown in place", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(boottree.RandomBytes(98, 1<<20)); err != nil {
				t.Fatal(err)
			}
		}, true, "ok"},
		{"truncated in place", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, false, "short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := start(t, map[string]int{"kernel": size})
			old := ts.tr.Files["kernel"]
			client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
				Control: func(_, _ string, c syscall.RawConn) error {
					var serr error
					err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
					return errors.Join(err, serr)
				}}).DialContext}}
			resp, err := client.Get(ts.url + "/boot/kernel")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ContentLength != size {
				t.Fatalf("Content-Length %d", resp.ContentLength)
			}
			br := bufio.NewReaderSize(resp.Body, 4096)
			head := make([]byte, 4096)
			if _, err := io.ReadFull(br, head); err != nil {
				t.Fatal(err)
			}
			tt.change(t, filepath.Join(ts.tr.Root, "kernel"))
			rest, err := io.ReadAll(br)
			got := slices.Concat(head, rest)
			if tt.whole {
				if err != nil || !bytes.Equal(got, old) {
					t.Errorf("got %d bytes (err %v), want the old %d whole", len(got), err, len(old))
				}
			} else if err == nil || len(got) >= size {
				t.Errorf("got %d bytes and err %v: a short file must fail", len(got), err)
			}
			f := ts.fetch.next(t)
			if f.Outcome() != tt.outcome {
				t.Errorf("reported %+v, outcome %s, want %s", f, f.Outcome(), tt.outcome)
			}
			if tt.whole && f.Bytes != size {
				t.Errorf("reported %d bytes, want %d", f.Bytes, size)
			}
		})
	}
}

// TestShutdownCutsStalledTransfer: a client that stops reading does not
// hold the appliance's shutdown: the request's context ending makes the
// pending write fail, and the fetch is reported as cut short.
func TestShutdownCutsStalledTransfer(t *testing.T) {
	ts := start(t, map[string]int{"kernel": 32 << 20})
	resp, err := http.Get(ts.url + "/boot/kernel")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The client reads nothing more: the server blocks once the socket
	// buffers are full.
	ts.cancel()
	f := ts.fetch.next(t)
	if !errors.Is(f.Err, ErrShort) || f.Bytes >= 32<<20 {
		t.Errorf("reported %+v, want a transfer cut short", f)
	}
}

// recordingWriter stands for net/http's writer and keeps what ReadFrom
// was handed.
type recordingWriter struct {
	http.ResponseWriter
	src io.Reader
}

func (w *recordingWriter) ReadFrom(src io.Reader) (int64, error) {
	w.src = src
	return io.Copy(io.Discard, src)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestBodyIsTheOpenFile: net/http sends a body by sendfile(2) only when
// its writer's ReadFrom gets the *os.File itself (in ServeContent's
// io.LimitedReader); any wrapper around the file means a user-space copy.
// The real path is checked on a running netbootd with strace (README).
func TestBodyIsTheOpenFile(t *testing.T) {
	tr := boottree.New(t, map[string]int{"initrd": 1 << 20})
	s, err := New(Config{Root: tr.Root, Prefix: "/boot/"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, rng := range []string{"", "bytes=100-"} {
		rec := &recordingWriter{ResponseWriter: httptest.NewRecorder()}
		c, _ := gin.CreateTestContext(rec)
		c.Request = httptest.NewRequest(http.MethodGet, "/boot/initrd", nil)
		if rng != "" {
			c.Request.Header.Set("Range", rng)
		}
		c.Params = gin.Params{{Key: "name", Value: "/initrd"}}
		s.serve(c)
		lr, ok := rec.src.(*io.LimitedReader)
		if !ok {
			t.Fatalf("range %q: ReadFrom got %T, want *io.LimitedReader", rng, rec.src)
		}
		if _, ok := lr.R.(*os.File); !ok {
			t.Errorf("range %q: ReadFrom got a LimitedReader of %T, want *os.File", rng, lr.R)
		}
	}
}

func TestNew(t *testing.T) {
	tr := boottree.New(t, nil)
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{Root: tr.Root, Prefix: "/boot/"}, ""},
		{Config{Root: tr.Root, Prefix: "/files/boot/"}, ""},
		{Config{Prefix: ""}, ""}, // disabled: no root needed
		{Config{Root: tr.Root, Prefix: "/boot"}, "prefix"},
		{Config{Root: tr.Root, Prefix: "boot/"}, "prefix"},
		{Config{Root: tr.Root, Prefix: "/"}, "prefix"},
		{Config{Root: tr.Root, Prefix: "/a/../b/"}, "prefix"},
		{Config{Root: tr.Root, Prefix: "//boot/"}, "prefix"},
		{Config{Root: filepath.Join(tr.Root, "missing"), Prefix: "/boot/"}, "root"},
		{Config{Root: filepath.Join(tr.Root, "pxelinux.0"), Prefix: "/boot/"}, "root"},
		{Config{Prefix: "/boot/"}, "root"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.cfg), func(t *testing.T) {
			_, err := New(tt.cfg, nil, nil)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("New: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestDisabled: without a prefix nothing of the root is reachable.
func TestDisabled(t *testing.T) {
	tr := boottree.New(t, nil)
	s, err := New(Config{Root: tr.Root}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	s.Register(r.Group("/"), guard.New(guard.Config{}, nil))
	for _, p := range []string{"/boot/pxelinux.0", "/pxelinux.0"} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
		if w.Code != 404 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
}
