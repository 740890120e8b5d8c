package tftpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/bootpath/boottree"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// tree is a tftp root for tests: boottree's, shared with the path rule's
// and the HTTP server's tests.
type tree = boottree.Tree

func newTree(t testing.TB, large map[string]int) *tree { return boottree.New(t, large) }

func randomBytes(seed uint64, n int) []byte { return boottree.RandomBytes(seed, n) }

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// find returns the records with message msg, as attribute maps.
func (l *logRecorder) find(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.records {
		if r.Message != msg {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// sinkRecorder is a TransferSink that keeps every transfer.
type sinkRecorder struct {
	mu        sync.Mutex
	transfers []Transfer
	changed   chan struct{}
}

func newSinkRecorder() *sinkRecorder { return &sinkRecorder{changed: make(chan struct{}, 1)} }

func (s *sinkRecorder) TransferDone(_ context.Context, t Transfer) {
	s.mu.Lock()
	s.transfers = append(s.transfers, t)
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitFor returns the first transfer for file from client port (any port
// if 0), waiting up to 30 s: the sink is called after the client has its
// last block.
func (s *sinkRecorder) waitFor(t testing.TB, port int, file string) Transfer {
	t.Helper()
	return s.await(t, func(trs []Transfer) (Transfer, bool) {
		for _, tr := range trs {
			if (port == 0 || int(tr.Client.Port()) == port) && tr.File == file {
				return tr, true
			}
		}
		return Transfer{}, false
	}, func() string { return fmt.Sprintf("no transfer of %q from port %d reported", file, port) })
}

// waitNth returns the n-th transfer reported (0-based), waiting up to 30 s.
func (s *sinkRecorder) waitNth(t testing.TB, n int) Transfer {
	t.Helper()
	return s.await(t, func(trs []Transfer) (Transfer, bool) {
		if len(trs) > n {
			return trs[n], true
		}
		return Transfer{}, false
	}, func() string { return fmt.Sprintf("only %d transfers reported, waiting for #%d", s.count(), n) })
}

// await waits up to 30 s until find picks a transfer among those reported
// so far; missing says what was not seen.
func (s *sinkRecorder) await(t testing.TB, find func([]Transfer) (Transfer, bool), missing func() string) Transfer {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		tr, ok := find(s.transfers)
		s.mu.Unlock()
		if ok {
			return tr
		}
		select {
		case <-s.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal(missing())
		}
	}
}

func (s *sinkRecorder) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.transfers)
}

type testServer struct {
	*Server
	addr string // host:port to send requests to
	logs *logRecorder
	sink *sinkRecorder
	// cancel cancels Serve's context; stop also waits for Serve and
	// checks that it returned nil.
	cancel, stop func()
}

// startServer runs a Server on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	logs := &logRecorder{}
	sink := newSinkRecorder()
	s, err := New(cfg, slog.New(logs), sink)
	if err != nil {
		t.Fatal(err)
	}
	served := testenv.Serve(t, "Serve", 15*time.Second, s.Serve)
	<-s.Ready()
	if s.Addr() == nil {
		<-served.Done()
		t.Fatalf("Serve did not bind: %v", served.Err())
	}
	return &testServer{Server: s, addr: s.Addr().String(), logs: logs, sink: sink, cancel: served.Cancel, stop: served.Stop}
}

func (ts *testServer) port() int { return ts.Server.Addr().(*net.UDPAddr).Port }

// A minimal TFTP client on a raw socket, for what real clients will not
// send: odd options, malformed packets, a transfer paused half-way.

const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// request builds an RRQ or WRQ with options given as name, value pairs.
func request(op uint16, name, mode string, opts ...string) []byte {
	p := binary.BigEndian.AppendUint16(nil, op)
	for _, s := range append([]string{name, mode}, opts...) {
		p = append(p, s...)
		p = append(p, 0)
	}
	return p
}

func ack(block uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opACK), block)
}

// packet is one decoded reply.
type packet struct {
	op    uint16
	block uint16            // DATA
	data  []byte            // DATA
	code  uint16            // ERROR
	msg   string            // ERROR
	opts  map[string]string // OACK
	from  *net.UDPAddr
}

func decode(b []byte, from *net.UDPAddr) (packet, error) {
	if len(b) < 2 {
		return packet{}, fmt.Errorf("short packet %q", b)
	}
	p := packet{op: binary.BigEndian.Uint16(b), from: from}
	switch p.op {
	case opDATA:
		if len(b) < 4 {
			return p, fmt.Errorf("short DATA %q", b)
		}
		p.block = binary.BigEndian.Uint16(b[2:])
		p.data = slices.Clone(b[4:])
	case opERROR:
		if len(b) < 5 {
			return p, fmt.Errorf("short ERROR %q", b)
		}
		p.code = binary.BigEndian.Uint16(b[2:])
		p.msg = strings.TrimRight(string(b[4:]), "\x00")
	case opOACK:
		p.opts = map[string]string{}
		f := strings.Split(strings.TrimSuffix(string(b[2:]), "\x00"), "\x00")
		for i := 0; i+1 < len(f); i += 2 {
			p.opts[f[i]] = f[i+1]
		}
	default:
		return p, fmt.Errorf("unexpected opcode %d", p.op)
	}
	return p, nil
}

type rawClient struct {
	t    testing.TB
	conn *net.UDPConn
}

func newRawClient(t testing.TB) *rawClient {
	t.Helper()
	return newRawClientOn(t, "udp4", net.IPv4(127, 0, 0, 1))
}

func newRawClientOn(t testing.TB, network string, ip net.IP) *rawClient {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c}
}

func (c *rawClient) port() int { return c.conn.LocalAddr().(*net.UDPAddr).Port }

func (c *rawClient) send(to string, b []byte) {
	c.t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.WriteToUDP(b, ua); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next packet, or an error after wait.
func (c *rawClient) recv(wait time.Duration) (packet, error) {
	buf := make([]byte, 65536)
	if err := c.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return packet{}, err
	}
	n, from, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		return packet{}, err
	}
	return decode(buf[:n], from)
}

// fetchResult is what a raw lock-step download ends with.
type fetchResult struct {
	data []byte
	oack map[string]string // nil if the server sent no OACK
	err  *packet           // the ERROR that ended it, if any
}

// fetch sends an RRQ and follows the transfer to its end. blksize is what
// the client expects blocks to be (the OACK overrides it). pause, if not
// nil, runs once after block pauseAt arrived and before it is ACKed.
func (c *rawClient) fetch(server string, req []byte, pauseAt uint16, pause func()) (fetchResult, error) {
	c.t.Helper()
	c.send(server, req)
	var res fetchResult
	blksize := 512
	var peer *net.UDPAddr
	want := uint16(1)
	for {
		p, err := c.recv(5 * time.Second)
		if err != nil {
			return res, fmt.Errorf("waiting for block %d: %w", want, err)
		}
		if peer == nil {
			peer = p.from
		} else if p.from.Port != peer.Port {
			continue // a stray packet from another TID
		}
		switch p.op {
		case opERROR:
			res.err = &p
			return res, nil
		case opOACK:
			if want != 1 || res.oack != nil {
				return res, fmt.Errorf("OACK in the middle of the transfer")
			}
			res.oack = p.opts
			if v, ok := p.opts["blksize"]; ok {
				if blksize, err = strconv.Atoi(v); err != nil {
					return res, fmt.Errorf("OACK blksize %q: %w", v, err)
				}
			}
			c.send(peer.String(), ack(0))
		case opDATA:
			if p.block != want {
				continue // a resend of a block we have
			}
			if len(p.data) > blksize {
				return res, fmt.Errorf("block %d has %d bytes, blksize %d", p.block, len(p.data), blksize)
			}
			res.data = append(res.data, p.data...)
			if pause != nil && p.block == pauseAt {
				pause()
			}
			c.send(peer.String(), ack(p.block))
			if len(p.data) < blksize {
				return res, nil
			}
			want++
		}
	}
}

// expectSilence fails unless nothing arrives within wait.
func (c *rawClient) expectSilence(wait time.Duration) {
	c.t.Helper()
	p, err := c.recv(wait)
	if err == nil {
		c.t.Fatalf("got a reply %+v, want none", p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("recv: %v", err)
	}
}

func equalBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes sha256 %s, want %d bytes sha256 %s", what, len(got), sum(got)[:16], len(want), sum(want)[:16])
	}
}
