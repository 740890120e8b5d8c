// Package lograte keeps a misbehaving peer from flooding the log: at most
// one line per key per interval, and the line that gets out says how many
// were held back. A PXE ROM retrying forever, or a flood of bad packets,
// costs one line per interval instead of one per packet.
package lograte

import (
	"sync"
	"time"
)

// Limiter is safe for concurrent use. Its table is bounded: when full,
// entries older than an interval go, and if it is still full every new key
// shares one overflow entry, so a flood of made-up sources cannot grow it
// without end.
type Limiter[K comparable] struct {
	interval time.Duration
	max      int
	overflow K // shared by new keys while the table is full; no real key
	now      func() time.Time

	mu      sync.Mutex
	entries map[K]*entry
}

type entry struct {
	last       time.Time // when a line was last let through
	suppressed int       // lines held back since then
}

// New returns a Limiter of at most max keys; overflow must be a key that no
// real source has (the zero value usually is).
func New[K comparable](interval time.Duration, max int, overflow K) *Limiter[K] {
	return &Limiter[K]{interval: interval, max: max, overflow: overflow, now: time.Now, entries: map[K]*entry{}}
}

// SetClock replaces time.Now, so a test can move time.
func (l *Limiter[K]) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// Allow reports whether a line about key may be logged now and, if so, how
// many lines about key were held back since the last one let through.
func (l *Limiter[K]) Allow(key K) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, found := l.entries[key]
	if !found {
		if len(l.entries) >= l.max {
			l.prune(now)
		}
		if len(l.entries) >= l.max {
			key = l.overflow
			e, found = l.entries[key]
		}
		if !found {
			l.entries[key] = &entry{last: now}
			return true, 0
		}
	}
	if now.Sub(e.last) < l.interval {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}

// prune drops entries whose interval has passed; their held-back counts
// are lost, the price of the bound.
func (l *Limiter[K]) prune(now time.Time) {
	for k, e := range l.entries {
		if now.Sub(e.last) >= l.interval {
			delete(l.entries, k)
		}
	}
}
