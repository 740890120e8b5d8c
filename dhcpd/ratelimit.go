package dhcpd

import (
	"sync"
	"time"
)

// logLimiter lets through at most one log line per key per interval and
// counts the lines it held back, so that a client retrying forever (a PXE
// ROM of a node not in the inventory) or a flood of bad packets costs one
// line per interval, and the line that gets out says how many were held.
//
// The table is bounded: when full, entries older than an interval go, and
// if it is still full every new key shares one overflow entry, so a flood
// of made-up MACs cannot grow it without end.
type logLimiter struct {
	interval time.Duration
	max      int
	mu       sync.Mutex
	now      func() time.Time // time.Now; tests replace it
	entries  map[string]*limitEntry
}

type limitEntry struct {
	last       time.Time
	suppressed int
}

// overflowKey is shared by new keys while the table is full. No MAC or
// reason string is empty.
const overflowKey = ""

func newLogLimiter(interval time.Duration, max int) *logLimiter {
	return &logLimiter{interval: interval, max: max, now: time.Now, entries: map[string]*limitEntry{}}
}

// allow reports whether a line about key may be logged now and, if so, how
// many lines about key were held back since the last one.
func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, found := l.entries[key]
	if !found {
		if len(l.entries) >= l.max {
			for k, old := range l.entries {
				if now.Sub(old.last) >= l.interval {
					delete(l.entries, k)
				}
			}
		}
		if len(l.entries) >= l.max {
			key = overflowKey
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
