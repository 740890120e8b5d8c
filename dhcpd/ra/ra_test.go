package ra

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The responder's real test is dhcpd's TestInteropDirect: a client in a
// network namespace solicits and gets the empty RA, from a server started
// on a bridge without carrier.

func TestRunNoInterface(t *testing.T) {
	r := &Responder{Interface: "nbt-nosuch0"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, ErrNoInterface) {
		t.Errorf("Run = %v, want ErrNoInterface", err)
	}
}

func TestRunWaitsAndStops(t *testing.T) {
	// Loopback has no link-local address: Run waits, retrying, and
	// returns nil when the context ends.
	r := &Responder{Interface: "lo", Retry: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
