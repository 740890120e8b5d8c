package tftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// readBufSize is how much of the file one refill reads. The library asks
// for one block (512..65464 bytes) per Read; serving those from a 64 KiB
// buffer turns ~45 pread calls at blksize 1468 into one.
const readBufSize = 64 << 10

// bufPool recycles read buffers between transfers so that a boot storm of
// hundreds of transfers does not churn 64 KiB allocations. It lives in the
// Server, never at package level.
type bufPool struct{ p sync.Pool }

func newBufPool() *bufPool {
	return &bufPool{p: sync.Pool{New: func() any {
		b := make([]byte, readBufSize)
		return &b
	}}}
}

func (bp *bufPool) get() *[]byte  { return bp.p.Get().(*[]byte) }
func (bp *bufPool) put(b *[]byte) { bp.p.Put(b) }

// errShrank is returned when the file got shorter than its size at open
// time: sending the short file would give the client a truncated kernel
// that only fails later, at boot.
var errShrank = errors.New("file shrank while being sent")

// snapshotReader serves exactly size bytes of f, the size fstat gave when
// the file was opened (and that tsize announced). It reads with ReadAt on
// the one descriptor opened for the request, so a file replaced by rename
// or unlinked meanwhile is still sent whole as it was opened; a file grown
// in place is cut at the announced size; a file truncated in place fails
// the transfer (errShrank) instead of ending it early.
//
// It stops the transfer with ctx's error once ctx is done, checked at each
// refill, so that shutdown does not wait for a 64 MB image to finish.
type snapshotReader struct {
	ctx  context.Context
	f    io.ReaderAt
	size int64
	off  int64 // file offset of the next refill
	buf  []byte
	r, w int // unread bytes are buf[r:w]
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	if s.r == s.w {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf[s.r:s.w])
	s.r += n
	return n, nil
}

// Seek is how the library learns tsize: in octet mode it asks for the end
// (the size fstat gave at open) and rewinds; in netascii mode it wraps the
// reader in a converter that cannot seek, and leaves tsize out, since the
// converted size is not known in advance (tftpd-hpa does the same). It is
// only called before the first Read, but any position inside the snapshot
// works.
func (s *snapshotReader) Seek(offset int64, whence int) (int64, error) {
	pos := s.off - int64(s.w-s.r)
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += pos
	case io.SeekEnd:
		offset += s.size
	default:
		return pos, fmt.Errorf("seek: whence %d", whence)
	}
	if offset < 0 || offset > s.size {
		return pos, fmt.Errorf("seek to %d: outside 0..%d", offset, s.size)
	}
	if offset != pos {
		s.off = offset
		s.r, s.w = 0, 0
	}
	return offset, nil
}

func (s *snapshotReader) fill() error {
	if s.off >= s.size {
		return io.EOF
	}
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("transfer stopped at offset %d: %w", s.off, err)
	}
	want := min(int64(len(s.buf)), s.size-s.off)
	n, err := s.f.ReadAt(s.buf[:want], s.off)
	if int64(n) < want {
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("read at offset %d: got %d of %d bytes announced at open: %w", s.off, s.off+int64(n), s.size, errShrank)
		}
		return fmt.Errorf("read at offset %d: %w", s.off, err)
	}
	s.off += int64(n)
	s.r, s.w = 0, n
	return nil
}
