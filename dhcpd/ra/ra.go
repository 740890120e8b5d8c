// Package ra answers IPv6 router solicitations with a router advertisement
// that says nothing: no prefix, no options, router lifetime 0, M=0 and
// O=0. iPXE waits about 13 s for an RA before it goes on with its DHCPv4
// results; any RA ends that wait, and one with M or O set makes it wait
// for DHCPv6 instead. Measured on QEMU's iPXE: every solicitation must be
// answered at once (an RA sent before the client listens is lost), and
// ff02::1 works as well as unicast, so every answer goes to ff02::1.
//
// A lifetime of 0 says "I am not a default router": hosts on the segment
// learn no route and no address from it.
package ra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

var (
	allNodes   = netip.MustParseAddr("ff02::1")
	allRouters = netip.MustParseAddr("ff02::2")
)

// Responder answers router solicitations on one interface.
type Responder struct {
	Interface string
	Log       *slog.Logger
	// Retry is the wait between attempts to open the interface while it
	// has no usable IPv6 link-local address (a bridge without carrier has
	// none; a new one is tentative for a second or two). 0 means 1 s.
	Retry time.Duration
	// MaxPerSecond bounds the advertisements sent, against a flood of
	// solicitations. 0 means 100.
	MaxPerSecond int

	answered atomic.Uint64
}

// Answered counts the advertisements sent.
func (r *Responder) Answered() uint64 { return r.answered.Load() }

// ErrNoInterface is returned by Serve when the interface does not exist.
var ErrNoInterface = errors.New("no such interface")

// Serve answers until ctx is done and returns nil then. While the interface
// has no usable link-local address it waits and retries, logging once, so
// a bridge whose ports come up later does not stop the caller. It returns
// an error only for an interface that does not exist.
func (r *Responder) Serve(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	retry := r.Retry
	if retry <= 0 {
		retry = time.Second
	}
	waiting := false
	for {
		c, src, err := r.open()
		if errors.Is(err, ErrNoInterface) {
			return err
		}
		if err != nil {
			if !waiting {
				log.Info("waiting for an IPv6 link-local address to answer router solicitations from (no carrier yet?)",
					"interface", r.Interface, "err", err)
				waiting = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retry):
			}
			continue
		}
		waiting = false
		log.Info("answering IPv6 router solicitations", "interface", r.Interface, "from", src.String())
		err = r.serve(ctx, c, log)
		c.Close()
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("router solicitation socket failed; reopening", "interface", r.Interface, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

// open binds an ICMPv6 socket to the interface's link-local address (the
// source an RA must have) and listens to ff02::2 for solicitations only.
func (r *Responder) open() (*ndp.Conn, netip.Addr, error) {
	ifi, err := net.InterfaceByName(r.Interface)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("ra: interface %q: %w: %w", r.Interface, ErrNoInterface, err)
	}
	c, src, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil { // no link-local yet, or a tentative one (bind fails)
		return nil, netip.Addr{}, fmt.Errorf("ra: interface %q: %w", r.Interface, err)
	}
	if err := c.JoinGroup(allRouters); err != nil {
		c.Close()
		return nil, netip.Addr{}, fmt.Errorf("ra: interface %q: join ff02::2: %w", r.Interface, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, netip.Addr{}, fmt.Errorf("ra: interface %q: icmp filter: %w", r.Interface, err)
	}
	return c, src, nil
}

// serve reads solicitations and answers each at once, until ctx is done
// (nil) or the socket fails (the error).
func (r *Responder) serve(ctx context.Context, c *ndp.Conn, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() {
		// A failed deadline leaves the read to end with the socket's close.
		_ = c.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()
	max := r.MaxPerSecond
	if max <= 0 {
		max = 100
	}
	var window time.Time
	sent := 0
	adv := &ndp.RouterAdvertisement{} // lifetime 0, M=0, O=0, no options
	for {
		m, _, from, err := c.ReadFrom()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if _, ok := m.(*ndp.RouterSolicitation); !ok {
			continue
		}
		now := time.Now()
		if now.Sub(window) >= time.Second {
			window, sent = now, 0
		}
		if sent >= max {
			continue
		}
		sent++
		if err := c.WriteTo(adv, nil, allNodes); err != nil {
			return fmt.Errorf("send RA: %w", err)
		}
		r.answered.Add(1)
		log.Debug("router solicitation answered", "from", from.String())
	}
}
