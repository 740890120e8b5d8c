package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// exchange is one request on its way through the handler chain, and the
// reply the chain builds. Steps read what earlier steps decided.
type exchange struct {
	req    *dhcpv4.DHCPv4
	mt     dhcpv4.MessageType
	src    netip.AddrPort // where the request came from
	local  int            // the port it came to (67, or 4011 in proxy mode)
	now    time.Time
	mac    string // chaddr, lower-case with colons
	client clientInfo

	subnet *Subnet         // the segment the client is on
	node   *inventory.Node // nil: not in the inventory
	pool   bool            // an unknown MAC served from subnet.Pool
	yiaddr netip.Addr      // the client's address in an OFFER or ACK
	resp   *dhcpv4.DHCPv4  // nil: no reply
	what   string          // the event: DHCPOFFER, DHCPACK, DHCPNAK, ...
	detail []string        // key=value pairs for the event and the log
	level  loudness        // how loud the summary line is
}

// loudness lets a step make the summary line louder than debug.
type loudness int

const (
	levelDebug loudness = iota
	levelInfo
	levelWarn
)

// note adds key=value pairs to the event detail; values with spaces are
// quoted.
func (x *exchange) note(kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if strings.ContainsAny(v, " \"=") {
			v = strconv.Quote(v)
		}
		x.detail = append(x.detail, kv[i]+"="+v)
	}
}

// step is one link of the handler chain. It reads the request and shapes
// x.resp; stop ends the chain early. An error drops the request and is
// logged (rate-limited) by the caller; a step that wants no reply and no
// error sets x.resp to nil or stops.
type step func(ctx context.Context, x *exchange) (stop bool, err error)

// dropError marks requests dropped on purpose: they are counted as ignored
// and logged at debug level only.
type dropError struct{ reason string }

func (e dropError) Error() string { return e.reason }

func drop(format string, args ...any) error { return dropError{fmt.Sprintf(format, args...)} }

// buildChain returns the steps for the configured mode, in order.
func (s *Server) buildChain() []step {
	if s.cfg.Mode == ModeProxy {
		return []step{s.validate, s.selectSubnet, s.pxeOnly, s.identify, s.proxyDecide, s.bootOptions, s.record}
	}
	return []step{s.validate, s.selectSubnet, s.identify, s.decide, s.networkOptions, s.bootOptions, s.record}
}

// validate drops what is not a DHCP request from an Ethernet client.
func (s *Server) validate(_ context.Context, x *exchange) (bool, error) {
	r := x.req
	switch {
	case r.OpCode != dhcpv4.OpcodeBootRequest:
		return true, drop("opcode %d is not BOOTREQUEST", r.OpCode)
	case r.HWType != 1 || len(r.ClientHWAddr) != 6:
		return true, malformed("hardware type %d, address length %d: want Ethernet", r.HWType, len(r.ClientHWAddr))
	case x.mt == dhcpv4.MessageTypeNone:
		return true, drop("no DHCP message type (BOOTP is not served)")
	case r.ClientHWAddr[0]&1 == 1 || isZero(r.ClientHWAddr):
		return true, malformed("client hardware address %s is not a unicast MAC", r.ClientHWAddr)
	}
	return false, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// malformedError marks requests that break the protocol; they are counted
// as malformed.
type malformedError struct{ reason string }

func (e malformedError) Error() string { return e.reason }

func malformed(format string, args ...any) error {
	return malformedError{fmt.Sprintf(format, args...)}
}

// selectSubnet finds the client's segment: the interface's own for a
// direct request, the one holding giaddr for a relayed one.
func (s *Server) selectSubnet(_ context.Context, x *exchange) (bool, error) {
	gi := addr4(x.req.GatewayIPAddr)
	if !gi.IsValid() || gi.IsUnspecified() {
		x.subnet = &s.cfg.Subnet
		return false, nil
	}
	for i := range s.cfg.Subnets {
		if s.cfg.Subnets[i].Prefix.Contains(gi) {
			x.subnet = &s.cfg.Subnets[i]
			x.note("relay", gi.String())
			return false, nil
		}
	}
	if s.cfg.Subnet.Prefix.Contains(gi) { // a relay on our own segment
		x.subnet = &s.cfg.Subnet
		x.note("relay", gi.String())
		return false, nil
	}
	return true, fmt.Errorf("relay %s: giaddr is in no configured subnet (dhcp.subnets)", gi)
}

// identify looks the MAC up in the inventory. An unknown MAC is recorded
// as discovered and then ignored, unless its segment has a pool.
func (s *Server) identify(ctx context.Context, x *exchange) (bool, error) {
	n, err := s.nodes.NodeByMAC(ctx, x.mac)
	switch {
	case err == nil:
		x.node = &n
		return false, nil
	case !errors.Is(err, store.ErrNotFound):
		return true, fmt.Errorf("inventory: %w", err)
	}
	s.rec.sighting(x)
	if s.cfg.Mode != ModeProxy && !x.subnet.Pool.IsZero() {
		x.pool = true
		return false, nil
	}
	s.stats.unknown.Add(1)
	if ok, held := s.unknownLog.Allow(x.mac); ok {
		s.log.Info("ignoring a MAC that is not in the inventory (logged once a minute per MAC; nbctl nodes discovered lists them)",
			"mac", x.mac, "type", x.mt.String(), "vendor_class", x.client.vendor, "held_back", held)
	}
	return true, nil
}

// decide is the RFC 2131 server: it picks the reply type and the address.
func (s *Server) decide(ctx context.Context, x *exchange) (bool, error) {
	switch x.mt {
	case dhcpv4.MessageTypeDiscover:
		return s.discover(ctx, x)
	case dhcpv4.MessageTypeRequest:
		return s.request(ctx, x)
	case dhcpv4.MessageTypeRelease:
		return s.release(ctx, x)
	case dhcpv4.MessageTypeDecline:
		return s.decline(ctx, x)
	case dhcpv4.MessageTypeInform:
		return s.inform(ctx, x)
	}
	return true, drop("message type %s is not for a server", x.mt)
}

// fixedAddress is a known node's reserved address, if it is on the
// client's segment.
func (s *Server) fixedAddress(x *exchange) (netip.Addr, error) {
	a, err := netip.ParseAddr(x.node.ControlIP)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("node %s: control_ip %q is not IPv4", x.node.HRN, x.node.ControlIP)
	}
	if !x.subnet.Prefix.Contains(a) {
		return netip.Addr{}, fmt.Errorf("node %s: control_ip %s is not in %s, the segment its request came from", x.node.HRN, a, x.subnet.Prefix)
	}
	return a, nil
}

// usable reports whether a pool client may have a: in the pool, and not the
// server, the router, or the subnet's network or broadcast address.
func (s *Server) usable(sn *Subnet, a netip.Addr) bool {
	if !sn.Pool.Contains(a) {
		return false
	}
	for _, x := range s.excluded(sn) {
		if a == x {
			return false
		}
	}
	return true
}

func (s *Server) excluded(sn *Subnet) []netip.Addr {
	ex := []netip.Addr{s.cfg.ServerIP, sn.Prefix.Masked().Addr(), lastAddr(sn.Prefix)}
	if sn.Router.IsValid() {
		ex = append(ex, sn.Router)
	}
	return ex
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// offerHold is how long a pool address stays held for an OFFER.
func (s *Server) offerHold() time.Duration { return min(2*time.Minute, s.cfg.LeaseTime) }

func (s *Server) discover(ctx context.Context, x *exchange) (bool, error) {
	if x.node != nil {
		a, err := s.fixedAddress(x)
		if err != nil {
			return true, err
		}
		x.offer(dhcpv4.MessageTypeOffer, a)
		return false, nil
	}
	want := addr4(x.req.RequestedIPAddress())
	l, err := s.leases.OfferLease(ctx, store.LeaseRequest{
		MAC: x.mac, First: x.subnet.Pool.First, Last: x.subnet.Pool.Last, Exclude: s.excluded(x.subnet),
		Want: want, Now: x.now, Hold: s.offerHold(),
	})
	if err != nil {
		return true, fmt.Errorf("pool: %w", err)
	}
	x.offer(dhcpv4.MessageTypeOffer, l.IP)
	return false, nil
}

// offer makes x an OFFER or ACK of a.
func (x *exchange) offer(mt dhcpv4.MessageType, a netip.Addr) {
	x.resp = newReply(x.req, mt)
	x.resp.YourIPAddr = ip4(a)
	x.yiaddr = a
	x.what = "DHCP" + mt.String()
	x.note("ip", a.String())
}

// nak makes x a NAK (RFC 2131 table 3: no addresses, no boot file; the
// broadcast bit set when it goes through a relay).
func (s *Server) nak(x *exchange, why string) {
	x.resp = newReply(x.req, dhcpv4.MessageTypeNak)
	x.resp.UpdateOption(dhcpv4.OptServerIdentifier(ip4(s.cfg.ServerIP)))
	x.resp.UpdateOption(dhcpv4.OptMessage(why))
	if gi := addr4(x.req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		x.resp.SetBroadcast()
	}
	x.what = "DHCPNAK"
	x.note("reason", why)
	x.level = levelInfo
}

// request handles the three kinds of DHCPREQUEST (RFC 2131 4.3.2).
func (s *Server) request(ctx context.Context, x *exchange) (bool, error) {
	sid := addr4(x.req.ServerIdentifier())
	want := addr4(x.req.RequestedIPAddress())
	ci := addr4(x.req.ClientIPAddr)
	var state string
	var asked netip.Addr
	switch {
	case sid.IsValid():
		state, asked = "selecting", want
		if sid != s.cfg.ServerIP {
			// The client took another server's offer. Free ours.
			if x.pool {
				if l, err := s.leases.LeaseByMAC(ctx, x.mac); err == nil && l.State == store.LeaseOffered {
					if err := s.leases.ReleaseLease(ctx, x.mac, l.IP, x.now); err != nil {
						return true, fmt.Errorf("pool: %w", err)
					}
				}
			}
			x.what = "DHCPREQUEST"
			x.note("server", sid.String(), "answer", "none")
			return false, nil
		}
		if !want.IsValid() {
			return true, malformed("REQUEST in SELECTING state without option 50")
		}
	case want.IsValid():
		state, asked = "init-reboot", want
	case ci.IsValid() && !ci.IsUnspecified():
		state, asked = "renewing", ci
	default:
		return true, malformed("REQUEST with no server identifier, requested address or ciaddr")
	}
	x.note("state", state)

	if x.node != nil {
		a, err := s.fixedAddress(x)
		if err != nil {
			return true, err
		}
		if asked != a {
			s.nak(x, fmt.Sprintf("address %s is not yours, %s is", asked, a))
			return false, nil
		}
		x.offer(dhcpv4.MessageTypeAck, a)
		return false, nil
	}

	// Pool client.
	if !x.subnet.Prefix.Contains(asked) {
		s.nak(x, fmt.Sprintf("address %s is not on this network", asked))
		return false, nil
	}
	if state == "init-reboot" {
		l, err := s.leases.LeaseByMAC(ctx, x.mac)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// RFC 2131: with no record of the client, stay silent.
			return true, drop("INIT-REBOOT of %s for %s: no lease on record", x.mac, asked)
		case err != nil:
			return true, fmt.Errorf("pool: %w", err)
		case l.IP != asked:
			s.nak(x, fmt.Sprintf("address %s is not yours", asked))
			return false, nil
		}
	}
	if !s.usable(x.subnet, asked) {
		s.nak(x, fmt.Sprintf("address %s is not in the pool", asked))
		return false, nil
	}
	l, err := s.leases.BindLease(ctx, x.mac, asked, x.now, s.cfg.LeaseTime)
	if errors.Is(err, store.ErrConflict) {
		s.nak(x, fmt.Sprintf("address %s is taken", asked))
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("pool: %w", err)
	}
	x.offer(dhcpv4.MessageTypeAck, l.IP)
	return false, nil
}

func (s *Server) release(ctx context.Context, x *exchange) (bool, error) {
	ci := addr4(x.req.ClientIPAddr)
	x.what = "DHCPRELEASE"
	x.note("ip", ci.String())
	if x.pool && ci.IsValid() {
		if err := s.leases.ReleaseLease(ctx, x.mac, ci, x.now); err != nil {
			return true, fmt.Errorf("pool: %w", err)
		}
	}
	return false, nil
}

func (s *Server) decline(ctx context.Context, x *exchange) (bool, error) {
	a := addr4(x.req.RequestedIPAddress())
	x.what = "DHCPDECLINE"
	x.note("ip", a.String())
	x.level = levelWarn
	if x.pool && a.IsValid() {
		if err := s.leases.DeclineLease(ctx, x.mac, a, x.now, s.cfg.LeaseTime); err != nil {
			return true, fmt.Errorf("pool: %w", err)
		}
	}
	if x.node != nil {
		x.note("problem", "another host uses the reserved address")
	}
	return false, nil
}

// inform answers DHCPINFORM: configuration only, no address and no lease
// time (RFC 2131 4.3.5).
func (s *Server) inform(_ context.Context, x *exchange) (bool, error) {
	ci := addr4(x.req.ClientIPAddr)
	if !ci.IsValid() || ci.IsUnspecified() {
		return true, malformed("INFORM without ciaddr")
	}
	x.resp = newReply(x.req, dhcpv4.MessageTypeAck)
	x.resp.ClientIPAddr = ip4(ci)
	x.what = "DHCPACK"
	x.note("inform", ci.String())
	return false, nil
}

// networkOptions adds the configuration options to an OFFER or ACK.
func (s *Server) networkOptions(_ context.Context, x *exchange) (bool, error) {
	if x.resp == nil || x.resp.MessageType() == dhcpv4.MessageTypeNak {
		return false, nil
	}
	r := x.resp
	r.UpdateOption(dhcpv4.OptServerIdentifier(ip4(s.cfg.ServerIP)))
	r.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(x.subnet.Prefix.Bits(), 32)))
	if x.subnet.Router.IsValid() {
		r.UpdateOption(dhcpv4.OptRouter(ip4(x.subnet.Router)))
	}
	if len(s.cfg.DNS) > 0 {
		dns := make([]net.IP, 0, len(s.cfg.DNS))
		for _, d := range s.cfg.DNS {
			dns = append(dns, ip4(d))
		}
		r.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	if x.node != nil {
		if h := hostnameFor(*x.node); h != "" {
			r.UpdateOption(dhcpv4.OptHostName(h))
		}
	}
	if d := domainFor(x.node, s.cfg.Domain); d != "" {
		r.UpdateOption(dhcpv4.OptDomainName(d))
	}
	if x.mt != dhcpv4.MessageTypeInform {
		r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime))
		r.UpdateOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime / 2))
		r.UpdateOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime * 7 / 8))
	}
	return false, nil
}

// bootOptions adds where to boot from: siaddr and option 66 are the server,
// the file field and option 67 the loader chooseLoader picks for this
// client (shim reads only the file field), option 60 "HTTPClient" for UEFI
// HTTP Boot, and iPXE clients get 175.176 = 1 (no ProxyDHCP wait). With no
// boot file for the client, a ProxyDHCP reply is not sent at all (it would
// carry nothing) and an address reply carries none.
func (s *Server) bootOptions(ctx context.Context, x *exchange) (bool, error) {
	if x.resp == nil || x.resp.MessageType() == dhcpv4.MessageTypeNak {
		return false, nil
	}
	lr := loaderRequest{client: x.client, hex: hexIP(x.clientAddr())}
	if x.node != nil {
		lr.override = x.node.Bootfile
	}
	if (x.client.http || isUEFIPXE(x.client.arch)) && x.node != nil && lr.hex != "" && s.links != nil {
		img, linked, err := s.linkedImage(ctx, lr.hex, x.now)
		if err != nil {
			return true, err
		}
		// Only HTTP Boot clients fetch efi/<image>.img.
		if x.client.http && img != "" && s.cfg.BootRoot != "" {
			if _, err := os.Stat(filepath.Join(s.cfg.BootRoot, filepath.FromSlash(img))); err != nil {
				x.note("missing", img)
				img = ""
			}
		}
		lr.httpFile, lr.unlinked = img, !linked
	}
	lc := s.cfg.chooseLoader(lr)
	r := x.resp
	if lc.httpClient {
		r.UpdateOption(dhcpv4.OptClassIdentifier(vendorHTTPClient))
	}
	if lc.file != "" {
		r.ServerIPAddr = ip4(s.cfg.ServerIP)
		r.BootFileName = lc.file
		r.UpdateOption(dhcpv4.OptTFTPServerName(s.cfg.ServerIP.String()))
		r.UpdateOption(dhcpv4.OptBootFileName(lc.file))
		x.note("file", lc.file)
	} else {
		x.note("file", "none")
	}
	if x.client.arch >= 0 {
		x.note("arch", fmt.Sprint(x.client.arch))
	}
	x.note("loader", lc.kind)
	if x.client.ipxe {
		x.note("ipxe", "yes")
		if s.cfg.IPXEFast {
			r.UpdateOption(dhcpv4.OptGeneric(optIPXE, []byte{ipxeNoPXEDHCP, 1, 1}))
		}
	}
	if lc.file == "" && s.cfg.Mode == ModeProxy {
		x.resp = nil // a ProxyDHCP reply without a boot file says nothing
		x.what = ""
	}
	return false, nil
}

// linkedImage says whether the node with this hex IP has a boot link and,
// if so, the file of tftp_root an HTTP Boot client boots: its linked
// image's RAM-disk image. s.links must not be nil.
func (s *Server) linkedImage(ctx context.Context, hex string, now time.Time) (string, bool, error) {
	l, err := s.links.LinkByHex(ctx, hex, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("boot link: %w", err)
	}
	return imagename.HTTPBootImage(l.Image), true, nil
}

// clientAddr is the client's address as far as this exchange knows it:
// the inventory's (also in proxy mode, where no address is given), the one
// offered, or ciaddr.
func (x *exchange) clientAddr() netip.Addr {
	if x.node != nil {
		if a, err := netip.ParseAddr(x.node.ControlIP); err == nil && a.Is4() {
			return a
		}
	}
	if x.yiaddr.IsValid() {
		return x.yiaddr
	}
	return addr4(x.req.ClientIPAddr)
}

// hexIP is pxelinux's name for an IPv4 address (10.18.1.2 -> 0A120102);
// "" for none.
func hexIP(a netip.Addr) string {
	if !a.Is4() || a.IsUnspecified() {
		return ""
	}
	b := a.As4()
	return fmt.Sprintf("%02X%02X%02X%02X", b[0], b[1], b[2], b[3])
}

// pxeOnly drops, in proxy mode, what does not come from a PXE client (the
// other hosts of the site, whose DHCP is none of the proxy's business, and
// which are not recorded as discovered either).
func (s *Server) pxeOnly(_ context.Context, x *exchange) (bool, error) {
	if !x.client.pxe && !x.client.http {
		return true, drop("proxy mode: not a PXE or HTTP Boot client (option 60 %q)", x.client.vendor)
	}
	return false, nil
}

// proxyDecide is the ProxyDHCP side of PXE: boot information for PXE
// clients, never an address. DISCOVER on 67 gets an OFFER; a REQUEST gets
// an ACK when it comes to the boot port (4011) or names this server.
func (s *Server) proxyDecide(_ context.Context, x *exchange) (bool, error) {
	var mt dhcpv4.MessageType
	switch {
	case x.mt == dhcpv4.MessageTypeDiscover && x.local != ProxyBootPort:
		mt = dhcpv4.MessageTypeOffer
	case x.mt == dhcpv4.MessageTypeRequest && x.local == ProxyBootPort:
		mt = dhcpv4.MessageTypeAck
	case x.mt == dhcpv4.MessageTypeRequest && addr4(x.req.ServerIdentifier()) == s.cfg.ServerIP:
		mt = dhcpv4.MessageTypeAck
	default:
		return true, drop("proxy mode: %s on port %d is for the address server", x.mt, x.local)
	}
	r := newReply(x.req, mt)
	if x.local == ProxyBootPort {
		r.ClientIPAddr = ip4(addr4(x.req.ClientIPAddr))
	}
	r.UpdateOption(dhcpv4.OptServerIdentifier(ip4(s.cfg.ServerIP)))
	r.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	// PXE_DISCOVERY_CONTROL = 8: no boot server discovery, boot the file
	// named here.
	r.UpdateOption(dhcpv4.OptGeneric(optPXEVendor, []byte{pxeDiscoveryCt, 1, 8, 255}))
	if v := x.req.Options.Get(optClientUUID); v != nil {
		r.UpdateOption(dhcpv4.OptGeneric(optClientUUID, v))
	}
	x.resp = r
	x.what = "DHCP" + mt.String()
	x.note("proxy", "yes")
	return false, nil
}

// record writes the exchange to the node's timeline (known MACs) or to the
// discovered table (pool clients), and logs it at debug level (louder for
// NAK and DECLINE).
func (s *Server) record(ctx context.Context, x *exchange) (bool, error) {
	if x.what == "" {
		return false, nil
	}
	detail := strings.Join(x.detail, " ")
	if x.node != nil {
		s.rec.event(store.Event{HRN: x.node.HRN, At: x.now, Source: "dhcp", What: x.what, Detail: detail})
	} else if x.yiaddr.IsValid() {
		s.rec.offered(x.mac, x.yiaddr)
	}
	level := slog.LevelDebug
	switch x.level {
	case levelWarn:
		level = slog.LevelWarn
	case levelInfo:
		level = slog.LevelInfo
	}
	if !s.log.Enabled(ctx, level) { // the common case: build no arguments
		return false, nil
	}
	args := []any{"mac", x.mac, "xid", x.req.TransactionID.String(), "request", x.mt.String(), "reply", x.what, "detail", detail}
	if x.node != nil {
		args = append(args, "node", x.node.HRN)
	}
	s.log.Log(ctx, level, "dhcp exchange", args...)
	return false, nil
}
