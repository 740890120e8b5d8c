package rc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orbit-lab/netboot/rc/mcastrecv"
	"github.com/orbit-lab/netboot/rc/proto"
)

// mcastSource takes the frames of a LOAD_IMAGE from the command's
// multicast session, and over HTTP whatever the session could not bring:
// multicast that never reaches the node, a sender that went away (an
// appliance restart), frames that later failed verification.
type mcastSource struct {
	m        *proto.Multicast
	id       string // the node's HRN: the session knows it by it
	sizes    []int  // every chunk's frame size, the manifest's
	maxFrame int64  // the manifest's largest frame
	http     ChunkSource
	log      *slog.Logger
	tried    bool
}

// Fetch receives want from the session the first time; every later call
// (chunks that failed verification) and whatever the session left
// missing go over HTTP.
func (s *mcastSource) Fetch(ctx context.Context, want []int, out chan<- Frame) error {
	if s.tried || len(want) == 0 {
		return s.http.Fetch(ctx, want, out)
	}
	s.tried = true
	cfg, err := s.config(want)
	if err != nil {
		s.log.Warn("multicast: the command's session is unusable, fetching over HTTP", "err", err)
		return s.http.Fetch(ctx, want, out)
	}
	res, err := mcastrecv.Receive(ctx, cfg, func(i int, frame []byte) error {
		select {
		case out <- Frame{Index: i, Data: frame}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	switch {
	case err == nil:
		s.log.Info("multicast: every needed chunk received", "chunks", len(want), "datagrams", res.Stats.Datagrams,
			"duplicates", res.Stats.Duplicates, "forged", res.Stats.Forged)
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	// Whatever went wrong with the session (no multicast here, the sender
	// gone, a socket that would not join), HTTP brings the rest. Receive
	// says what is missing when it gave up on the session; after another
	// failure, everything is asked again (the loader drops repeats).
	missing := res.Missing
	if !errors.Is(err, mcastrecv.ErrNoMulticast) && !errors.Is(err, mcastrecv.ErrSenderLost) && !errors.Is(err, mcastrecv.ErrSessionEnded) {
		missing = want
	}
	s.log.Warn("multicast: fetching the rest over HTTP", "why", err, "missing", len(missing), "of", len(want))
	return s.http.Fetch(ctx, missing, out)
}

// config is the receiver's view of the command's session.
func (s *mcastSource) config(want []int) (mcastrecv.Config, error) {
	key, err := hex.DecodeString(s.m.Key)
	if err != nil {
		return mcastrecv.Config{}, fmt.Errorf("key: %w", err)
	}
	wait, err := time.ParseDuration(s.m.Fallback)
	if err != nil || wait <= 0 {
		return mcastrecv.Config{}, fmt.Errorf("fallback %q: not a positive duration", s.m.Fallback)
	}
	return mcastrecv.Config{
		Group: s.m.Group, Sender: s.m.Sender, Key: key, Session: s.m.Session, ID: s.id,
		Chunks: len(s.sizes), Need: want, NoData: wait, MaxFrame: int(s.maxFrame), FrameSizes: s.sizes, Log: s.log,
	}, nil
}
