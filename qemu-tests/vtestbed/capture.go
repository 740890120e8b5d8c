package vtestbed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/internal/netns"
	"golang.org/x/sys/unix"
)

// Capture records what crosses a node's tap: the DHCP replies it gets, the
// boot files it asks for (TFTP read requests, HTTP request lines) and the
// packets of every transfer, each with the kernel's time of arrival. It is
// the same measure whatever server answers, where the servers' own logs
// differ (netbootd writes a TFTP event when a transfer ends, dnsmasq logs
// it then, an HTTP server when it starts).
type Capture struct {
	fd     int
	node   Node
	done   chan struct{}
	stop   chan struct{}
	stopAt time.Time // set before stop is closed

	mu   sync.Mutex
	pkts []Packet
	err  error
}

// Packet is one IPv4 UDP or TCP packet to or from the node.
type Packet struct {
	At       time.Time
	FromNode bool
	TCP      bool
	NodePort uint16 // the node's side of the flow
	PeerPort uint16
	Payload  int // bytes of UDP or TCP payload
	// DHCP is the DHCP message type (option 53) of a BOOTP packet, 0 if none.
	DHCP byte
	// Request is the file a TFTP read request (RRQ) names, or an HTTP
	// request's path; "" for other packets.
	Request string
}

// captureSnap is how much of each frame is read: the headers, a TFTP
// RRQ's file name, an HTTP request line, a DHCP reply's first options.
const captureSnap = 600

// Capture starts recording node n's tap; Stop ends it. t's cleanup of
// the testbed runs after the caller's, so stop it first.
func (tb *Testbed) Capture(n Node) (*Capture, error) {
	tn, ok := tb.node(n.HRN)
	if !ok {
		return nil, fmt.Errorf("capture: %s is not a node of the testbed", n.HRN)
	}
	var fd int
	err := netns.Do(tb.Netns.Name, func() error {
		ifc, err := net.InterfaceByName(tn.Tap)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		err = errors.Join(
			unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}),
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
			// A lock-step transfer is some 20,000 packets; the reader may be
			// descheduled on a loaded machine, the kernel keeps them meanwhile.
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20),
			// Stop is seen within this.
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000}))
		if err != nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", tn.Tap, err)
	}
	c := &Capture{fd: fd, node: tn, done: make(chan struct{}), stop: make(chan struct{})}
	go c.read()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read() {
	defer close(c.done)
	defer unix.Close(c.fd)
	// A packet the kernel dropped (the reader fell behind) could be a
	// file's last: then the capture is no measure.
	defer func() {
		st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case c.err != nil:
		case err != nil:
			c.err = fmt.Errorf("capture statistics: %w", err)
		case st.Drops > 0:
			c.err = fmt.Errorf("capture: the kernel dropped %d of %d packets (the reader fell behind)", st.Drops, st.Packets)
		}
	}()
	mac, _ := net.ParseMAC(c.node.MAC)
	buf := make([]byte, captureSnap)
	oob := make([]byte, 128)
	flags := unix.MSG_TRUNC
	for {
		// After Stop, what the kernel has queued until then is still read:
		// the last packets may have come just before.
		select {
		case <-c.stop:
			flags |= unix.MSG_DONTWAIT
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, flags)
		if errors.Is(err, unix.EAGAIN) && flags&unix.MSG_DONTWAIT != 0 {
			return // all read
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // SO_RCVTIMEO: look at stop again
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		at := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
					nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
					at = time.Unix(sec, nsec)
				}
			}
		}
		if flags&unix.MSG_DONTWAIT != 0 && at.After(c.stopAt) {
			return // came after Stop
		}
		p, ok := ParseFrame(buf[:min(n, len(buf))], mac)
		if !ok {
			continue
		}
		p.At = at
		c.mu.Lock()
		c.pkts = append(c.pkts, p)
		c.mu.Unlock()
	}
}

// Stop ends the capture and returns its packets, or the error that ended
// it early or the packets the kernel dropped.
func (c *Capture) Stop() ([]Packet, error) {
	select {
	case <-c.stop:
	default:
		c.stopAt = time.Now()
		close(c.stop)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pkts, c.err
}

// ParseFrame reads an Ethernet frame (possibly cut short after the
// headers) to or from the node whose MAC is mac: IPv4 UDP or TCP only.
func ParseFrame(f []byte, mac net.HardwareAddr) (Packet, bool) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return Packet{}, false
	}
	var p Packet
	switch {
	case bytes.Equal(f[6:12], mac):
		p.FromNode = true
	case bytes.Equal(f[0:6], mac), bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}):
	default:
		return Packet{}, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ip[0]>>4 != 4 || ihl < 20 || total < ihl || len(ip) < ihl+8 {
		return Packet{}, false
	}
	l4 := ip[ihl:]
	src, dst := binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	p.NodePort, p.PeerPort = dst, src
	if p.FromNode {
		p.NodePort, p.PeerPort = src, dst
	}
	var payload []byte
	switch ip[9] {
	case unix.IPPROTO_UDP:
		p.Payload = total - ihl - 8
		payload = l4[8:]
	case unix.IPPROTO_TCP:
		if len(l4) < 20 {
			return Packet{}, false
		}
		off := int(l4[12]>>4) * 4
		p.TCP = true
		p.Payload = total - ihl - off
		if off <= len(l4) {
			payload = l4[off:]
		}
	default:
		return Packet{}, false
	}
	if p.Payload < 0 {
		return Packet{}, false
	}
	payload = payload[:min(len(payload), p.Payload)]
	switch {
	case !p.TCP && (src == 67 || src == 68) && (dst == 67 || dst == 68):
		p.DHCP = dhcpType(payload)
	case !p.TCP && p.FromNode && dst == 69 && len(payload) > 2 && payload[1] == 1: // RRQ
		if i := bytes.IndexByte(payload[2:], 0); i > 0 {
			p.Request = string(payload[2 : 2+i])
		}
	case p.TCP && p.FromNode:
		p.Request = httpPath(payload)
	}
	return p, true
}

// dhcpType is option 53 of a BOOTP message, 0 if it is not found in b.
func dhcpType(b []byte) byte {
	const opts = 236 + 4 // the fixed header, the magic cookie
	if len(b) < opts || !bytes.Equal(b[236:240], []byte{99, 130, 83, 99}) {
		return 0
	}
	for i := opts; i < len(b); {
		switch code := b[i]; code {
		case 0:
			i++
			continue
		case 255:
			return 0
		}
		if i+1 >= len(b) || i+2+int(b[i+1]) > len(b) {
			return 0
		}
		if b[i] == 53 && b[i+1] == 1 {
			return b[i+2]
		}
		i += 2 + int(b[i+1])
	}
	return 0
}

// httpPath is the path of an HTTP/1 request line starting b (GET or HEAD),
// "" if b does not start one.
func httpPath(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\r\n"))
	f := strings.Fields(string(line))
	if len(f) != 3 || (f[0] != "GET" && f[0] != "HEAD") || !strings.HasPrefix(f[2], "HTTP/") {
		return ""
	}
	return f[1]
}

// DHCP message types.
const (
	DHCPOffer = 2
	DHCPAck   = 5
)

// Fetch is one boot file the node asked for: the first request naming it
// and the last payload the server sent it on the flow of the last such
// request, before the next request on that flow (HTTP keeps one
// connection for several files).
type Fetch struct {
	File        string
	Requested   time.Time
	Done        time.Time // zero if nothing came back
	Requests    int
	LastRequest time.Time
}

// Fetches returns the node's boot-file fetches in pkts, keyed by the name
// it asked for (a TFTP file, an HTTP path), and the names in the order of
// their first request.
func Fetches(pkts []Packet) (map[string]*Fetch, []string) {
	type flow struct {
		tcp  bool
		port uint16
	}
	current := map[flow]*Fetch{} // the last request on each flow
	fs := map[string]*Fetch{}
	var order []string
	for _, p := range pkts {
		fl := flow{p.TCP, p.NodePort}
		switch {
		case p.Request != "":
			f, ok := fs[p.Request]
			if !ok {
				f = &Fetch{File: p.Request, Requested: p.At}
				fs[p.Request] = f
				order = append(order, p.Request)
			}
			f.Requests++
			f.LastRequest = p.At
			f.Done = time.Time{} // the file counts from its last request on
			current[fl] = f
		case !p.FromNode && p.Payload > 0 && p.DHCP == 0:
			if f := current[fl]; f != nil {
				f.Done = p.At
			}
		}
	}
	return fs, order
}

// FirstDHCP is when the node was first sent a DHCP message of type typ,
// zero if never.
func FirstDHCP(pkts []Packet, typ byte) time.Time {
	for _, p := range pkts {
		if !p.FromNode && p.DHCP == typ {
			return p.At
		}
	}
	return time.Time{}
}
