// Package tftpd is netbootd's read-only TFTP server for PXE boot files.
//
// It wraps github.com/pin/tftp/v3 (v3.1.0) and owns what that library
// leaves to its user: which names may be served (internal/bootpath's rule,
// shared with HTTP: a name never leaves Root, symlinks inside Root are
// followed), what the client is told when a request is refused, serving a
// file exactly as it was when opened, and logging every transfer without
// letting a misbehaving client flood the log.
//
// What the library decides, and this package cannot change without forking
// it:
//   - Options: blksize (RFC 2348) and tsize (RFC 2349) are negotiated;
//     tsize only in octet mode (in netascii the size on the wire is not
//     known in advance; tftpd-hpa also leaves it out). The timeout option
//     (RFC 2349) and windowsize (RFC 7440) are ignored, as RFC 2347
//     allows: they are left out of the OACK, so the client keeps its
//     defaults and the transfer runs in lock-step with Config.Timeout.
//     Option names are matched case-sensitively ("blksize", not
//     "BLKSIZE"), as the library does.
//   - blksize is granted as asked (512..65464) up to the MTU of the
//     interface the request arrived on, minus IP and UDP headers: 1472 on
//     a 1500-byte Ethernet for IPv4, so pxelinux (1408), iPXE (1432) and
//     UEFI (1468) get what they ask for. A larger request is answered with
//     that MTU limit, which the RFC permits and which avoids IP
//     fragmentation. The limit for IPv6 sockets is MTU-48, which would cut
//     UEFI's 1468 to 1452, so Serve binds an IPv4 socket unless Listen
//     names an IPv6 address.
//   - The library answers every refused request with TFTP error 1. For the
//     refusals that deserve another code (2, access violation: escapes,
//     malformed names, write requests), this package first sends the right
//     error itself from a fresh port; the client stops at that first ERROR
//     packet and ignores the library's error 1 that follows.
//   - Malformed packets (truncated, unknown opcode, unterminated strings,
//     stray DATA/ACK to the server port) are dropped by the library with no
//     reply and reach us without the sender's address, so they are logged
//     under one shared rate limit rather than per client.
//   - The library never logs through the global log package.
package tftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/orbit-lab/netboot/internal/bootpath"
	"github.com/orbit-lab/netboot/internal/lograte"
)

// Defaults for zero Config fields.
const (
	// DefaultTimeout is how long the server waits for an ACK before it
	// sends the block again. Boot ROMs answer within milliseconds; one
	// second is tftpd-hpa's default too.
	DefaultTimeout = time.Second
	// DefaultRetries is how many times a block is sent again before the
	// transfer is given up: with DefaultTimeout, after about 6 s of
	// silence from the client.
	DefaultRetries = 5
)

const (
	// maxBlockSize is the largest blksize RFC 2348 allows.
	maxBlockSize = 65464
	// logInterval is the shortest gap between two failure lines about one
	// client (or between two lines about malformed packets).
	logInterval = 10 * time.Second
	// limiterEntries bounds the per-client rate-limit table.
	limiterEntries = 4096
)

// Config configures a Server. The zero value of Timeout and Retries means
// the default.
type Config struct {
	// Listen is the UDP address to serve on, e.g. ":69". Empty means the
	// server is disabled: Serve returns nil at once.
	Listen string
	// Root is the directory served read-only (tftp_root). It is opened
	// again for each request, so pointing it at a symlink that is swapped
	// to a new tree takes effect for the next request.
	Root string
	// Timeout is the per-packet retransmit timeout; DefaultTimeout if 0.
	Timeout time.Duration
	// Retries is how often a block is sent again before the transfer is
	// given up; DefaultRetries if 0.
	Retries int
}

// Transfer is what the server knows about one finished (or failed) read
// request.
type Transfer struct {
	// Client is the address and port the request came from; an IPv4
	// client is always a plain IPv4 address, never IPv4-in-IPv6.
	Client netip.AddrPort
	// File is the requested name as resolved: relative to Root,
	// '/'-separated, without leading '/', '\' turned into '/'. A symlink
	// is not replaced by its target. For a name refused before it could be
	// resolved, it is the name as the client sent it.
	File string
	// Bytes is how many bytes of the file were handed to the client
	// (after netascii conversion, in that mode).
	Bytes int64
	// BlkSize is the negotiated block size (512 without the option); 0 for
	// a request refused before negotiation.
	BlkSize int
	// Duration runs from the request to the last ACK or the failure.
	Duration time.Duration
	// Unacked is how many datagrams (blocks, the OACK) no ACK answered in
	// time: on a finished transfer, each was sent again, a lost packet or
	// a client slower than tftp.timeout; on a failed one the last counts
	// too. The library's DatagramsSent - DatagramsAcked.
	Unacked int
	// Err is nil on success. Refusals wrap ErrNotFound or ErrAccess.
	Err error
}

// TransferSink receives every finished transfer; netbootd turns it into a
// boot event for the node whose control IP is Client's address.
type TransferSink interface {
	// TransferDone is called once per read request, from the goroutine
	// that served it, after the client has the last block (or, for a
	// refusal with error 1, before the library sends that error: it
	// should return quickly). ctx is the one given to Serve: it may be
	// done when a transfer is cut by shutdown.
	TransferDone(ctx context.Context, t Transfer)
}

// Server is a read-only TFTP server. Make it with New and run it with Serve.
type Server struct {
	cfg  Config
	log  *slog.Logger
	sink TransferSink
	bufs *bufPool

	clientLogs    *lograte.Limiter[limitKey] // failed requests, per client address and outcome
	malformedLogs *lograte.Limiter[limitKey] // dropped packets: the library does not say who sent them

	started atomic.Bool
	ready   chan struct{}
	addr    atomic.Pointer[net.UDPAddr]

	// inflight carries what only the library's hook learns (the
	// negotiated blksize) to the handler serving that transfer, keyed by
	// the client's address and port.
	mu       sync.Mutex
	inflight map[netip.AddrPort]*inflight
}

// limitKey is what failure lines are rate-limited by: the client address
// without port (a flood changes source port with each request) and the
// outcome, so that the not-found probes every pxelinux boot makes cannot
// hide, a few seconds later, the line about that client's kernel transfer
// failing. The zero key is the limiter's overflow key: no real client has
// the zero address.
type limitKey struct {
	client netip.Addr
	kind   string
}

type inflight struct {
	refs    int // a client that resends its RRQ gets two transfers on one key
	blksize int
	unacked int
}

// New checks cfg and returns a Server that is not yet listening. Root must
// be a readable directory, unless Listen is empty (disabled). log may be
// nil (nothing is logged); sink may be nil.
func New(cfg Config, log *slog.Logger, sink TransferSink) (*Server, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("tftpd: timeout %v: must not be negative", cfg.Timeout)
	}
	if cfg.Retries < 0 {
		return nil, fmt.Errorf("tftpd: retries %d: must not be negative", cfg.Retries)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Listen != "" {
		if err := bootpath.CheckRoot(cfg.Root); err != nil {
			return nil, fmt.Errorf("tftpd: root %q: %w", cfg.Root, err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:           cfg,
		log:           log,
		sink:          sink,
		bufs:          newBufPool(),
		clientLogs:    lograte.New(logInterval, limiterEntries, limitKey{}),
		malformedLogs: lograte.New(logInterval, 1, limitKey{}),
		ready:         make(chan struct{}),
		inflight:      make(map[netip.AddrPort]*inflight),
	}, nil
}

// Ready is closed once Serve has bound its socket (Addr is then valid), or
// has returned without binding (disabled, or the bind failed).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound UDP address once Ready is closed, nil before that or if
// Serve did not bind. Tests listen on "127.0.0.1:0" and read the port here.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return a
	}
	return nil
}

// Serve binds Config.Listen and serves until ctx is done; then it stops
// taking requests, cuts running transfers at their next 64 KiB read (a
// transfer waiting on a silent client gives up after Timeout*(Retries+1)
// at most), waits for them and returns nil. A bind error is returned at once. Serve
// may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("tftpd: Serve called twice")
	}
	if s.cfg.Listen == "" {
		close(s.ready)
		s.log.InfoContext(ctx, "tftp server disabled: no listen address")
		return nil
	}
	conn, err := listen(ctx, s.cfg.Listen)
	if err != nil {
		close(s.ready)
		return fmt.Errorf("tftpd: listen %s: %w", s.cfg.Listen, err)
	}
	laddr := conn.LocalAddr().(*net.UDPAddr)
	s.addr.Store(laddr)
	close(s.ready)

	srv := tftp.NewServer(
		func(name string, rf io.ReaderFrom) error { return s.serveRead(ctx, name, rf) },
		func(name string, wt io.WriterTo) error { return s.refuseWrite(ctx, name, wt) },
	)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBlockSize(maxBlockSize)
	// The library sleeps up to 1 s at random before each resend, on top of
	// the timeout. A lock-step transfer has one block in flight, so there
	// is no burst to spread: resend when the timeout fires.
	srv.SetBackoff(func(int) time.Duration { return 0 })
	srv.SetHook(hookFuncs{
		success: func(st tftp.TransferStats) { s.noteStats(st) },
		failure: func(st tftp.TransferStats, err error) {
			if st.RemoteAddr == nil {
				s.logDropped(ctx, err)
				return
			}
			s.noteStats(st)
		},
	})

	s.log.InfoContext(ctx, "tftp server listening", "addr", laddr.String(), "root", s.cfg.Root,
		"timeout", s.cfg.Timeout, "retries", s.cfg.Retries)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(conn) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		// Serve returns early only if it cannot use the socket.
		conn.Close()
		return fmt.Errorf("tftpd: serve %s: %w", laddr, err)
	}
	// Shutdown closes the socket and waits for running transfers, which
	// see ctx done at their next read.
	srv.Shutdown()
	if err := <-served; err != nil {
		return fmt.Errorf("tftpd: serve %s: %w", laddr, err)
	}
	s.log.InfoContext(ctx, "tftp server stopped", "addr", laddr.String())
	return nil
}

// listen binds an IPv4 socket unless addr names an IPv6 address. The
// library clamps blksize to MTU-48 on IPv6 sockets, and a dual-stack
// socket (":69" with plain "udp") is an IPv6 socket even for IPv4 clients:
// UEFI's 1468 would become 1452 on Ethernet.
func listen(ctx context.Context, addr string) (*net.UDPConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	network := "udp4"
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		if err := setPacketInfo(network, c); err != nil {
			return fmt.Errorf("set packet info option: %w", err)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// serveRead is the library's read handler: one call per RRQ, in its own
// goroutine. Its returned error's text is what the library sends the
// client in its (always code 1) ERROR packet.
func (s *Server) serveRead(ctx context.Context, name string, rf io.ReaderFrom) error {
	start := time.Now()
	ot := rf.(tftp.OutgoingTransfer)
	ra := ot.RemoteAddr()
	client := clientAddrPort(&ra)
	t := Transfer{Client: client, File: name}

	clean, err := bootpath.Clean(name)
	if err == nil {
		t.File = clean
		err = s.send(ctx, clean, client, rf, &t)
	}
	t.Err = err
	t.Duration = time.Since(start)
	if err == nil {
		s.finish(ctx, t)
		return nil
	}
	code, msg := codeOf(err)
	if t.BlkSize == 0 && code != errFileNotFound {
		// Refused before the library sent anything: tell the client the
		// right code, before the sink runs and before the library's code
		// 1 follows.
		s.sendError(ctx, rf, &ra, code, msg)
	}
	s.finish(ctx, t)
	return errors.New(msg)
}

// send opens clean under Root and hands it to the library. It fills in
// t.Bytes and t.BlkSize; BlkSize stays 0 if the file could not be opened.
func (s *Server) send(ctx context.Context, clean string, client netip.AddrPort, rf io.ReaderFrom, t *Transfer) error {
	f, fi, err := bootpath.Open(s.cfg.Root, clean)
	if err != nil {
		return err
	}
	defer f.Close()
	// tsize comes from the fstat of the descriptor that is sent, so it
	// matches what the client gets even if the path is replaced meanwhile.
	// SetSize(0) first replaces whatever the client put in its tsize
	// option ("lots", "123"), which the library would otherwise echo; with
	// "0" the library then asks the reader (snapshotReader.Seek) in octet
	// mode, and leaves tsize out in netascii mode, where the size on the
	// wire differs from fi.Size(). SetSize(fi.Size()) would announce the
	// wrong size in netascii.
	rf.(tftp.OutgoingTransfer).SetSize(0)

	s.track(client)
	buf := s.bufs.get()
	n, err := rf.ReadFrom(&snapshotReader{ctx: ctx, f: f, size: fi.Size(), buf: *buf})
	s.bufs.put(buf)
	t.Bytes = n
	t.BlkSize, t.Unacked = s.untrack(client)
	if err != nil {
		return fmt.Errorf("send %q: %w", clean, err)
	}
	return nil
}

// refuseWrite is the library's write handler: the root is read-only.
func (s *Server) refuseWrite(ctx context.Context, name string, wt io.WriterTo) error {
	ra := wt.(tftp.IncomingTransfer).RemoteAddr()
	client := clientAddrPort(&ra)
	if ok, suppressed := s.clientLogs.Allow(limitKey{client.Addr(), "write"}); ok {
		s.log.LogAttrs(ctx, slog.LevelWarn, "tftp write request refused",
			slog.String("client", client.String()), slog.String("file", name),
			slog.Int("suppressed", suppressed))
	}
	s.sendError(ctx, wt, &ra, errAccessViolation, msgAccessViolation)
	return errors.New(msgAccessViolation) //nolint:staticcheck // ST1005: the library sends this text to the client, as RFC 1350 words it
}

// finish logs t and reports it to the sink. Successes are always logged;
// failures at most once per client and outcome per logInterval, with a
// count of the lines held back.
func (s *Server) finish(ctx context.Context, t Transfer) {
	attrs := []slog.Attr{
		slog.String("client", t.Client.String()),
		slog.String("file", t.File),
		slog.Int64("bytes", t.Bytes),
		slog.Int("blksize", t.BlkSize),
		slog.Duration("duration", t.Duration),
		slog.String("outcome", outcome(t.Err)),
	}
	if t.Unacked > 0 {
		attrs = append(attrs, slog.Int("unacked", t.Unacked))
	}
	if t.Err == nil {
		s.log.LogAttrs(ctx, slog.LevelInfo, "tftp transfer", attrs...)
	} else if ok, suppressed := s.clientLogs.Allow(limitKey{t.Client.Addr(), outcome(t.Err)}); ok {
		attrs = append(attrs, slog.String("error", t.Err.Error()), slog.Int("suppressed", suppressed))
		s.log.LogAttrs(ctx, slog.LevelWarn, "tftp transfer failed", attrs...)
	}
	if s.sink != nil {
		s.sink.TransferDone(ctx, t)
	}
}

func (s *Server) logDropped(ctx context.Context, err error) {
	if ok, suppressed := s.malformedLogs.Allow(limitKey{kind: "malformed"}); ok {
		s.log.LogAttrs(ctx, slog.LevelWarn, "tftp packet dropped",
			slog.String("error", err.Error()), slog.Int("suppressed", suppressed))
	}
}

func (s *Server) track(client netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.inflight[client]
	if e == nil {
		e = &inflight{}
		s.inflight[client] = e
	}
	e.refs++
}

// untrack forgets client and returns the blksize the hook saw (512, the
// RFC 1350 size, if the hook saw nothing) and the datagrams it saw
// unacknowledged.
func (s *Server) untrack(client netip.AddrPort) (blksize, unacked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.inflight[client]
	if e == nil {
		return 512, 0
	}
	e.refs--
	if e.refs == 0 {
		delete(s.inflight, client)
	}
	if e.blksize == 0 {
		return 512, e.unacked
	}
	return e.blksize, e.unacked
}

// noteStats records the blksize the library negotiated and the datagrams
// no ACK answered. The hook runs
// inside ReadFrom, in the handler's goroutine, before untrack. Stats for
// requests we refused (and for write requests) find no entry.
func (s *Server) noteStats(st tftp.TransferStats) {
	ip, ok := netip.AddrFromSlice(st.RemoteAddr)
	if !ok || st.Tid < 0 || st.Tid > 0xffff {
		return
	}
	key := netip.AddrPortFrom(ip.Unmap(), uint16(st.Tid))
	blksize := 512
	if v, ok := st.Opts["blksize"]; ok {
		// The library leaves the client's string when it grants it as
		// asked, and has already dropped values it refused.
		if n, err := strconv.Atoi(v); err == nil {
			blksize = n
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.inflight[key]; e != nil {
		e.blksize, e.unacked = blksize, max(st.DatagramsSent-st.DatagramsAcked, 0)
	}
}

// hookFuncs adapts two closures to tftp.Hook, so that the hook can use
// Serve's ctx without storing it in the Server.
type hookFuncs struct {
	success func(tftp.TransferStats)
	failure func(tftp.TransferStats, error)
}

var _ tftp.Hook = hookFuncs{}

func (h hookFuncs) OnSuccess(st tftp.TransferStats)            { h.success(st) }
func (h hookFuncs) OnFailure(st tftp.TransferStats, err error) { h.failure(st, err) }

func clientAddrPort(a *net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
