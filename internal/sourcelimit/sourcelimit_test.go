package sourcelimit

import (
	"net/netip"
	"testing"
	"time"
)

// clock is a time a test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestAllow(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	type step struct {
		after  time.Duration // clock moves first
		src    netip.Addr
		ok     bool
		retry  time.Duration // when refused
		sample string
	}
	for _, tc := range []struct {
		name  string
		limit Limit
		steps []step
	}{
		{"off", Limit{}, []step{{0, a, true, 0, ""}, {0, a, true, 0, ""}, {0, a, true, 0, ""}}},
		{"burst then refused", Limit{PerMinute: 60, Burst: 2}, []step{
			{0, a, true, 0, ""}, {0, a, true, 0, ""}, {0, a, false, time.Second, ""},
			{time.Second, a, true, 0, "refilled one a second"}, {0, a, false, time.Second, ""},
		}},
		{"sources apart", Limit{PerMinute: 60, Burst: 1}, []step{
			{0, a, true, 0, ""}, {0, a, false, time.Second, ""}, {0, b, true, 0, "b has its own bucket"}, {0, b, false, time.Second, ""},
		}},
		{"slow rate says how long", Limit{PerMinute: 2, Burst: 1}, []step{
			{0, a, true, 0, ""}, {0, a, false, 30 * time.Second, ""}, {10 * time.Second, a, false, 20 * time.Second, ""},
			{20 * time.Second, a, true, 0, ""},
		}},
		{"burst at least one", Limit{PerMinute: 60, Burst: 0}, []step{{0, a, true, 0, ""}, {0, a, false, time.Second, ""}}},
		{"mapped v4 is v4", Limit{PerMinute: 60, Burst: 1}, []step{
			{0, a, true, 0, ""}, {0, netip.AddrFrom16(a.As16()), false, time.Second, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1e9, 0)}
			l := New(tc.limit, 100)
			l.SetClock(c.now)
			for i, s := range tc.steps {
				c.t = c.t.Add(s.after)
				ok, retry := l.Allow(s.src)
				if ok != s.ok || retry != s.retry {
					t.Errorf("step %d (%s): Allow(%v) = %v, %v; want %v, %v", i, s.sample, s.src, ok, retry, s.ok, s.retry)
				}
			}
		})
	}
}

// Failed logins count after the fact and are checked before: Blocked
// takes nothing, Count takes even from an empty bucket.
func TestBlockedCount(t *testing.T) {
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	c := &clock{t: time.Unix(1e9, 0)}
	l := New(Limit{PerMinute: 6, Burst: 3}, 100)
	l.SetClock(c.now)
	for i := range 3 {
		if blocked, _ := l.Blocked(a); blocked {
			t.Fatalf("blocked after %d failures, want only after 3", i)
		}
		l.Count(a)
	}
	blocked, retry := l.Blocked(a)
	if !blocked || retry != 10*time.Second {
		t.Fatalf("after 3 failures: Blocked = %v, %v; want true, 10s", blocked, retry)
	}
	if blocked, _ := l.Blocked(b); blocked {
		t.Error("another source is blocked")
	}
	l.Count(a) // counted while blocked: the wait grows
	if _, retry := l.Blocked(a); retry != 20*time.Second {
		t.Errorf("after a 4th failure: retry %v, want 20s", retry)
	}
	c.t = c.t.Add(20 * time.Second)
	if blocked, _ := l.Blocked(a); blocked {
		t.Error("still blocked after the wait")
	}
}

func TestBounded(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := New(Limit{PerMinute: 60, Burst: 2}, 10) // a bucket is full again after 2s
	l.SetClock(c.now)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	for i := range 10 {
		l.Allow(addr(i))
	}
	// The table is full and nobody idle: newcomers share the overflow bucket.
	for i := 10; i < 12; i++ {
		if ok, _ := l.Allow(addr(i)); !ok {
			t.Fatalf("newcomer %d refused, the overflow bucket has a burst of 2", i)
		}
	}
	if ok, _ := l.Allow(addr(12)); ok {
		t.Error("third newcomer allowed: the overflow bucket should be empty")
	}
	if n := l.Len(); n != 10 {
		t.Errorf("Len = %d, want the bound 10", n)
	}
	// Once the old ones are idle, they make room.
	c.t = c.t.Add(3 * time.Second)
	if ok, _ := l.Allow(addr(13)); !ok {
		t.Error("newcomer refused after the table's sources went idle")
	}
	if n := l.Len(); n != 1 {
		t.Errorf("Len = %d after eviction, want 1", n)
	}
}
