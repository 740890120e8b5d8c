package tftpd

import (
	"net/netip"
	"sync"
	"time"
)

// logLimiter lets through at most one log line per key per interval and
// counts the lines it held back, so that a client looping on a missing file
// (a PXE ROM retrying forever, or a flood) costs one line per interval
// instead of one per packet, and the line that does get out says how many
// were dropped.
//
// A key is a client address without port (a flood changes source port
// with each request) and the kind of failure, so that the not-found probes
// every pxelinux boot makes cannot hide, a few seconds later, the line
// about that client's kernel transfer failing. The table is bounded: when
// it is full, entries older than an interval are dropped, and if it is
// still full every new key shares one overflow key, so spoofed sources
// cannot grow it without end.
type logLimiter struct {
	interval time.Duration
	max      int
	mu       sync.Mutex
	now      func() time.Time // time.Now; tests replace it, under mu
	entries  map[limitKey]*limitEntry
}

type limitKey struct {
	client netip.Addr
	kind   string // e.g. the transfer outcome
}

type limitEntry struct {
	last       time.Time // when a line was last let through
	suppressed int       // lines held back since then
}

func newLogLimiter(interval time.Duration, max int) *logLimiter {
	return &logLimiter{
		interval: interval,
		max:      max,
		now:      time.Now,
		entries:  make(map[limitKey]*limitEntry),
	}
}

// allow reports whether a line about key may be logged now and, if so, how
// many lines about key were held back since the last one let through.
func (l *logLimiter) allow(key limitKey) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, found := l.entries[key]
	if !found {
		if len(l.entries) >= l.max {
			l.prune(now)
		}
		if len(l.entries) >= l.max {
			// The zero key has no valid address, so no real client
			// shares this overflow key.
			key = limitKey{}
			e, found = l.entries[key]
		}
		if !found {
			l.entries[key] = &limitEntry{last: now}
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

// prune drops entries whose interval has passed. Their held-back count is
// lost, which is the price of the bound.
func (l *logLimiter) prune(now time.Time) {
	for k, e := range l.entries {
		if now.Sub(e.last) >= l.interval {
			delete(l.entries, k)
		}
	}
}
