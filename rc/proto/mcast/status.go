package mcast

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Status flags.
const (
	flagDone  = 1
	flagLeave = 2
	flagHears = 4
)

// Entry kinds of a STATUS body.
const (
	kindChunkRange  = 1
	kindChunkBitmap = 2
	kindFragBitmap  = 3
	kindFragRange   = 4
)

// The longest bitmap one entry carries: with the fixed part, the longest
// id and the MAC it fits one datagram.
const maxBitmap = 1024

// Partial is what a receiver misses of a frame it holds part of: fragment
// ranges, in increasing order.
type Partial struct {
	Chunk   uint32
	Missing []Range
}

// Report is what a receiver still misses: chunks it holds nothing of, and
// fragments of the frames it holds part of, both in increasing order of
// chunk.
type Report struct {
	Whole   []Range
	Partial []Partial
}

// Empty reports whether r names nothing missing.
func (r Report) Empty() bool { return len(r.Whole) == 0 && len(r.Partial) == 0 }

// Status is one STATUS datagram: a receiver's report, or one part of it.
type Status struct {
	Receiver string
	Seq      uint32
	Round    uint32 // the last round whose end the receiver saw
	Chunks   uint32 // the chunk count the receiver expects
	Missing  uint32 // chunks missing, over the whole report
	Part     uint16
	Parts    uint16
	Done     bool // nothing is missing
	Leave    bool // the receiver gives up on multicast
	Hears    bool // a valid datagram of the session has reached the receiver
	// Report is this part's share of the report.
	Report Report
}

// Type is TypeStatus.
func (*Status) Type() Type { return TypeStatus }

// StatusDatagrams encodes s's report r as one or more STATUS datagrams
// (s's Part, Parts and Report are set from the split; s.Parts is set).
// A done report carries no entries.
func (c *Codec) StatusDatagrams(s *Status, r Report) ([][]byte, error) {
	if len(s.Receiver) == 0 || len(s.Receiver) > MaxIDLen || !utf8.ValidString(s.Receiver) {
		return nil, fmt.Errorf("mcast: receiver id %q: want 1..%d bytes of UTF-8", s.Receiver, MaxIDLen)
	}
	if s.Done && (!r.Empty() || s.Missing != 0) {
		return nil, fmt.Errorf("mcast: a done report names %d missing chunks", s.Missing)
	}
	var entries [][]byte
	addRanges(r.Whole, 9, 7, func(rg Range) {
		e := append([]byte{kindChunkRange}, be32(rg.Start)...)
		entries = append(entries, append(e, be32(rg.Count)...))
	}, func(start uint32, bm []byte) {
		e := append([]byte{kindChunkBitmap}, be32(start)...)
		e = binary.BigEndian.AppendUint16(e, uint16(len(bm)))
		entries = append(entries, append(e, bm...))
	})
	for _, p := range r.Partial {
		addRanges(p.Missing, 13, 11, func(rg Range) {
			e := append([]byte{kindFragRange}, be32(p.Chunk)...)
			e = append(e, be32(rg.Start)...)
			entries = append(entries, append(e, be32(rg.Count)...))
		}, func(start uint32, bm []byte) {
			e := append([]byte{kindFragBitmap}, be32(p.Chunk)...)
			e = append(e, be32(start)...)
			e = binary.BigEndian.AppendUint16(e, uint16(len(bm)))
			entries = append(entries, append(e, bm...))
		})
	}
	room := MaxDatagram - statusFixed - len(s.Receiver) - MACSize
	var bodies [][]byte
	body := []byte{}
	for _, e := range entries {
		if len(body)+len(e) > room {
			bodies = append(bodies, body)
			body = []byte{}
		}
		body = append(body, e...)
	}
	bodies = append(bodies, body)
	if len(bodies) > 0xffff {
		return nil, fmt.Errorf("mcast: a report of %d datagrams", len(bodies))
	}
	var flags byte
	if s.Done {
		flags |= flagDone
	}
	if s.Leave {
		flags |= flagLeave
	}
	if s.Hears {
		flags |= flagHears
	}
	out := make([][]byte, len(bodies))
	for i, b := range bodies {
		d := c.appendHeader(make([]byte, 0, MaxDatagram), TypeStatus)
		d = binary.BigEndian.AppendUint32(d, s.Seq)
		d = binary.BigEndian.AppendUint32(d, s.Round)
		d = binary.BigEndian.AppendUint32(d, s.Chunks)
		d = binary.BigEndian.AppendUint32(d, s.Missing)
		d = binary.BigEndian.AppendUint16(d, uint16(i))
		d = binary.BigEndian.AppendUint16(d, uint16(len(bodies)))
		d = append(d, flags, byte(len(s.Receiver)))
		d = append(d, s.Receiver...)
		d = append(d, b...)
		out[i] = c.seal(d, 0)
	}
	s.Parts = uint16(len(bodies))
	return out, nil
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// addRanges emits sorted, disjoint ranges rs as range entries (rangeCost
// bytes each) or bitmaps (bitmapCost bytes plus the bitmap), whichever is
// shorter: ranges closer than a range entry's worth of bits are grouped,
// and a group goes as one bitmap (split at maxBitmap) when that is
// shorter than its ranges.
func addRanges(rs []Range, rangeCost, bitmapCost int, emitRange func(Range), emitBitmap func(start uint32, bm []byte)) {
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && uint64(rs[j].Start)-rs[j-1].End() < uint64(8*rangeCost) {
			j++
		}
		group := rs[i:j]
		span := group[len(group)-1].End() - uint64(group[0].Start)
		chunksOfBitmap := (span + 8*maxBitmap - 1) / (8 * maxBitmap)
		if uint64(bitmapCost)*chunksOfBitmap+(span+7)/8 < uint64(rangeCost*len(group)) {
			emitBitmaps(group, emitBitmap)
		} else {
			for _, r := range group {
				emitRange(r)
			}
		}
		i = j
	}
}

// emitBitmaps sends the ranges of group as bitmaps of at most maxBitmap
// bytes.
func emitBitmaps(group []Range, emit func(start uint32, bm []byte)) {
	start := uint64(group[0].Start)
	end := group[len(group)-1].End()
	for base := start; base < end; base += 8 * maxBitmap {
		limit := min(end, base+8*maxBitmap)
		bm := make([]byte, (limit-base+7)/8)
		for _, r := range group {
			for k := max(uint64(r.Start), base); k < min(r.End(), limit); k++ {
				bm[(k-base)/8] |= 0x80 >> ((k - base) % 8)
			}
		}
		emit(uint32(base), bm)
	}
}

func parseStatus(b []byte) (*Status, error) {
	if len(b) < statusFixed {
		return nil, fmt.Errorf("%w: STATUS of %d bytes", ErrMalformed, len(b)+MACSize)
	}
	s := &Status{
		Seq:     binary.BigEndian.Uint32(b[16:]),
		Round:   binary.BigEndian.Uint32(b[20:]),
		Chunks:  binary.BigEndian.Uint32(b[24:]),
		Missing: binary.BigEndian.Uint32(b[28:]),
		Part:    binary.BigEndian.Uint16(b[32:]),
		Parts:   binary.BigEndian.Uint16(b[34:]),
	}
	flags, idLen := b[36], int(b[37])
	s.Done, s.Leave, s.Hears = flags&flagDone != 0, flags&flagLeave != 0, flags&flagHears != 0
	switch {
	case flags&^(flagDone|flagLeave|flagHears) != 0:
		return nil, fmt.Errorf("%w: STATUS flags %#x", ErrMalformed, flags)
	case s.Parts == 0 || s.Part >= s.Parts:
		return nil, fmt.Errorf("%w: STATUS part %d of %d", ErrMalformed, s.Part, s.Parts)
	case idLen == 0 || idLen > MaxIDLen || len(b) < statusFixed+idLen || !utf8.Valid(b[statusFixed:statusFixed+idLen]):
		return nil, fmt.Errorf("%w: STATUS receiver id", ErrMalformed)
	}
	s.Receiver = string(b[statusFixed : statusFixed+idLen])
	if err := parseEntries(s, b[statusFixed+idLen:]); err != nil {
		return nil, err
	}
	if s.Done && (!s.Report.Empty() || s.Missing != 0) {
		return nil, fmt.Errorf("%w: a done STATUS names missing chunks", ErrMalformed)
	}
	return s, nil
}

// parseEntries decodes a STATUS body's entries into s.Report, merging
// adjacent ranges, and checks every chunk against s.Chunks and every
// fragment index against 2^32-1.
func parseEntries(s *Status, b []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: STATUS entry: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	for len(b) > 0 {
		var (
			chunk  uint32 // a fragment entry's chunk
			ranges []Range
			size   int
		)
		switch kind := b[0]; kind {
		case kindChunkRange:
			if size = 9; len(b) < size {
				return bad("chunk range cut short")
			}
			ranges = []Range{{binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:])}}
		case kindFragRange:
			if size = 13; len(b) < size {
				return bad("fragment range cut short")
			}
			chunk = binary.BigEndian.Uint32(b[1:])
			ranges = []Range{{binary.BigEndian.Uint32(b[5:]), binary.BigEndian.Uint32(b[9:])}}
		case kindChunkBitmap, kindFragBitmap:
			head := 7
			if kind == kindFragBitmap {
				head = 11
				if len(b) >= head {
					chunk = binary.BigEndian.Uint32(b[1:])
				}
			}
			if len(b) < head {
				return bad("bitmap cut short")
			}
			n := int(binary.BigEndian.Uint16(b[head-2:]))
			if size = head + n; n == 0 || len(b) < size {
				return bad("bitmap of %d bytes in %d", n, len(b)-head)
			}
			ranges = bitmapRanges(binary.BigEndian.Uint32(b[head-6:]), b[head:size])
		default:
			return bad("kind %d", kind)
		}
		frag := b[0] == kindFragRange || b[0] == kindFragBitmap
		for _, r := range ranges {
			switch {
			case r.Count == 0:
				return bad("an empty range")
			case !frag && r.End() > uint64(s.Chunks):
				return bad("chunks %d+%d of %d", r.Start, r.Count, s.Chunks)
			case frag && (chunk >= s.Chunks || r.End() >= 1<<32):
				return bad("chunk %d of %d, fragments %d+%d", chunk, s.Chunks, r.Start, r.Count)
			case frag:
				s.Report.Partial = appendPartial(s.Report.Partial, chunk, r)
			default:
				s.Report.Whole = appendRange(s.Report.Whole, r)
			}
		}
		b = b[size:]
	}
	return nil
}

// bitmapRanges lists the runs of set bits of bm (MSB first) from start;
// a run past 2^32 keeps its full length in End, for the caller to refuse.
func bitmapRanges(start uint32, bm []byte) []Range {
	var rs []Range
	for k := range uint64(len(bm)) * 8 {
		if bm[k/8]&(0x80>>(k%8)) == 0 {
			continue
		}
		i := uint64(start) + k
		if i >= 1<<32 {
			// Past what an index holds: a range the caller refuses.
			return append(rs, Range{^uint32(0), 1})
		}
		if n := len(rs); n > 0 && rs[n-1].End() == i {
			rs[n-1].Count++
		} else {
			rs = append(rs, Range{uint32(i), 1})
		}
	}
	return rs
}

// appendRange appends r, merged with the last range if they touch.
func appendRange(rs []Range, r Range) []Range {
	if n := len(rs); n > 0 && rs[n-1].End() == uint64(r.Start) {
		rs[n-1].Count += r.Count
		return rs
	}
	return append(rs, r)
}

// appendPartial appends fragment range r of chunk, to the last partial if
// it is chunk's.
func appendPartial(ps []Partial, chunk uint32, r Range) []Partial {
	if n := len(ps); n > 0 && ps[n-1].Chunk == chunk {
		ps[n-1].Missing = appendRange(ps[n-1].Missing, r)
		return ps
	}
	return append(ps, Partial{Chunk: chunk, Missing: []Range{r}})
}
