package mcast

import "math/bits"

// Range is Count consecutive indices from Start (chunks, or fragments of
// one frame).
type Range struct{ Start, Count uint32 }

// End is one past the range's last index.
func (r Range) End() uint64 { return uint64(r.Start) + uint64(r.Count) }

// Set is a set of indices 0..Len()-1 (chunks, or fragments of a frame): a
// bitmap, so that both sides keep what is missing in n/8 bytes.
type Set struct {
	n int
	w []uint64
}

// NewSet returns an empty set of indices below n.
func NewSet(n int) *Set { return &Set{n: n, w: make([]uint64, (n+63)/64)} }

// FullSet returns the set of every index below n.
func FullSet(n int) *Set {
	s := NewSet(n)
	s.AddRange(Range{0, uint32(n)})
	return s
}

// Len is the bound the set's indices stay below.
func (s *Set) Len() int { return s.n }

// Has reports whether i is in the set (false outside 0..Len()-1).
func (s *Set) Has(i int) bool {
	return i >= 0 && i < s.n && s.w[i/64]&(1<<(i%64)) != 0
}

// Add puts i in the set; an i outside 0..Len()-1 is ignored.
func (s *Set) Add(i int) {
	if i >= 0 && i < s.n {
		s.w[i/64] |= 1 << (i % 64)
	}
}

// Remove takes i out of the set.
func (s *Set) Remove(i int) {
	if i >= 0 && i < s.n {
		s.w[i/64] &^= 1 << (i % 64)
	}
}

// AddRange adds every index of r below Len().
func (s *Set) AddRange(r Range) {
	end := min(r.End(), uint64(s.n))
	for i := uint64(r.Start); i < end; i++ {
		s.Add(int(i))
	}
}

// AddSet adds every member of o (a set of any bound).
func (s *Set) AddSet(o *Set) {
	for i := range min(len(s.w), len(o.w)) {
		s.w[i] |= o.w[i]
	}
	if tail := s.n % 64; tail != 0 {
		s.w[len(s.w)-1] &= 1<<tail - 1
	}
}

// Count is the number of members.
func (s *Set) Count() int {
	c := 0
	for _, w := range s.w {
		c += bits.OnesCount64(w)
	}
	return c
}

// Next is the smallest member >= i, or -1.
func (s *Set) Next(i int) int {
	if i < 0 {
		i = 0
	}
	for i < s.n {
		w := s.w[i/64] >> (i % 64)
		if w != 0 {
			return i + bits.TrailingZeros64(w)
		}
		i = (i/64 + 1) * 64
	}
	return -1
}

// Members lists the members in increasing order.
func (s *Set) Members() []int {
	var m []int
	for i := s.Next(0); i >= 0; i = s.Next(i + 1) {
		m = append(m, i)
	}
	return m
}

// Ranges lists the members as maximal runs, in increasing order.
func (s *Set) Ranges() []Range {
	var rs []Range
	for i := s.Next(0); i >= 0; i = s.Next(i + 1) {
		if n := len(rs); n > 0 && rs[n-1].End() == uint64(i) {
			rs[n-1].Count++
		} else {
			rs = append(rs, Range{uint32(i), 1})
		}
	}
	return rs
}
