package chunkimg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/orbit-lab/netboot/rc/proto"
)

// Upload streams the raw disk read from src to the appliance as a chunked
// image of chunkSize chunks, made as it goes: put sends body (ending it
// early if the appliance answers first) with trailer, whose
// proto.HeaderSHA256 holds the image's digest by the body's end, as an
// HTTP client sends trailers then. wrap, if not nil, wraps the image's
// writer (to count what is sent). Upload returns the appliance's answer
// and the digest it sent; an error reading src says the stored image is
// unchanged, and an answer naming another digest is an error.
func Upload(ctx context.Context, src io.Reader, chunkSize int64, wrap func(io.Writer) io.Writer,
	put func(ctx context.Context, body io.Reader, trailer http.Header) (proto.DiskImage, error)) (proto.DiskImage, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pr.Close() // ends the writer if the appliance answers early
	trailer := http.Header{proto.HeaderSHA256: nil}
	var sum string
	done := make(chan error, 1)
	go func() {
		var dst io.Writer = pw
		if wrap != nil {
			dst = wrap(pw)
		}
		var err error
		_, sum, err = Copy(dst, src, chunkSize)
		if err == nil {
			trailer.Set(proto.HeaderSHA256, sum) // before EOF: the client sends it then
		}
		pw.CloseWithError(err)
		done <- err
	}()
	img, err := put(ctx, pr, trailer)
	pr.Close()
	cerr := <-done
	switch {
	case cerr != nil && !errors.Is(cerr, io.ErrClosedPipe):
		return img, "", fmt.Errorf("reading the disk: %w; the stored image is unchanged", cerr)
	case err != nil:
		return img, "", err
	case img.SHA256 != sum:
		return img, "", fmt.Errorf("the appliance stored sha256 %s, %s was sent", img.SHA256, sum)
	}
	return img, sum, nil
}
