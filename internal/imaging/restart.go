package imaging

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// The appliance may restart under a job (an upgrade, a crash and systemd's
// restart): its calls then fail for a few seconds, with nothing changed
// on it. The flow waits that out, up to restartWait, instead of failing
// the nodes and leaving their links set behind it.

// restartWait bounds how long the flow waits for an appliance that does
// not answer.
const restartWait = time.Minute

// unreached: the request never reached the appliance (nothing listens):
// any call, a POST too, may be sent again.
func unreached(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// cut: the request may have reached the appliance, which went away before
// it answered; only a call that does the same when sent twice (a GET,
// clearing a link) may be sent again.
func cut(err error) bool {
	return unreached(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// again calls f until it succeeds, fails otherwise than retryable says,
// restartWait has passed, or ctx is done; it returns f's last error.
func (r *runner) again(ctx context.Context, retryable func(error) bool, f func() error) error {
	deadline := time.Now().Add(restartWait)
	wait := min(r.job.Poll, 200*time.Millisecond)
	for {
		err := f()
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
