package rcbroker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/orbit-lab/netboot/am/mcastsend"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/metrics"
	"github.com/orbit-lab/netboot/rc/proto"
	"github.com/orbit-lab/netboot/rc/proto/mcast"
)

// Multicast configures the multicast sessions that send a chunked image
// once to every node loading it (netbootd's imaging section). The zero
// Groups turns them off: every node fetches its chunks over HTTP.
type Multicast struct {
	Groups              netip.Prefix // the range the sessions' groups come from
	PortFirst, PortLast uint16       // their UDP ports
	TTL                 int
	Rate                int64      // bits per second, all sessions together
	Source              netip.Addr // sent from, and where nodes report
	// Fallback is how long a node waits for the session's first datagram
	// before it fetches over HTTP.
	Fallback time.Duration
}

func (m Multicast) enabled() bool { return m.Groups.IsValid() }

// slots is how many sessions can run at once: each takes a group and a
// port of its own, so that no node ever hears two sessions on one socket.
func (m Multicast) slots() int {
	groups := 1 << min(16, m.Groups.Addr().BitLen()-m.Groups.Bits())
	return min(groups, int(m.PortLast)-int(m.PortFirst)+1)
}

// slot is session slot k's group.
func (m Multicast) slot(k int) netip.AddrPort {
	a := m.Groups.Addr().As4()
	n := binary.BigEndian.Uint32(a[:]) + uint32(k)
	binary.BigEndian.PutUint32(a[:], n)
	return netip.AddrPortFrom(netip.AddrFrom4(a), m.PortFirst+uint16(k))
}

// sessions runs the multicast sessions: one per image being loaded, which
// every node loading that image joins, late ones included. Its run loop
// owns them; polls ask it through joins.
type sessions struct {
	cfg     Multicast
	images  *imageStore
	log     *slog.Logger
	metrics *metrics.Metrics // nil-safe
	joins   chan joinRequest
	// pace is shared by every session: together they never send more
	// than imaging.rate, however many images are loading at once.
	pace *rate.Limiter
}

type joinRequest struct {
	image, sum, hrn string
	reply           chan joinReply
}

// key names the session of r's image: one per image and digest.
func (r joinRequest) key() string { return r.image + "\x00" + r.sum }

type joinReply struct {
	m   *proto.Multicast
	err error
}

// sessionLinger is how long a session whose nodes are all done stays open
// for more: the nodes of one `nbctl load` enroll, and so join, seconds
// apart, and a late one should cost its missing chunks, not the image.
const sessionLinger = 30 * time.Second

// nodeScanTime is how long a session waits for a node it registered to
// report: the node first hashes its whole disk (the delta), minutes for
// a large disk on spinning rust, and joins only then.
const nodeScanTime = 15 * time.Minute

// errNoSlot: every group and port is taken by a running session.
var errNoSlot = errors.New("every multicast group of imaging.multicast and imaging.port_range is in use")

// join adds node hrn to the session sending image (of digest sum),
// starting one if none runs. An error means: fetch over HTTP.
func (s *sessions) join(ctx context.Context, image, sum, hrn string) (*proto.Multicast, error) {
	req := joinRequest{image: image, sum: sum, hrn: hrn, reply: make(chan joinReply, 1)}
	select {
	case s.joins <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// live is a running session.
type live struct {
	key  string // image and digest
	slot int
	send *mcastsend.Session
	wire proto.Multicast
}

// run serves joins until ctx ends, then waits for the sessions to end.
func (s *sessions) run(ctx context.Context) {
	byImage := map[string]*live{}
	used := make([]bool, s.cfg.slots())
	ended := make(chan *live)
	running := 0
	for {
		select {
		case <-ctx.Done():
			for ; running > 0; running-- {
				<-ended
			}
			return
		case l := <-ended:
			running--
			used[l.slot] = false
			if byImage[l.key] == l {
				delete(byImage, l.key)
			}
		case req := <-s.joins:
			key := req.key()
			if l := byImage[key]; l != nil {
				if l.send.AddReceiver(req.hrn) {
					w := l.wire
					req.reply <- joinReply{m: &w}
					continue
				}
				// It is ending (its nodes done, its linger over): the node
				// gets a session of its own, in another slot until this
				// one's is free.
				delete(byImage, key)
			}
			slot := -1
			for k, u := range used {
				if !u {
					slot = k
					break
				}
			}
			if slot < 0 {
				req.reply <- joinReply{err: errNoSlot}
				continue
			}
			l, frames, err := s.start(req, slot)
			if err != nil {
				req.reply <- joinReply{err: err}
				continue
			}
			used[slot], byImage[key] = true, l
			running++
			s.metrics.ImagingSessionStarted()
			go func() {
				defer frames.Close()
				defer s.metrics.ImagingSessionEnded()
				err := l.send.Run(ctx)
				st := l.send.Stats()
				s.metrics.ImagingBytes("load", int64(st.Bytes))
				s.log.Info("imaging: multicast session over", "image", req.image, "group", l.wire.Group, "session", l.wire.Session,
					"rounds", st.Rounds, "bytes", st.Bytes, "datagrams", st.Datagrams, "rejected", st.Rejected, "err", err)
				ended <- l
			}()
			w := l.wire
			req.reply <- joinReply{m: &w}
		}
	}
}

// start opens a session for req's image in slot, with req's node as its
// first receiver.
func (s *sessions) start(req joinRequest, slot int) (*live, *os.File, error) {
	f, format, err := s.images.find(req.image)
	if err != nil {
		return nil, nil, err
	}
	frames, err := openFrames(f, format, req.sum)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	key := make([]byte, mcast.KeySize)
	id := make([]byte, 8)
	if _, err := rand.Read(key); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("rcbroker: multicast key: %w", err)
	}
	if _, err := rand.Read(id); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("rcbroker: multicast session: %w", err)
	}
	group := s.cfg.slot(slot)
	session := binary.BigEndian.Uint64(id)
	send, err := mcastsend.New(mcastsend.Config{
		Group: group.String(), Source: s.cfg.Source.String(), TTL: s.cfg.TTL, Rate: s.cfg.Rate, Limiter: s.pace,
		Key: key, Session: session, Linger: sessionLinger, IdleTimeout: nodeScanTime, Log: s.log.With("image", req.image, "group", group.String()),
	}, frames)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("rcbroker: multicast session for %s: %w", req.image, err)
	}
	send.AddReceiver(req.hrn) // a session not yet run takes it
	s.log.Info("imaging: multicast session", "image", req.image, "group", group, "sender", send.Addr(), "session", session,
		"chunks", frames.Count(), "rate", s.cfg.Rate)
	return &live{key: req.key(), slot: slot, send: send, wire: proto.Multicast{
		Group: group.String(), Sender: net.JoinHostPort(s.cfg.Source.String(), strconv.Itoa(send.Addr().Port)),
		Session: session, Key: hex.EncodeToString(key), Fallback: s.cfg.Fallback.String(),
	}}, f, nil
}

// imageFrames are a stored chunked image's frames, read as the session
// sends them.
type imageFrames struct {
	f *os.File
	m *chunkimg.Manifest
}

// openFrames reads the manifest of the chunked image open as f, which
// must still be the one of digest sum (the command names it).
func openFrames(f *os.File, format, sum string) (imageFrames, error) {
	if format != proto.FormatChunked {
		return imageFrames{}, fmt.Errorf("rcbroker: disk image %s is a single %s stream: only chunked images go by multicast", f.Name(), format)
	}
	fi, err := f.Stat()
	if err != nil {
		return imageFrames{}, fmt.Errorf("rcbroker: %w", err)
	}
	m, b, err := chunkimg.ReadManifest(f, fi.Size())
	if err != nil {
		return imageFrames{}, fmt.Errorf("rcbroker: %s: %w", f.Name(), err)
	}
	if got := chunkimg.Digest(b); got != sum {
		return imageFrames{}, fmt.Errorf("rcbroker: %s changed since the load was queued (sha256 %s, now %s)", f.Name(), sum, got)
	}
	return imageFrames{f: f, m: m}, nil
}

func (x imageFrames) Count() int { return len(x.m.Chunks) }

func (x imageFrames) Frame(i int) ([]byte, error) {
	c := x.m.Chunks[i]
	if c.Zero {
		return nil, nil
	}
	return chunkimg.Frame(x.f, c)
}
