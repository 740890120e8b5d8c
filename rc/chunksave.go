package rc

import (
	"context"
	"errors"
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pr.Close() // ends the writer if the appliance answers early
	trailer := http.Header{proto.HeaderSHA256: nil}
	var sum string
	done := make(chan error, 1)
	go func() {
		var err error
		_, sum, err = chunkimg.Copy(countWriter{pw, &sent}, countRead(ctxio.Reader(ctx, f), &read), chunkimg.DefaultChunkSize)
		if err == nil {
			trailer.Set(proto.HeaderSHA256, sum) // before EOF: the client sends it then
		}
		pw.CloseWithError(err)
		done <- err
	}()
	img, err := rep.c.putImage(ctx, c.Image, pr, trailer)
	pr.Close()
	cerr := <-done
	switch {
	case cerr != nil && !errors.Is(cerr, io.ErrClosedPipe):
		return failed("saving %s as %s: reading the disk: %v; the stored image is unchanged", disk, c.Image, cerr)
	case err != nil:
		return failed("saving %s as %s: %v", disk, c.Image, err)
	case img.SHA256 != sum:
		return failed("saving %s as %s: the appliance stored sha256 %s, the RC sent %s", disk, c.Image, img.SHA256, sum)
	}
	final := proto.Progress{Done: read.Load(), Total: size, Written: sent.Load()}
	return proto.Report{State: proto.StateDone, Reply: proto.ReplyOK, SHA256: sum, Progress: &final}
}
