package testenv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps what Serve reports and the cleanups
// it registers, so a test can run them and read the failures.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestServe(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	for _, tc := range []struct {
		name     string
		serve    func(ctx context.Context) error
		stop     bool     // call Stop before the cleanup, which must then do nothing
		wantErrs []string // what t is told, in order
	}{
		{name: "nil after cancel", serve: func(ctx context.Context) error { <-ctx.Done(); return nil }},
		{name: "stopped twice", serve: func(ctx context.Context) error { <-ctx.Done(); return nil }, stop: true},
		{name: "error after cancel", serve: func(ctx context.Context) error { <-ctx.Done(); return errors.New("boom") },
			wantErrs: []string{"Serve = boom after cancel, want nil"}},
		{name: "error reported once", serve: func(ctx context.Context) error { <-ctx.Done(); return errors.New("boom") }, stop: true,
			wantErrs: []string{"Serve = boom after cancel, want nil"}},
		{name: "hung", serve: func(context.Context) error { <-release; return nil },
			wantErrs: []string{"Serve did not return within 10ms of its cancel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			s := Serve(r, "Serve", 10*time.Millisecond, tc.serve)
			if len(r.cleanups) != 1 {
				t.Fatalf("%d cleanups registered, want 1 (the Stop)", len(r.cleanups))
			}
			if tc.stop {
				s.Stop()
			}
			r.cleanups[0]()
			if !slices.Equal(r.errs, tc.wantErrs) {
				t.Errorf("failures %q, want %q", r.errs, tc.wantErrs)
			}
		})
	}
}

// TestServeDone: a serve that ends by itself closes Done, and Err says how
// it ended, so a test can tell an early return from a hang.
func TestServeDone(t *testing.T) {
	r := &recorder{TB: t}
	s := Serve(r, "Serve", time.Second, func(context.Context) error { return errors.New("bind: in use") })
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after serve returned")
	}
	if err := s.Err(); err == nil || err.Error() != "bind: in use" {
		t.Errorf("Err = %v, want bind: in use", err)
	}
}
