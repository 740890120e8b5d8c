package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// epollClient is one event loop of the benchmark's client, on its own OS
// thread: one nonblocking UDP socket per transfer, one epoll set, and
// plain read and write system calls. It is a standard lock-step client (RFC 1350 with the
// blksize and tsize options of RFC 2348/2349: one DATA, one ACK), as a
// PXE ROM is.
//
// It exists because the pin/tftp client costs about as much CPU per byte
// as the server it measures (a goroutine park and wake-up, a deadline and
// an allocation per block): on a two-core machine that client is half of
// the load, so both servers' rates are capped by the client and their
// difference is flattened. This client needs a few system calls per block
// and nothing else; it is the same for both servers.
type epollClient struct {
	server  syscall.SockaddrInet4
	blksize int
	timeout time.Duration // per packet, then the last packet is sent again
	retries int
	epfd    int
	table   *crc32.Table
	byFD    map[int]*xfer
	buf     []byte
}

// xfer is one file being fetched.
type xfer struct {
	fd       int
	f        file
	peer     bool   // the server's transfer port is known and the socket connected to it
	want     uint16 // next DATA block expected
	blksize  int
	tsize    int64 // -1 until the OACK gives it
	n        int64
	h        hash.Hash32
	last     []byte // last packet sent, sent again on timeout
	deadline time.Time
	tries    int
	done     func(n int64, err error)
}

// runEpollClients has clients fetch files, each in order, and returns the
// bytes received and the failures. It returns when all are done or ctx is
// done. The clients are split over o.clientThreads event loops, each on
// its own OS thread: one thread alone would be a single point that every
// server's wake-ups preempt (tftpd-hpa's hundreds of processes more than
// netbootd's few threads), which a rack of separate machines is not.
func runEpollClients(ctx context.Context, addr string, clients int, files []file, o options) (int64, []error) {
	loops := max(1, min(o.clientThreads, clients))
	type out struct {
		n    int64
		errs []error
	}
	res := make(chan out, loops)
	for i := range loops {
		// Loop i gets clients i, i+loops, ...: an even split.
		k := (clients - i + loops - 1) / loops
		go func() {
			n, errs := runEpollLoop(ctx, addr, k, files, o)
			res <- out{n, errs}
		}()
	}
	var (
		n    int64
		errs []error
	)
	for range loops {
		r := <-res
		n += r.n
		errs = append(errs, r.errs...)
	}
	return n, errs
}

// runEpollLoop runs clients on the calling goroutine, locked to its
// thread.
func runEpollLoop(ctx context.Context, addr string, clients int, files []file, o options) (int64, []error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return 0, []error{err}
	}
	c := &epollClient{
		blksize: o.blksize,
		timeout: o.pktTime,
		retries: 5,
		table:   crc32.MakeTable(crc32.Castagnoli),
		byFD:    make(map[int]*xfer),
		buf:     make([]byte, 65536),
	}
	c.server.Port = ua.Port
	copy(c.server.Addr[:], ua.IP.To4())
	c.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return 0, []error{fmt.Errorf("epoll_create1: %w", err)}
	}
	defer syscall.Close(c.epfd)

	var (
		received int64
		errs     []error
		active   int
		stopped  bool // no new transfers once the loop is ending
	)
	// start begins file i of one client; when it ends, the next one starts.
	var start func(i int)
	start = func(i int) {
		if i == len(files) || stopped {
			return
		}
		active++
		f := files[i]
		err := c.begin(f, func(n int64, err error) {
			active--
			received += n
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			}
			start(i + 1)
		})
		if err != nil {
			active--
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			start(i + 1)
		}
	}
	for range clients {
		start(0)
	}

	events := make([]syscall.EpollEvent, 256)
	nextScan := time.Now()
	for active > 0 {
		n, err := syscall.EpollWait(c.epfd, events, 20)
		if errors.Is(err, syscall.EINTR) {
			n, err = 0, nil
		}
		if err != nil {
			err = fmt.Errorf("epoll_wait: %w", err)
		} else {
			err = ctx.Err()
		}
		if err != nil {
			stopped = true
			for _, x := range c.byFD {
				c.finish(x, err)
			}
			break
		}
		for _, ev := range events[:n] {
			if x := c.byFD[int(ev.Fd)]; x != nil {
				c.readable(x)
			}
		}
		// Timeouts are rare (none on a healthy loopback): scan for them
		// every 10 ms, not on every wake-up.
		if now := time.Now(); now.After(nextScan) {
			nextScan = now.Add(10 * time.Millisecond)
			for _, x := range c.byFD {
				if now.After(x.deadline) {
					c.expired(x)
				}
			}
		}
	}
	return received, errs
}

// begin opens a socket for f and sends the read request.
func (c *epollClient) begin(f file, done func(int64, error)) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("bind: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	if err := syscall.EpollCtl(c.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	x := &xfer{fd: fd, f: f, blksize: 512, tsize: -1, h: crc32.New(c.table), done: done}
	rrq := []byte{0, opRRQ}
	for _, s := range []string{f.name, "octet", "blksize", strconv.Itoa(c.blksize), "tsize", "0"} {
		rrq = append(append(rrq, s...), 0)
	}
	x.last = rrq
	c.byFD[fd] = x
	c.send(x)
	return nil
}

// send sends x.last: to the server's request port until the transfer port
// is known, then on the connected socket.
func (c *epollClient) send(x *xfer) {
	var err error
	if x.peer {
		_, err = syscall.Write(x.fd, x.last)
	} else {
		err = syscall.Sendto(x.fd, x.last, 0, &c.server)
	}
	// A failed send is retried by the timeout, like a lost packet.
	_ = err
	x.deadline = time.Now().Add(c.timeout)
}

func (c *epollClient) expired(x *xfer) {
	if x.tries >= c.retries {
		c.finish(x, fmt.Errorf("timeout waiting for block %d after %d bytes", x.want, x.n))
		return
	}
	x.tries++
	c.send(x)
}

// readable reads every datagram queued on x's socket.
func (c *epollClient) readable(x *xfer) {
	for c.byFD[x.fd] == x {
		var (
			n   int
			err error
		)
		if x.peer {
			n, err = syscall.Read(x.fd, c.buf)
		} else {
			var from syscall.Sockaddr
			n, from, err = syscall.Recvfrom(x.fd, c.buf, 0)
			if err == nil {
				// The first answer comes from the server's transfer port
				// (RFC 1350 TID): connect to it, so that the kernel drops
				// anything else from then on.
				if err := syscall.Connect(x.fd, from); err != nil {
					c.finish(x, fmt.Errorf("connect: %w", err))
					return
				}
				x.peer = true
			}
		}
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			return
		}
		if err != nil {
			c.finish(x, fmt.Errorf("read: %w", err))
			return
		}
		c.packet(x, c.buf[:n])
	}
}

func (c *epollClient) packet(x *xfer, p []byte) {
	if len(p) < 4 {
		return
	}
	switch binary.BigEndian.Uint16(p) {
	case opOACK:
		if x.want != 0 && x.n > 0 {
			return
		}
		if err := x.options(p[2:]); err != nil {
			c.finish(x, err)
			return
		}
		if x.tsize >= 0 && x.tsize != x.f.size {
			c.finish(x, fmt.Errorf("tsize %d, want %d", x.tsize, x.f.size))
			return
		}
		x.want = 1
		c.ack(x, 0)
	case opDATA:
		block := binary.BigEndian.Uint16(p[2:])
		if x.want == 0 {
			// No OACK: the server ignored the options (RFC 2347).
			x.want = 1
		}
		switch block {
		case x.want:
			data := p[4:]
			x.h.Write(data)
			x.n += int64(len(data))
			x.want++
			c.ack(x, block)
			if len(data) < x.blksize {
				if x.n != x.f.size || x.h.Sum32() != x.f.crc {
					c.finish(x, fmt.Errorf("got %d bytes crc %08x, want %d crc %08x", x.n, x.h.Sum32(), x.f.size, x.f.crc))
					return
				}
				c.finish(x, nil)
			}
		case x.want - 1:
			// The server did not get our ACK and sent the block again.
			c.ack(x, block)
		}
	case opERROR:
		msg := p[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		c.finish(x, fmt.Errorf("server error code=%d: %s", binary.BigEndian.Uint16(p[2:]), msg))
	}
}

func (c *epollClient) ack(x *xfer, block uint16) {
	if cap(x.last) < 4 {
		x.last = make([]byte, 4)
	}
	x.last = x.last[:4]
	binary.BigEndian.PutUint16(x.last, opACK)
	binary.BigEndian.PutUint16(x.last[2:], block)
	x.tries = 0
	c.send(x)
}

func (c *epollClient) finish(x *xfer, err error) {
	delete(c.byFD, x.fd)
	syscall.Close(x.fd) // also removes it from the epoll set
	x.done(x.n, err)
}

// options reads an OACK body: NUL-terminated name, value pairs.
func (x *xfer) options(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return errors.New("malformed OACK")
		}
		name := string(b[:i])
		b = b[i+1:]
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			return errors.New("malformed OACK")
		}
		value := string(b[:j])
		b = b[j+1:]
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("OACK option %s=%q: %w", name, value, err)
		}
		switch name {
		case "blksize":
			if n < 8 || n > 65464 {
				return fmt.Errorf("OACK blksize %d", n)
			}
			x.blksize = int(n)
		case "tsize":
			x.tsize = n
		}
	}
	return nil
}
