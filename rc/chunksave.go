package rc

import (
	"context"
	"io"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/ctxio"
	"github.com/orbit-lab/netboot/rc/proto"
)

// saveImage streams the disk to the appliance as chunked disk image
// c.Image (internal/chunkimg): cut into chunks hashed and compressed as
// they are read, zero chunks left out. The image's digest (its manifest's)
// follows in a trailer, and the appliance keeps the upload only if it
// matches and every chunk decodes to its hash.
func (r *rc) saveImage(ctx context.Context, c proto.Command, rep *reporter) proto.Report {
	disk, _, err := r.checkDisk(c.Disk)
	if err != nil {
		return failed("%v", err)
	}
	f, err := os.Open(disk)
	if err != nil {
		return failed("disk %s: %v", disk, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd) // works for block devices too
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return failed("disk %s: size: %v", disk, err)
	}
	var read, sent atomic.Int64
	rep.watch(func() proto.Progress { return proto.Progress{Done: read.Load(), Total: size, Written: sent.Load()} })
	rep.start(ctx)

	counted := func(w io.Writer) io.Writer { return countWriter{w, &sent} }
	_, sum, err := chunkimg.Upload(ctx, countRead(ctxio.Reader(ctx, f), &read), chunkimg.DefaultChunkSize, counted, func(ctx context.Context, body io.Reader, trailer http.Header) (proto.DiskImage, error) {
		return rep.c.putImage(ctx, c.Image, body, trailer)
	})
	if err != nil {
		return failed("saving %s as %s: %v", disk, c.Image, err)
	}
	final := proto.Progress{Done: read.Load(), Total: size, Written: sent.Load()}
	return proto.Report{State: proto.StateDone, Reply: proto.ReplyOK, SHA256: sum, Progress: &final}
}
