package tftpd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"

	"github.com/orbit-lab/netboot/internal/testenv"
)

func TestNewValidatesConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	testenv.WriteFile(t, file, []byte("x"))
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{Listen: ":69", Root: dir}, ""},
		{"disabled: root not needed", Config{}, ""},
		{"missing root", Config{Listen: ":69", Root: filepath.Join(dir, "missing")}, "no such file"},
		{"no root", Config{Listen: ":69"}, "not set"},
		{"root is a file", Config{Listen: ":69", Root: file}, "not a directory"},
		{"negative timeout", Config{Listen: ":69", Root: dir, Timeout: -time.Second}, "timeout"},
		{"negative retries", Config{Listen: ":69", Root: dir, Retries: -1}, "retries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestNewDefaults: zero fields get the documented 1 s and 5 retries (a
// transfer given up after about 6 s of silence); set ones are kept.
func TestNewDefaults(t *testing.T) {
	for _, tc := range []struct {
		name        string
		timeout     time.Duration
		retries     int
		wantTimeout time.Duration
		wantRetries int
	}{
		{"zero gets defaults", 0, 0, time.Second, 5},
		{"set kept", 3 * time.Second, 2, 3 * time.Second, 2},
		{"timeout set, retries default", 250 * time.Millisecond, 0, 250 * time.Millisecond, 5},
		{"retries set, timeout default", 0, 9, time.Second, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Root: t.TempDir(), Timeout: tc.timeout, Retries: tc.retries}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if s.cfg.Timeout != tc.wantTimeout || s.cfg.Retries != tc.wantRetries {
				t.Errorf("timeout %v retries %d, want %v %d", s.cfg.Timeout, s.cfg.Retries, tc.wantTimeout, tc.wantRetries)
			}
		})
	}
}

func TestStartDisabled(t *testing.T) {
	s, err := New(Config{Root: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // never needed: Serve must return by itself
	if err := s.Serve(ctx); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready not closed")
	}
	if s.Addr() != nil {
		t.Errorf("Addr = %v, want nil", s.Addr())
	}
}

func TestStartBindErrorIsReturnedAtOnce(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.LocalAddr().String()
	s, err := New(Config{Listen: addr, Root: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.Serve(ctx)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Serve: got %v, want EADDRINUSE naming %s", err, addr)
	}
	if ctx.Err() != nil {
		t.Fatal("Serve waited for ctx instead of returning the bind error")
	}
	<-s.Ready()
	if err := s.Serve(ctx); err == nil {
		t.Error("second Serve: got nil, want an error")
	}
}

// TestShutdownCutsRunningTransfer cancels the server while a client is
// half-way through a large file and checks that the transfer is cut at the
// next read (the client gets an ERROR, the sink a context error) and that
// Serve returns (ts.stop fails the test if it hangs).
func TestShutdownCutsRunningTransfer(t *testing.T) {
	tr := newTree(t, map[string]int{"big": 8 << 20})
	ts := startServer(t, Config{Root: tr.Root})
	c := newRawClient(t)
	res, err := c.fetch(ts.addr, request(opRRQ, "big", "octet", "blksize", "1468"), 100, ts.cancel)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if res.err == nil {
		t.Fatalf("client got the whole file (%d bytes) although the server stopped", len(res.data))
	}
	ts.stop()
	got := ts.sink.waitFor(t, c.port(), "big")
	if !errors.Is(got.Err, context.Canceled) {
		t.Errorf("transfer cut by shutdown: Err = %v, want context.Canceled", got.Err)
	}
	if got.Bytes >= 8<<20 || got.Bytes < 100*1468 {
		t.Errorf("transfer cut by shutdown: Bytes = %d (%+v), client had %d", got.Bytes, got, len(res.data))
	}
}

// pinFetch downloads name with the pin/tftp client.
func pinFetch(t *testing.T, addr, name, mode string, blksize int) (data []byte, tsize int64, err error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	if blksize != 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, mode)
	if err != nil {
		return nil, 0, err
	}
	tsize, _ = wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), tsize, err
}

// TestPinClientFetch downloads with the pin/tftp client at the block sizes
// real boot loaders ask for and checks content, tsize and what the sink
// was told.
func TestPinClientFetch(t *testing.T) {
	tr := newTree(t, map[string]int{"kernel-8m": 8 << 20, "initrd-64m": 64 << 20})
	ts := startServer(t, Config{Root: tr.Root})
	tests := []struct {
		name    string
		file    string // as requested
		want    string // name in tr.Files, and Transfer.File
		blksize int    // asked for; 0: no blksize option
		wantBlk int
	}{
		{"8M no blksize option", "kernel-8m", "kernel-8m", 0, 512},
		{"8M blksize 512", "kernel-8m", "kernel-8m", 512, 512},
		{"8M pxelinux 1408", "kernel-8m", "kernel-8m", 1408, 1408},
		{"8M iPXE 1432", "kernel-8m", "kernel-8m", 1432, 1432},
		{"8M UEFI 1468", "kernel-8m", "kernel-8m", 1468, 1468},
		{"8M max 65464", "kernel-8m", "kernel-8m", 65464, 65464},
		{"64M UEFI 1468", "initrd-64m", "initrd-64m", 1468, 1468},
		{"64M max 65464", "initrd-64m", "initrd-64m", 65464, 65464},
		{"leading slash and symlink", "/pxelinux.cfg/0A120102", "pxelinux.cfg/0A120102", 1468, 1468},
		{"backslashes", `\pxelinux.cfg\default`, "pxelinux.cfg/default", 1432, 1432},
		{"empty file", "zero", "zero", 1468, 1468},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, ok := tr.Files[tc.want]
			if !ok {
				want = tr.Files["pxelinux.cfg/orbit-2.0.0"] // the symlink's target
			}
			start := time.Now()
			got, tsize, err := pinFetch(t, ts.addr, tc.file, "octet", tc.blksize)
			if err != nil {
				t.Fatalf("fetch %q: %v", tc.file, err)
			}
			t.Logf("%d bytes in %v", len(got), time.Since(start))
			equalBytes(t, tc.file, got, want)
			if len(want) > 0 && tsize != int64(len(want)) {
				t.Errorf("tsize %d, want %d", tsize, len(want))
			}
			rep := ts.sink.waitNth(t, i)
			if rep.Err != nil {
				t.Errorf("sink: Err = %v", rep.Err)
			}
			if diff := cmp.Diff(
				map[string]any{"file": tc.want, "bytes": int64(len(want)), "blksize": tc.wantBlk, "loopback": true},
				map[string]any{"file": rep.File, "bytes": rep.Bytes, "blksize": rep.BlkSize, "loopback": rep.Client.Addr().Is4() && rep.Client.Addr().IsLoopback()},
			); diff != "" {
				t.Errorf("sink transfer (-want +got):\n%s", diff)
			}
			if rep.Duration <= 0 {
				t.Errorf("sink: Duration = %v", rep.Duration)
			}
		})
	}
	if n := len(ts.logs.find("tftp transfer")); n != len(tests) {
		t.Errorf("%d success log lines, want one per transfer (%d)", n, len(tests))
	}
}

// TestNetascii checks that netascii mode converts line ends on the wire
// (RFC 1350: CR LF for a newline, CR NUL for a bare CR) and that the
// pin/tftp client turns them back.
func TestNetascii(t *testing.T) {
	tr := newTree(t, nil)
	ts := startServer(t, Config{Root: tr.Root})
	got, _, err := pinFetch(t, ts.addr, "text.txt", "netascii", 0)
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "netascii round trip", got, tr.Files["text.txt"])

	// tsize is left out: the file's size is not the size on the wire.
	res, err := newRawClient(t).fetch(ts.addr, request(opRRQ, "text.txt", "netascii", "blksize", "1024", "tsize", "0"), 0, nil)
	if err != nil || res.err != nil {
		t.Fatalf("raw fetch: %v %+v", err, res.err)
	}
	if want := "line one\r\nline two\r\x00\r\nend\r\n"; string(res.data) != want {
		t.Errorf("on the wire: %q, want %q", res.data, want)
	}
	if diff := cmp.Diff(map[string]string{"blksize": "1024"}, res.oack); diff != "" {
		t.Errorf("netascii OACK (-want +got):\n%s", diff)
	}
}

// TestRefusals sends names that must not be served and checks the error
// code each client sees first, and what the sink is told.
func TestRefusals(t *testing.T) {
	tr := newTree(t, nil)
	ts := startServer(t, Config{Root: tr.Root})
	tests := []struct {
		name     string
		file     string
		wantCode uint16
		wantErr  error
		wantFile string
	}{
		{"missing", "nope.0", 1, ErrNotFound, "nope.0"},
		{"missing under a slash", "/pxelinux.cfg/01-52-54-00-12-34-56", 1, ErrNotFound, "pxelinux.cfg/01-52-54-00-12-34-56"},
		{"absolute path is made relative", "/etc/passwd", 1, ErrNotFound, "etc/passwd"},
		{"through a file", "pxelinux.0/x", 1, ErrNotFound, "pxelinux.0/x"},
		{"dangling symlink inside", "dangling", 1, ErrNotFound, "dangling"},
		{"dot dot", "../outside/secret", 2, ErrAccess, "../outside/secret"},
		{"dot dot that stays inside", "pxelinux.cfg/../pxelinux.0", 2, ErrAccess, "pxelinux.cfg/../pxelinux.0"},
		{"backslash dot dot", `..\..\etc\passwd`, 2, ErrAccess, `..\..\etc\passwd`},
		{"symlink escaping", "escape", 2, ErrAccess, "escape"},
		{"symlink escaping in a subdirectory", "pxelinux.cfg/escape", 2, ErrAccess, "pxelinux.cfg/escape"},
		{"directory symlink escaping", "escape-dir/secret", 2, ErrAccess, "escape-dir/secret"},
		{"absolute symlink, even to inside", "absolute-inside", 2, ErrAccess, "absolute-inside"},
		{"directory", "pxelinux.cfg", 2, ErrAccess, "pxelinux.cfg"},
		{"empty name", "", 2, ErrAccess, ""},
		{"only slashes", "//", 2, ErrAccess, "//"},
		{"control character", "pxelinux.0\x01", 2, ErrAccess, "pxelinux.0\x01"},
		{"escape character", "\x1b[2Jpxelinux.0", 2, ErrAccess, "\x1b[2Jpxelinux.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newRawClient(t)
			c.send(ts.addr, request(opRRQ, tc.file, "octet", "blksize", "1468", "tsize", "0"))
			p, err := c.recv(3 * time.Second)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if p.op != opERROR || p.code != tc.wantCode {
				t.Fatalf("first reply: op %d code %d %q, want ERROR code %d", p.op, p.code, p.msg, tc.wantCode)
			}
			if strings.Contains(p.msg, tr.Root) || strings.Contains(p.msg, "SECRET") {
				t.Errorf("error text %q tells the client about the server's tree", p.msg)
			}
			rep := ts.sink.waitFor(t, c.port(), tc.wantFile)
			if !errors.Is(rep.Err, tc.wantErr) {
				t.Errorf("sink: Err = %v, want %v", rep.Err, tc.wantErr)
			}
			if rep.Bytes != 0 || rep.BlkSize != 0 {
				t.Errorf("sink: bytes %d blksize %d, want 0 0", rep.Bytes, rep.BlkSize)
			}
		})
	}
	// The pin/tftp client reports the code of the first ERROR it gets.
	if _, _, err := pinFetch(t, ts.addr, "escape", "octet", 1468); err == nil || !strings.Contains(err.Error(), "code: 2") {
		t.Errorf("pin client fetching an escaping symlink: %v, want code 2", err)
	}
}

func TestWriteRequestRefused(t *testing.T) {
	tr := newTree(t, nil)
	ts := startServer(t, Config{Root: tr.Root})
	for _, name := range []string{"new-file", "pxelinux.0", "../outside/new"} {
		c := newRawClient(t)
		c.send(ts.addr, request(opWRQ, name, "octet", "blksize", "1468"))
		p, err := c.recv(3 * time.Second)
		if err != nil {
			t.Fatalf("WRQ %q: no reply: %v", name, err)
		}
		if p.op != opERROR || p.code != 2 {
			t.Errorf("WRQ %q: first reply op %d code %d %q, want ERROR code 2", name, p.op, p.code, p.msg)
		}
	}
	c, err := tftp.NewClient(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send("new-file", "octet"); err == nil || !strings.Contains(err.Error(), "code=2") {
		t.Errorf("pin client WRQ: %v, want code 2", err)
	}
	if _, err := os.Stat(filepath.Join(tr.Root, "new-file")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write request left a file behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tr.Outside, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write request left a file outside the root: %v", err)
	}
}

// TestOptionValues sends absurd option values and checks that each is
// either refused the RFC way (left out of the OACK, so the RFC 1350
// defaults apply) or granted, and that the transfer then completes.
func TestOptionValues(t *testing.T) {
	tr := newTree(t, nil)
	ts := startServer(t, Config{Root: tr.Root})
	size := strconv.Itoa(len(tr.Files["pxelinux.0"]))
	tests := []struct {
		name     string
		opts     []string
		wantOACK map[string]string // nil: no OACK, data at once
	}{
		{"blksize 0", []string{"blksize", "0"}, nil},
		{"blksize 1", []string{"blksize", "1"}, nil},
		{"blksize 511", []string{"blksize", "511"}, nil},
		{"blksize 70000", []string{"blksize", "70000"}, nil},
		{"blksize 65465", []string{"blksize", "65465"}, nil},
		{"blksize not a number", []string{"blksize", "lots"}, nil},
		{"blksize negative", []string{"blksize", "-1468"}, nil},
		{"blksize empty", []string{"blksize", ""}, nil},
		{"blksize 65464", []string{"blksize", "65464"}, map[string]string{"blksize": "65464"}},
		{"blksize 1468 and tsize", []string{"blksize", "1468", "tsize", "0"}, map[string]string{"blksize": "1468", "tsize": size}},
		{"tsize garbage", []string{"tsize", "lots"}, map[string]string{"tsize": size}},
		{"tsize a wrong number", []string{"tsize", "123"}, map[string]string{"tsize": size}},
		{"tsize negative", []string{"tsize", "-5"}, map[string]string{"tsize": size}},
		{"timeout 0", []string{"timeout", "0"}, nil},
		{"timeout 300", []string{"timeout", "300"}, nil},
		{"timeout 5 is not negotiated", []string{"timeout", "5"}, nil},
		{"windowsize is not negotiated", []string{"windowsize", "16"}, nil},
		{"unknown option", []string{"color", "blue"}, nil},
		// RFC 2347 says option names are case-insensitive; the library
		// matches them exactly. Real clients send lower case.
		{"upper-case BLKSIZE is not recognised", []string{"BLKSIZE", "1468"}, nil},
		{"option without value", []string{"blksize"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newRawClient(t)
			res, err := c.fetch(ts.addr, request(opRRQ, "pxelinux.0", "octet", tc.opts...), 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.err != nil {
				t.Fatalf("ERROR %d %q", res.err.code, res.err.msg)
			}
			if diff := cmp.Diff(tc.wantOACK, res.oack); diff != "" {
				t.Errorf("OACK (-want +got):\n%s", diff)
			}
			equalBytes(t, "content", res.data, tr.Files["pxelinux.0"])
		})
	}
}

// TestMalformedPackets sends what no client should and checks that the
// server drops it (or answers with an error), logs it once, and still
// serves.
func TestMalformedPackets(t *testing.T) {
	tr := newTree(t, nil)
	ts := startServer(t, Config{Root: tr.Root})
	bad := []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"opcode only", []byte{0, 1}},
		{"unknown opcode", []byte{0, 99, 'x', 0, 'o', 'c', 't', 'e', 't', 0}},
		{"opcode 0", []byte{0, 0, 'x', 0}},
		{"unterminated file name", []byte("\x00\x01pxelinux.0")},
		{"three bytes", []byte{0, 1, 'p'}},
		{"DATA to the server port", []byte{0, 3, 0, 1, 'h', 'i'}},
		{"ACK to the server port", []byte{0, 4, 0, 1}},
		{"ERROR to the server port", []byte("\x00\x05\x00\x01oops\x00")},
		{"OACK to the server port", []byte("\x00\x06blksize\x001468\x00")},
		{"short ACK", []byte{0, 4, 0}},
		{"garbage", randomBytes(9, 700)},
	}
	c := newRawClient(t)
	for _, b := range bad {
		c.send(ts.addr, b.pkt)
	}
	c.expectSilence(300 * time.Millisecond)
	for _, b := range bad {
		c.send(ts.addr, b.pkt)
	}
	res, err := newRawClient(t).fetch(ts.addr, request(opRRQ, "pxelinux.0", "octet"), 0, nil)
	if err != nil || res.err != nil {
		t.Fatalf("fetch after malformed packets: %v %+v", err, res.err)
	}
	equalBytes(t, "fetch after malformed packets", res.data, tr.Files["pxelinux.0"])
	if n := len(ts.logs.find("tftp packet dropped")); n != 1 {
		t.Errorf("%d 'packet dropped' lines for %d bad packets, want 1 (rate-limited)", n, 2*len(bad))
	}
	for _, r := range ts.logs.find("tftp transfer failed") {
		t.Errorf("a malformed packet was taken for a request: %v", r)
	}
}

// TestMissingFileFlood makes one client ask for missing files in a tight
// loop while another downloads, and checks that every request is answered,
// reported to the sink, logged once per interval with a count of the held
// back lines, and that the other client is served meanwhile.
func TestMissingFileFlood(t *testing.T) {
	tr := newTree(t, map[string]int{"kernel-8m": 8 << 20})
	ts := startServer(t, Config{Root: tr.Root})
	var mu sync.Mutex
	now := time.Now()
	ts.clientLogs.SetClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	})

	fetched := make(chan error, 1)
	go func() {
		got, _, err := pinFetch(t, ts.addr, "kernel-8m", "octet", 1468)
		if err == nil && !bytes.Equal(got, tr.Files["kernel-8m"]) {
			err = errors.New("content differs")
		}
		fetched <- err
	}()

	const flood = 300
	c := newRawClient(t)
	for i := range flood {
		c.send(ts.addr, request(opRRQ, "missing-"+strconv.Itoa(i), "octet"))
		p, err := c.recv(3 * time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if p.op != opERROR || p.code != 1 {
			t.Fatalf("request %d: op %d code %d, want ERROR 1", i, p.op, p.code)
		}
		// The library's own ERROR for the same request may follow from
		// another port; drain it so it is not taken for the next answer.
		for {
			if _, err := c.recv(5 * time.Millisecond); err != nil {
				break
			}
		}
	}
	if err := <-fetched; err != nil {
		t.Errorf("download during the flood: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ts.sink.count() < flood+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ts.sink.count(); n != flood+1 {
		t.Errorf("sink got %d transfers, want %d", n, flood+1)
	}
	if n := len(ts.logs.find("tftp transfer failed")); n != 1 {
		t.Fatalf("%d failure lines for %d failed requests, want 1", n, flood)
	}

	// Another kind of failure from the same client is not held back by
	// the not-found ones.
	c.send(ts.addr, request(opRRQ, "escape", "octet"))
	if _, err := c.recv(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	ts.sink.waitFor(t, c.port(), "escape")
	lines := ts.logs.find("tftp transfer failed")
	if len(lines) != 2 || lines[1]["outcome"] != "access_violation" {
		t.Fatalf("after an access violation: lines %v, want a second one about it", lines)
	}

	mu.Lock()
	now = now.Add(logInterval)
	mu.Unlock()
	c.send(ts.addr, request(opRRQ, "missing-again", "octet"))
	if _, err := c.recv(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	ts.sink.waitFor(t, c.port(), "missing-again")
	lines = ts.logs.find("tftp transfer failed")
	if len(lines) != 3 {
		t.Fatalf("%d failure lines after the interval, want 3", len(lines))
	}
	if got, want := lines[2]["suppressed"], strconv.Itoa(flood-1); got != want {
		t.Errorf("line after the interval: suppressed=%s, want %s", got, want)
	}
	if lines[2]["outcome"] != "not_found" || lines[2]["file"] != "missing-again" {
		t.Errorf("line after the interval: %v", lines[2])
	}
}

// TestFileChangesDuringTransfer changes the file between two blocks and
// checks that the client gets the file as it was opened, or an error, but
// never a silent mix or a short file.
func TestFileChangesDuringTransfer(t *testing.T) {
	const size = 3 << 20
	tests := []struct {
		name    string
		change  func(t *testing.T, path string)
		wantErr bool
	}{
		{"replaced by rename", func(t *testing.T, path string) {
			testenv.WriteFile(t, path+".new", randomBytes(99, size/2))
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"unlinked", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"grown in place", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(randomBytes(98, 1<<20)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncated in place", func(t *testing.T, path string) {
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t, map[string]int{"vmlinuz": size})
			ts := startServer(t, Config{Root: tr.Root})
			c := newRawClient(t)
			// Block 10 at blksize 1468 is past the first 64 KiB read: the
			// change happens while the file is being read, not before.
			res, err := c.fetch(ts.addr, request(opRRQ, "vmlinuz", "octet", "blksize", "1468", "tsize", "0"), 100,
				func() { tc.change(t, filepath.Join(tr.Root, "vmlinuz")) })
			if err != nil {
				t.Fatal(err)
			}
			if res.oack["tsize"] != strconv.Itoa(size) {
				t.Errorf("tsize %q, want %d", res.oack["tsize"], size)
			}
			rep := ts.sink.waitFor(t, c.port(), "vmlinuz")
			if tc.wantErr {
				if res.err == nil {
					t.Fatalf("client got %d bytes and no error", len(res.data))
				}
				if !errors.Is(rep.Err, errShrank) {
					t.Errorf("sink: Err = %v, want errShrank", rep.Err)
				}
				return
			}
			if res.err != nil {
				t.Fatalf("ERROR %d %q", res.err.code, res.err.msg)
			}
			equalBytes(t, "content", res.data, tr.Files["vmlinuz"])
			if rep.Err != nil || rep.Bytes != size {
				t.Errorf("sink: bytes %d err %v", rep.Bytes, rep.Err)
			}
		})
	}
}

// TestRetransmit: a block whose ACK never comes is sent again Retries
// times, each after Timeout, and then the transfer is given up and
// reported failed. The client here never ACKs.
func TestRetransmit(t *testing.T) {
	tr := newTree(t, nil)
	for _, retries := range []int{1, 3} {
		t.Run(strconv.Itoa(retries), func(t *testing.T) {
			ts := startServer(t, Config{Root: tr.Root, Timeout: 50 * time.Millisecond, Retries: retries})
			c := newRawClient(t)
			c.send(ts.addr, request(opRRQ, "pxelinux.0", "octet"))
			sends := 0
			for {
				// Far longer than Timeout: a gap this long is the end.
				p, err := c.recv(2 * time.Second)
				if err != nil {
					break
				}
				if p.op == opDATA && p.block == 1 {
					sends++
				} else if p.op != opERROR {
					t.Fatalf("got %+v", p)
				}
			}
			if sends != 1+retries {
				t.Errorf("block 1 sent %d times, want once and %d retries", sends, retries)
			}
			if tf := ts.sink.waitNth(t, 0); tf.Err == nil || tf.Unacked != 1+retries {
				t.Errorf("transfer reported %+v, want failed with %d datagrams unacknowledged", tf, 1+retries)
			}
		})
	}
	// A first block whose ACK is lost: sent again, and the transfer
	// finishes with that one datagram counted. The timeout is long enough
	// for every ACK of this client to arrive in time, however loaded the
	// machine.
	t.Run("one lost", func(t *testing.T) {
		ts := startServer(t, Config{Root: tr.Root, Timeout: 2 * time.Second, Retries: 3})
		c := newRawClient(t)
		c.send(ts.addr, request(opRRQ, "pxelinux.0", "octet"))
		skipped := false
		for {
			p, err := c.recv(5 * time.Second)
			if err != nil || p.op != opDATA {
				t.Fatalf("got %+v, %v; want DATA", p, err)
			}
			if p.block == 1 && !skipped {
				skipped = true // as if this ACK were lost
				continue
			}
			c.send(p.from.String(), ack(p.block))
			if len(p.data) < 512 {
				break
			}
		}
		if tf := ts.sink.waitNth(t, 0); tf.Err != nil || tf.Unacked != 1 {
			t.Errorf("transfer reported %+v, want done with 1 datagram unacknowledged", tf)
		}
	})
}
