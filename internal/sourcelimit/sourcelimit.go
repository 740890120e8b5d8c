// Package sourcelimit rate-limits by source address: a token bucket per
// source (golang.org/x/time/rate), in a table of bounded size, so that a
// flood from made-up addresses cannot grow it without end.
package sourcelimit

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a per-source rate: PerMinute events a minute on average, Burst
// at once. A PerMinute of 0 is no limit.
type Limit struct {
	PerMinute float64
	Burst     int
}

// Off says whether l limits nothing.
func (l Limit) Off() bool { return l.PerMinute <= 0 }

// Limiter is safe for concurrent use. A source's bucket is dropped once it
// has been idle long enough to be full again (it then limits nothing a new
// one would not); if the table is still full, new sources share one
// overflow bucket until room is made.
type Limiter struct {
	limit    Limit
	every    rate.Limit
	idle     time.Duration // a bucket idle this long is full again
	max      int
	now      func() time.Time
	mu       sync.Mutex
	sources  map[netip.Addr]*source
	overflow *rate.Limiter
	pruned   time.Time // the last walk of a full table for idle sources
}

type source struct {
	lim  *rate.Limiter
	last time.Time
}

// New returns a Limiter for l keeping at most maxSources sources.
func New(l Limit, maxSources int) *Limiter {
	every := rate.Limit(l.PerMinute / 60)
	burst := max(l.Burst, 1)
	idle := time.Minute
	if every > 0 {
		idle = time.Duration(float64(burst) / float64(every) * float64(time.Second))
	}
	return &Limiter{limit: Limit{PerMinute: l.PerMinute, Burst: burst}, every: every, idle: idle, max: max(maxSources, 1),
		now: time.Now, sources: map[netip.Addr]*source{}, overflow: rate.NewLimiter(every, burst)}
}

// SetClock replaces time.Now, so a test can move time.
func (l *Limiter) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// Allow takes one event from src's bucket. When it is empty, it says so
// and how long until the bucket holds one again (at least a second: what
// a Retry-After can say).
func (l *Limiter) Allow(src netip.Addr) (ok bool, retry time.Duration) {
	if l.limit.Off() {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	lim := l.bucket(src, now)
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, l.wait(lim, now)
}

// Blocked says whether src's bucket is empty, without taking from it, and
// if so for how long: for events that count only once they happen (a
// failed login), checked before the request is served.
func (l *Limiter) Blocked(src netip.Addr) (blocked bool, retry time.Duration) {
	if l.limit.Off() {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	s, found := l.sources[src.Unmap()]
	if !found {
		return false, 0
	}
	if s.lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, l.wait(s.lim, now)
}

// Count takes one event from src's bucket, empty or not: an event that
// has already happened.
func (l *Limiter) Count(src netip.Addr) {
	if l.limit.Off() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// A reservation takes its token even from an empty bucket (it goes
	// below zero): each failure while blocked lengthens the wait.
	l.bucket(src, now).ReserveN(now, 1)
}

// Len is how many sources the table holds now.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// bucket is src's bucket, made if need be; l.mu is held.
func (l *Limiter) bucket(src netip.Addr, now time.Time) *rate.Limiter {
	src = src.Unmap()
	if s, ok := l.sources[src]; ok {
		s.last = now
		return s.lim
	}
	// A full table is walked at most once a second (or once an idle
	// time, if shorter): a stream of new sources, each a miss, must not
	// cost a walk of the whole table apiece under the lock.
	if len(l.sources) >= l.max && now.Sub(l.pruned) >= min(l.idle, time.Second) {
		l.pruned = now
		for k, s := range l.sources {
			if now.Sub(s.last) >= l.idle {
				delete(l.sources, k)
			}
		}
	}
	if len(l.sources) >= l.max {
		return l.overflow
	}
	s := &source{lim: rate.NewLimiter(l.every, l.limit.Burst), last: now}
	l.sources[src] = s
	return s.lim
}

// wait is how long until lim holds one event again, in whole seconds.
func (l *Limiter) wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	// The epsilon keeps a float's last bit from adding a second.
	secs := math.Ceil(missing/float64(l.every) - 1e-6)
	return time.Duration(max(secs, 1)) * time.Second
}
