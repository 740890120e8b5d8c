package rc

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// TestWriteAllSpans: writeAll copies everything and reports each write's
// span, the spans following each other from 0 to the end: the writeback
// a load starts covers the whole disk it wrote.
func TestWriteAllSpans(t *testing.T) {
	for _, size := range []int{0, 1, ioBlock - 1, ioBlock, 3*ioBlock + 7} {
		src := bytes.Repeat([]byte{0xa5}, size)
		var dst bytes.Buffer
		var written atomic.Int64
		var next int64
		n, err := writeAll(&dst, bytes.NewReader(src), &written, func(off, n int64) {
			if off != next || n <= 0 {
				t.Errorf("size %d: span at %d of %d bytes, want one at %d", size, off, n, next)
			}
			next = off + n
		})
		if err != nil || n != int64(size) || !bytes.Equal(dst.Bytes(), src) || written.Load() != int64(size) {
			t.Errorf("size %d: writeAll = %d, %v; copied %d bytes, written %d", size, n, err, dst.Len(), written.Load())
		}
		if next != int64(size) {
			t.Errorf("size %d: spans end at %d", size, next)
		}
	}
}
