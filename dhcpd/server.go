// Package dhcpd is netbootd's DHCP server for testbed nodes: a node in the
// inventory gets its control_ip, name and boot file; a MAC not in the
// inventory is ignored, or served from a pool when one is configured, and
// recorded so that an operator can list it. It serves one interface only,
// answers relayed requests by the relay's subnet, can run as a PXE
// ProxyDHCP beside another site's address server, and speeds up iPXE
// (option 175, and IPv6 router advertisements from package ra).
//
// Each request goes through one handler chain, wired in order in
// buildChain: validate, selectSubnet, identify, decide (RFC 2131),
// networkOptions, bootOptions, record; in proxy mode validate,
// selectSubnet, pxeOnly, identify, proxyDecide, bootOptions, record. A
// bounded pool of workers runs the chain; the database writes that do not
// decide the reply (boot events, discovered MACs) happen off the reply
// path, in batches.
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/dhcpd/ra"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/lograte"
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/internal/store"
)

// Nodes is the inventory lookup: NodeByMAC returns the node whose control
// MAC is mac, or an error wrapping store.ErrNotFound. It is asked once per
// request, on the reply path. netbootd hands in a *store.NodeFinder (one
// prepared query and a cache, on a database connection of its own).
type Nodes interface {
	NodeByMAC(ctx context.Context, mac string) (inventory.Node, error)
}

// Leases is the lease table of the pools, used only for pool clients
// (MACs not in the inventory, on a segment with a pool).
type Leases interface {
	OfferLease(ctx context.Context, r store.LeaseRequest) (store.Lease, error)
	BindLease(ctx context.Context, mac string, ip netip.Addr, now time.Time, lifetime time.Duration) (store.Lease, error)
	ReleaseLease(ctx context.Context, mac string, ip netip.Addr, now time.Time) error
	DeclineLease(ctx context.Context, mac string, ip netip.Addr, now time.Time, hold time.Duration) error
	LeaseByMAC(ctx context.Context, mac string) (store.Lease, error)
}

// Sightings receives the MACs not in the inventory that asked, merged and
// in batches, off the reply path (nbctl nodes discovered lists them).
type Sightings interface {
	RecordDiscovered(ctx context.Context, sightings []store.Sighting) error
}

// EventSink receives the boot events of known nodes, one per DHCP exchange
// (What: DHCPOFFER, DHCPACK, DHCPNAK, DHCPREQUEST (to another server),
// DHCPRELEASE, DHCPDECLINE; Source "dhcp"; Detail key=value pairs such as
// "ip=10.18.1.2 state=selecting file=pxelinux.0 arch=0 loader=bios ipxe=yes"), in
// batches, off the reply path.
type EventSink interface {
	AddEvents(ctx context.Context, events []store.Event) error
}

// Links is the boot-link lookup of the UEFI HTTP Boot path: LinkByHex
// returns the node's active link, or an error wrapping store.ErrNotFound.
// It is asked only for HTTP Boot clients in the inventory.
type Links interface {
	LinkByHex(ctx context.Context, hex string, now time.Time) (store.BootLink, error)
}

// Backend is what the server reads and writes, one role each. netbootd
// hands in a *store.NodeFinder as Nodes and its *store.Store as the rest.
type Backend struct {
	Nodes      Nodes     // required
	Leases     Leases    // required
	Discovered Sightings // required
	Events     EventSink // nil records no boot events
	Links      Links     // nil: UEFI HTTP Boot clients get no boot file
}

var (
	_ Nodes     = (*store.NodeFinder)(nil)
	_ Nodes     = (*store.Store)(nil)
	_ Leases    = (*store.Store)(nil)
	_ Sightings = (*store.Store)(nil)
	_ EventSink = (*store.Store)(nil)
	_ Links     = (*store.Store)(nil)
)

// Stats counts what the server did since it was made.
type Stats struct {
	Received      uint64 // datagrams read
	Malformed     uint64 // dropped: not a well-formed DHCP request from an Ethernet client
	Overload      uint64 // dropped: every worker busy and the queue full
	Ignored       uint64 // well-formed but not answered (for another server, not PXE in proxy mode, ...)
	Unknown       uint64 // from MACs not in the inventory, not served from a pool
	Errors        uint64 // failed (database, a node on the wrong segment, pool exhausted)
	Replies       uint64 // replies sent
	SendErrors    uint64 // replies the kernel refused
	EventsDropped uint64 // boot events or sightings not written (database too slow or failing)
	Panics        uint64 // requests whose handling panicked (a bug; logged, the server goes on)
}

type counters struct {
	received, malformed, overload, ignored, unknown, errors, replies, sendErrors, panics atomic.Uint64
}

// Server is a DHCP server on one interface.
type Server struct {
	cfg        Config
	nodes      Nodes
	leases     Leases
	links      Links // nil: no HTTP Boot URLs
	log        *slog.Logger
	ports      ports
	chain      []step
	rec        *recorder
	ra         *ra.Responder // nil without IPXEFast
	queue      int           // requests waiting for a worker, at most
	bufs       sync.Pool     // of *[]byte, maxDatagram+1 long: a reader fills one, a worker frees it
	stats      counters
	unknownLog *lograte.Limiter[string] // one line per unknown MAC per minute
	problemLog *lograte.Limiter[string] // one line per kind of problem per minute
}

// queueLen bounds the requests waiting for a worker.
const queueLen = 1024

// packetTimeout bounds the database work for one request.
const packetTimeout = 3 * time.Second

// maxDatagram is the largest request read; longer ones are malformed.
const maxDatagram = 4096

// New checks cfg and b and returns a server; Serve runs it.
func New(cfg Config, b Backend, log *slog.Logger) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("dhcpd: %w", err)
	}
	if b.Nodes == nil || b.Leases == nil || b.Discovered == nil {
		return nil, errors.New("dhcpd: no store (Backend needs Nodes, Leases and Discovered)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeServer
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.BootfileEFI == "" {
		cfg.BootfileEFI = cfg.Bootfile
	}
	p := ports{server: 67, client: 68}
	if cfg.Port != 0 {
		p = ports{server: cfg.Port, client: cfg.Port + 1}
	}
	s := &Server{
		cfg:        cfg,
		nodes:      b.Nodes,
		leases:     b.Leases,
		links:      b.Links,
		log:        log,
		ports:      p,
		rec:        newRecorder(b.Events, b.Discovered, log),
		queue:      queueLen,
		bufs:       sync.Pool{New: func() any { b := make([]byte, maxDatagram+1); return &b }},
		unknownLog: lograte.New(time.Minute, 4096, ""),
		problemLog: lograte.New(time.Minute, 1024, ""),
	}
	if cfg.IPXEFast {
		s.ra = &ra.Responder{Interface: cfg.Interface, Log: log.With("part", "ra")}
	}
	s.chain = s.buildChain()
	return s, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Received: c.received.Load(), Malformed: c.malformed.Load(), Overload: c.overload.Load(),
		Ignored: c.ignored.Load(), Unknown: c.unknown.Load(), Errors: c.errors.Load(),
		Replies: c.replies.Load(), SendErrors: c.sendErrors.Load(), EventsDropped: s.rec.dropped.Load(),
		Panics: c.panics.Load(),
	}
}

// count records what became of one request of message type mt, in Stats
// and in the metrics alike: outcome is metrics.Replied, metrics.NoReply or
// a metrics.Drop* reason.
func (s *Server) count(mt, outcome string) {
	c := &s.stats
	switch outcome {
	case metrics.Replied:
		c.replies.Add(1)
		s.cfg.Metrics.DHCPPacket(mt, outcome)
		return
	case metrics.NoReply:
		c.ignored.Add(1)
		s.cfg.Metrics.DHCPPacket(mt, outcome)
		return
	case metrics.DropMalformed:
		c.malformed.Add(1)
	case metrics.DropOverload:
		c.overload.Add(1)
	case metrics.DropSend:
		c.sendErrors.Add(1)
	case metrics.DropPanic:
		c.panics.Add(1)
	default:
		c.errors.Add(1)
	}
	s.cfg.Metrics.DHCPDrop(mt, outcome)
}

// boundConn is a socket Serve reads, and the port it is bound to.
type boundConn struct {
	conn  *net.UDPConn
	local int
}

type job struct {
	buf   *[]byte
	n     int
	src   netip.AddrPort
	conn  *net.UDPConn
	local int
}

// Serve binds to cfg.Interface (port 67, and 4011 in proxy mode) and
// serves until ctx is done; it returns nil after a clean shutdown. Call it
// once. A bind error (no such interface, port in use) is returned at once.
// With IPXEFast, the router-advertisement responder runs beside it; its
// troubles are logged and never stop the server.
func (s *Server) Serve(ctx context.Context) error {
	conns, err := s.listen(ctx)
	if err != nil {
		return err
	}
	s.checkServerIP()
	s.log.Info("dhcp server listening", "interface", s.cfg.Interface, "mode", string(s.cfg.Mode),
		"server_ip", s.cfg.ServerIP.String(), "subnet", s.cfg.Subnet.Prefix.String(), "pool", s.cfg.Subnet.Pool.String(),
		"relayed_subnets", len(s.cfg.Subnets), "workers", s.cfg.Workers, "ipxe_fast", s.cfg.IPXEFast)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	stopSide := s.startSide(ctx, runCtx)
	jobs := make(chan job, s.queue)
	workers := s.startWorkers(runCtx, jobs)
	readErr, readers := s.startReaders(runCtx, conns, jobs)

	select {
	case <-ctx.Done():
	case err = <-readErr:
	}
	// Wake the readers without closing the sockets, so that the workers
	// can still answer what was read; then close.
	stopRun()
	for _, b := range conns {
		// SetReadDeadline fails only on a closed socket, whose reader is gone.
		_ = b.conn.SetReadDeadline(time.Unix(1, 0))
	}
	readers.Wait()
	close(jobs)
	workers.Wait()
	closeConns(conns)
	stopSide()
	if err == nil {
		s.log.Info("dhcp server stopped", "interface", s.cfg.Interface)
	}
	return err
}

// listen checks that cfg.Interface exists and binds the server port on
// it, and the PXE boot port in proxy mode. On failure nothing stays bound.
func (s *Server) listen(ctx context.Context) ([]boundConn, error) {
	if _, err := net.InterfaceByName(s.cfg.Interface); err != nil {
		return nil, fmt.Errorf("dhcpd: interface %q: %w", s.cfg.Interface, err)
	}
	listenPorts := []int{s.ports.server}
	if s.cfg.Mode == ModeProxy {
		listenPorts = append(listenPorts, ProxyBootPort)
	}
	var conns []boundConn
	for _, port := range listenPorts {
		c, err := listenUDP(ctx, s.cfg.Interface, port)
		if err != nil {
			closeConns(conns)
			return nil, fmt.Errorf("dhcpd: interface %q port %d: %w", s.cfg.Interface, port, err)
		}
		conns = append(conns, boundConn{c, port})
	}
	return conns, nil
}

func closeConns(conns []boundConn) {
	for _, b := range conns {
		b.conn.Close()
	}
}

// startSide starts the recorder and, with IPXEFast, the RA responder,
// which stops with runCtx. The recorder stops only when the returned stop
// is called, after the workers, so that it writes what they record while
// draining; stop then waits for both.
func (s *Server) startSide(ctx, runCtx context.Context) (stop func()) {
	recCtx, stopRec := context.WithCancel(context.WithoutCancel(ctx))
	var side sync.WaitGroup
	side.Go(func() { s.rec.run(recCtx) })
	if s.ra != nil {
		side.Go(func() {
			if err := s.ra.Serve(runCtx); err != nil {
				s.log.Error("router advertisement responder stopped", "interface", s.cfg.Interface, "err", err)
			}
		})
	}
	return func() {
		stopRec()
		side.Wait()
	}
}

// startWorkers starts cfg.Workers goroutines answering jobs until it is
// closed. Requests read before the shutdown are still answered: their
// database work is bounded by packetTimeout, not cut short by runCtx.
func (s *Server) startWorkers(runCtx context.Context, jobs <-chan job) *sync.WaitGroup {
	workCtx := context.WithoutCancel(runCtx)
	var workers sync.WaitGroup
	for range s.cfg.Workers {
		workers.Go(func() {
			for j := range jobs {
				s.answer(workCtx, j)
				s.bufs.Put(j.buf)
			}
		})
	}
	return &workers
}

// startReaders starts one reader per socket; a read error while runCtx
// lasts comes out of the returned channel.
func (s *Server) startReaders(runCtx context.Context, conns []boundConn, jobs chan<- job) (<-chan error, *sync.WaitGroup) {
	readErr := make(chan error, len(conns))
	var readers sync.WaitGroup
	for _, b := range conns {
		readers.Go(func() {
			if err := s.read(runCtx, b, jobs); err != nil {
				readErr <- err
			}
		})
	}
	return readErr, &readers
}

// read queues what b receives for the workers until a read fails, which
// is no error once runCtx is done (Serve wakes the readers that way). With
// every worker busy and the queue full, a request is dropped at once.
func (s *Server) read(runCtx context.Context, b boundConn, jobs chan<- job) error {
	for {
		buf := s.bufs.Get().(*[]byte)
		n, src, err := b.conn.ReadFromUDPAddrPort(*buf)
		if err != nil {
			s.bufs.Put(buf)
			if runCtx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcpd: read on %q port %d: %w", s.cfg.Interface, b.local, err)
		}
		s.stats.received.Add(1)
		select {
		case jobs <- job{buf: buf, n: n, src: src, conn: b.conn, local: b.local}:
		default:
			s.bufs.Put(buf)
			s.count(metrics.Unparsed, metrics.DropOverload)
			if ok, held := s.problemLog.Allow("overload"); ok {
				s.log.Warn("dhcp requests dropped: all workers busy", "workers", s.cfg.Workers, "queue", s.queue, "held_back", held)
			}
		}
	}
}

// answer handles one datagram and sends the reply, if any.
func (s *Server) answer(ctx context.Context, j job) {
	ctx, cancel := context.WithTimeout(ctx, packetTimeout)
	defer cancel()
	out, dst, mt := s.serve(ctx, (*j.buf)[:j.n], j.src, j.local)
	if out == nil {
		return
	}
	if _, err := j.conn.WriteToUDPAddrPort(out, dst); err != nil {
		s.count(mt, metrics.DropSend)
		if ok, held := s.problemLog.Allow("send"); ok {
			s.log.Warn("sending a dhcp reply", "to", dst.String(), "err", err, "held_back", held)
		}
		return
	}
	s.count(mt, metrics.Replied)
}

// handle runs one datagram through the chain and returns the reply and
// where it goes, or nil. It never panics: a panic (a bug, or a packet the
// parser chokes on) is logged and counted.
func (s *Server) handle(ctx context.Context, pkt []byte, src netip.AddrPort, local int) (out []byte, dst netip.AddrPort) {
	out, dst, _ = s.serve(ctx, pkt, src, local)
	return out, dst
}

// serve is handle, which also returns the request's message type (the
// metrics' label; metrics.Unparsed before it is known). It counts the
// requests that get no reply; its caller counts the replies, once sent.
func (s *Server) serve(ctx context.Context, pkt []byte, src netip.AddrPort, local int) (out []byte, dst netip.AddrPort, mt string) {
	mt = metrics.Unparsed
	defer func() {
		if p := recover(); p != nil {
			s.count(mt, metrics.DropPanic)
			if ok, held := s.problemLog.Allow("panic"); ok {
				s.log.Error("panic handling a dhcp packet", "from", src.String(), "panic", fmt.Sprint(p), "held_back", held)
			}
			out = nil
		}
	}()
	if len(pkt) > maxDatagram {
		s.dropped(src, "", mt, malformed("datagram longer than %d bytes", maxDatagram))
		return nil, dst, mt
	}
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.dropped(src, "", mt, malformed("not a DHCP packet: %v", err))
		return nil, dst, mt
	}
	x := &exchange{req: req, mt: req.MessageType(), src: src, local: local, now: time.Now(), client: parseClient(req)}
	mt = x.mt.String()
	if len(req.ClientHWAddr) == 6 {
		x.mac = req.ClientHWAddr.String()
	}
	for _, st := range s.chain {
		stop, err := st(ctx, x)
		if err != nil {
			s.dropped(src, x.mac, mt, err)
			return nil, dst, mt
		}
		if stop {
			break
		}
	}
	if x.resp == nil {
		s.count(mt, metrics.NoReply)
		return nil, dst, mt
	}
	return x.resp.ToBytes(), replyDestination(req, x.resp.MessageType(), src, local, s.ports), mt
}

// dropped counts and logs (rate-limited) a request of message type mt
// that gets no reply.
func (s *Server) dropped(src netip.AddrPort, mac, mt string, err error) {
	var m malformedError
	var d dropError
	switch {
	case errors.As(err, &m):
		s.count(mt, metrics.DropMalformed)
		if ok, held := s.problemLog.Allow("malformed"); ok {
			s.log.Info("malformed dhcp packet dropped (logged once a minute)", "from", src.String(), "mac", mac, "err", err, "held_back", held)
		}
	case errors.As(err, &d):
		s.count(mt, metrics.NoReply)
		s.log.Debug("dhcp request not answered", "from", src.String(), "mac", mac, "why", err)
	default:
		s.count(mt, metrics.DropError)
		if ok, held := s.problemLog.Allow("error " + mac); ok {
			s.log.Warn("dhcp request failed (logged once a minute per MAC)", "from", src.String(), "mac", mac, "err", err, "held_back", held)
		}
	}
}

// checkServerIP warns when the interface does not carry server_ip: the
// replies then come from another address than the one they name.
func (s *Server) checkServerIP() {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && addr4(n.IP) == s.cfg.ServerIP {
			return
		}
	}
	s.log.Warn("the dhcp interface does not carry server_ip; clients will fetch boot files from server_ip all the same",
		"interface", s.cfg.Interface, "server_ip", s.cfg.ServerIP.String())
}
