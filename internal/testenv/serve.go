package testenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Served is a Serve or Run that a test started in the background with
// Serve; it runs until Stop or the end of the test.
type Served struct {
	t      testing.TB
	name   string
	hung   time.Duration
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what serve returned, once done is closed
	once   sync.Once
}

// Serve runs serve in a goroutine on a context that Stop cancels, and
// stops it when t ends: a serve that returns an error after its cancel,
// or does not return within hung of it, fails t. name says what ran, for
// the failure message ("Serve", "rc.Run").
func Serve(t testing.TB, name string, hung time.Duration, serve func(ctx context.Context) error) *Served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Served{t: t, name: name, hung: hung, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = serve(ctx)
	}()
	t.Cleanup(s.Stop)
	return s
}

// Cancel cancels serve's context without waiting for it to return.
func (s *Served) Cancel() { s.cancel() }

// Done is closed once serve has returned, by itself or after a cancel; a
// test watching for an early return selects on it.
func (s *Served) Done() <-chan struct{} { return s.done }

// Err is what serve returned; call it only once Done is closed.
func (s *Served) Err() error { return s.err }

// Stop cancels serve and waits for it, failing t if it hangs or returns an
// error; later calls do nothing. It uses only t.Errorf, so any goroutine
// may call it.
func (s *Served) Stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
			if s.err != nil {
				s.t.Errorf("%s = %v after cancel, want nil", s.name, s.err)
			}
		case <-time.After(s.hung):
			s.t.Errorf("%s did not return within %v of its cancel", s.name, s.hung)
		}
	})
}
