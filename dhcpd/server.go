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
	"github.com/orbit-lab/netboot/internal/store"
)

// Store is what the server needs of the database. NodeByMAC returns an
// error wrapping store.ErrNotFound for a MAC not in the inventory; the
// lease methods are used only for pool clients.
type Store interface {
	NodeByMAC(ctx context.Context, mac string) (inventory.Node, error)
	OfferLease(ctx context.Context, r store.LeaseRequest) (store.Lease, error)
	BindLease(ctx context.Context, mac string, ip netip.Addr, now time.Time, lifetime time.Duration) (store.Lease, error)
	ReleaseLease(ctx context.Context, mac string, ip netip.Addr, now time.Time) error
	DeclineLease(ctx context.Context, mac string, ip netip.Addr, now time.Time, hold time.Duration) error
	LeaseByMAC(ctx context.Context, mac string) (store.Lease, error)
	RecordDiscovered(ctx context.Context, sightings []store.Sighting) error
}

// EventSink receives the boot events of known nodes, one per DHCP exchange
// (What: DHCPOFFER, DHCPACK, DHCPNAK, DHCPREQUEST (to another server),
// DHCPRELEASE, DHCPDECLINE; Source "dhcp"; Detail key=value pairs such as
// "ip=10.18.1.2 state=selecting file=pxelinux.0 arch=0 ipxe=yes"), in
// batches. *store.Store is one.
type EventSink interface {
	AddEvents(ctx context.Context, events []store.Event) error
}

// finderMaker is a Store that can prepare the per-request inventory lookup
// once (*store.Store can). Start uses it when the Store has it.
type finderMaker interface {
	NewNodeFinder(ctx context.Context) (*store.NodeFinder, error)
}

var (
	_ Store       = (*store.Store)(nil)
	_ EventSink   = (*store.Store)(nil)
	_ finderMaker = (*store.Store)(nil)
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
	st         Store
	log        *slog.Logger
	ports      ports
	chain      []step
	nodeByMAC  func(ctx context.Context, mac string) (inventory.Node, error) // st.NodeByMAC, or a NodeFinder's while serving
	rec        *recorder
	ra         *ra.Responder // nil without IPXEFast
	queue      int           // requests waiting for a worker, at most
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

// New checks cfg and returns a server; Start runs it. ev may be nil (no
// boot events).
func New(cfg Config, st Store, ev EventSink, log *slog.Logger) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("dhcpd: %w", err)
	}
	if st == nil {
		return nil, errors.New("dhcpd: no store")
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
		st:         st,
		log:        log,
		ports:      p,
		rec:        newRecorder(ev, st, log),
		queue:      queueLen,
		unknownLog: lograte.New(time.Minute, 4096, ""),
		problemLog: lograte.New(time.Minute, 1024, ""),
	}
	if cfg.IPXEFast {
		s.ra = &ra.Responder{Interface: cfg.Interface, Log: log.With("part", "ra")}
	}
	s.chain = s.buildChain()
	s.nodeByMAC = st.NodeByMAC
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

type job struct {
	buf   *[]byte
	n     int
	src   netip.AddrPort
	conn  *net.UDPConn
	local int
}

// Start binds to cfg.Interface (port 67, and 4011 in proxy mode) and
// serves until ctx is done; it returns nil after a clean shutdown. Call it
// once. A bind error (no such interface, port in use) is returned at once.
// With IPXEFast, the router-advertisement responder runs beside it; its
// troubles are logged and never stop the server.
func (s *Server) Start(ctx context.Context) error {
	if _, err := net.InterfaceByName(s.cfg.Interface); err != nil {
		return fmt.Errorf("dhcpd: interface %q: %w", s.cfg.Interface, err)
	}
	type bound struct {
		conn  *net.UDPConn
		local int
	}
	var conns []bound
	closeAll := func() {
		for _, b := range conns {
			b.conn.Close()
		}
	}
	listenPorts := []int{s.ports.server}
	if s.cfg.Mode == ModeProxy {
		listenPorts = append(listenPorts, ProxyBootPort)
	}
	for _, port := range listenPorts {
		c, err := listenUDP(ctx, s.cfg.Interface, port)
		if err != nil {
			closeAll()
			return fmt.Errorf("dhcpd: interface %q port %d: %w", s.cfg.Interface, port, err)
		}
		conns = append(conns, bound{c, port})
	}
	if fm, ok := s.st.(finderMaker); ok {
		f, err := fm.NewNodeFinder(ctx)
		if err != nil {
			closeAll()
			return fmt.Errorf("dhcpd: %w", err)
		}
		defer f.Close()
		s.nodeByMAC = f.NodeByMAC
		defer func() { s.nodeByMAC = s.st.NodeByMAC }()
	}
	s.checkServerIP()
	s.log.Info("dhcp server listening", "interface", s.cfg.Interface, "mode", string(s.cfg.Mode),
		"server_ip", s.cfg.ServerIP.String(), "subnet", s.cfg.Subnet.Prefix.String(), "pool", s.cfg.Subnet.Pool.String(),
		"relayed_subnets", len(s.cfg.Subnets), "workers", s.cfg.Workers, "ipxe_fast", s.cfg.IPXEFast)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()

	// The recorder stops after the workers, so that it writes what they
	// record while draining.
	recCtx, stopRec := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRec()
	var side sync.WaitGroup // recorder and RA responder
	side.Go(func() { s.rec.run(recCtx) })
	if s.ra != nil {
		side.Go(func() {
			if err := s.ra.Run(runCtx); err != nil {
				s.log.Error("router advertisement responder stopped", "interface", s.cfg.Interface, "err", err)
			}
		})
	}

	jobs := make(chan job, s.queue)
	bufs := sync.Pool{New: func() any { b := make([]byte, maxDatagram+1); return &b }}
	var workers sync.WaitGroup
	// Requests read before the shutdown are still answered: their database
	// work is bounded by packetTimeout, not cut short by ctx.
	workCtx := context.WithoutCancel(runCtx)
	for range s.cfg.Workers {
		workers.Go(func() {
			for j := range jobs {
				s.serve(workCtx, j)
				bufs.Put(j.buf)
			}
		})
	}

	readErr := make(chan error, len(conns))
	var readers sync.WaitGroup
	for _, b := range conns {
		readers.Go(func() {
			for {
				buf := bufs.Get().(*[]byte)
				n, src, err := b.conn.ReadFromUDPAddrPort(*buf)
				if err != nil {
					bufs.Put(buf)
					if runCtx.Err() == nil {
						readErr <- fmt.Errorf("dhcpd: read on %q port %d: %w", s.cfg.Interface, b.local, err)
					}
					return
				}
				s.stats.received.Add(1)
				select {
				case jobs <- job{buf: buf, n: n, src: src, conn: b.conn, local: b.local}:
				default:
					bufs.Put(buf)
					s.stats.overload.Add(1)
					if ok, held := s.problemLog.Allow("overload"); ok {
						s.log.Warn("dhcp requests dropped: all workers busy", "workers", s.cfg.Workers, "queue", s.queue, "held_back", held)
					}
				}
			}
		})
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-readErr:
	}
	// Wake the readers without closing the sockets, so that the workers
	// can still answer what was read; then close.
	stopRun()
	for _, b := range conns {
		b.conn.SetReadDeadline(time.Unix(1, 0))
	}
	readers.Wait()
	close(jobs)
	workers.Wait()
	closeAll()
	stopRec()
	side.Wait()
	if err == nil {
		s.log.Info("dhcp server stopped", "interface", s.cfg.Interface)
	}
	return err
}

// serve handles one datagram and sends the reply, if any.
func (s *Server) serve(ctx context.Context, j job) {
	ctx, cancel := context.WithTimeout(ctx, packetTimeout)
	defer cancel()
	out, dst := s.handle(ctx, (*j.buf)[:j.n], j.src, j.local)
	if out == nil {
		return
	}
	if _, err := j.conn.WriteToUDPAddrPort(out, dst); err != nil {
		s.stats.sendErrors.Add(1)
		if ok, held := s.problemLog.Allow("send"); ok {
			s.log.Warn("sending a dhcp reply", "to", dst.String(), "err", err, "held_back", held)
		}
		return
	}
	s.stats.replies.Add(1)
}

// handle runs one datagram through the chain and returns the reply and
// where it goes, or nil. It never panics: a panic (a bug, or a packet the
// parser chokes on) is logged and counted.
func (s *Server) handle(ctx context.Context, pkt []byte, src netip.AddrPort, local int) (out []byte, dst netip.AddrPort) {
	defer func() {
		if p := recover(); p != nil {
			s.stats.panics.Add(1)
			if ok, held := s.problemLog.Allow("panic"); ok {
				s.log.Error("panic handling a dhcp packet", "from", src.String(), "panic", fmt.Sprint(p), "held_back", held)
			}
			out = nil
		}
	}()
	if len(pkt) > maxDatagram {
		s.dropped(src, "", malformed("datagram longer than %d bytes", maxDatagram))
		return nil, dst
	}
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.dropped(src, "", malformed("not a DHCP packet: %v", err))
		return nil, dst
	}
	x := &exchange{req: req, mt: req.MessageType(), src: src, local: local, now: time.Now(), client: parseClient(req)}
	if len(req.ClientHWAddr) == 6 {
		x.mac = req.ClientHWAddr.String()
	}
	for _, st := range s.chain {
		stop, err := st(ctx, x)
		if err != nil {
			s.dropped(src, x.mac, err)
			return nil, dst
		}
		if stop {
			break
		}
	}
	if x.resp == nil {
		s.stats.ignored.Add(1)
		return nil, dst
	}
	return x.resp.ToBytes(), replyDestination(req, x.resp.MessageType(), src, local, s.ports)
}

// dropped counts and logs (rate-limited) a request that gets no reply.
func (s *Server) dropped(src netip.AddrPort, mac string, err error) {
	var m malformedError
	var d dropError
	switch {
	case errors.As(err, &m):
		s.stats.malformed.Add(1)
		if ok, held := s.problemLog.Allow("malformed"); ok {
			s.log.Info("malformed dhcp packet dropped (logged once a minute)", "from", src.String(), "mac", mac, "err", err, "held_back", held)
		}
	case errors.As(err, &d):
		s.stats.ignored.Add(1)
		s.log.Debug("dhcp request not answered", "from", src.String(), "mac", mac, "why", err)
	default:
		s.stats.errors.Add(1)
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
