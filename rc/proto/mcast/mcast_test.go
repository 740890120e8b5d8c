package mcast

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	testKey     = bytes.Repeat([]byte{0x5a}, KeySize)
	testSession = uint64(0x0123456789abcdef)
)

func testCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodec(testKey, testSession)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sealed ends raw (a datagram without its MAC) with a valid MAC, so that
// Parse gets past the MAC to the body.
func sealed(c *Codec, raw []byte) []byte { return c.seal(append([]byte(nil), raw...), 0) }

// header is the first 16 bytes of a datagram of type t in testSession.
func header(t Type) []byte {
	return binary.BigEndian.AppendUint64([]byte{'N', 'B', 'M', 'C', Version, byte(t), 0, 0}, testSession)
}

func TestNewCodecKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewCodec(make([]byte, n), 1); err == nil {
			t.Errorf("NewCodec with a %d-byte key: no error", n)
		}
	}
}

func TestDataControlRoundTrip(t *testing.T) {
	c := testCodec(t)
	payload := bytes.Repeat([]byte("0123456789"), MaxPayload/10+1)[:MaxPayload]
	for _, tc := range []struct {
		name string
		msg  Message
	}{
		{"first fragment", &Data{Round: 1, Chunk: 7, FrameSize: 3 * MaxPayload, Offset: 0, FragSize: MaxPayload, Payload: payload}},
		{"last short fragment", &Data{Round: 9, Chunk: 1<<32 - 1, FrameSize: 2*MaxPayload + 5, Offset: 2 * MaxPayload, FragSize: MaxPayload, Payload: payload[:5]}},
		{"one-byte frame", &Data{Round: 2, FrameSize: 1, FragSize: 1000, Payload: []byte{0}}},
		{"round start", &Control{Round: 3, Chunks: 4096, Frames: 12, Phase: PhaseStart}},
		{"round end", &Control{Round: 3, Chunks: 4096, Phase: PhaseEnd}},
		{"idle", &Control{Chunks: 1, Phase: PhaseIdle}},
		{"finish", &Control{Round: 1<<32 - 1, Chunks: 0, Phase: PhaseFinish}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			switch m := tc.msg.(type) {
			case *Data:
				b = c.AppendData(nil, m)
			case *Control:
				b = c.AppendControl(nil, m)
			}
			if len(b) > MaxDatagram {
				t.Fatalf("%d-byte datagram, over %d", len(b), MaxDatagram)
			}
			got, err := c.Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d := cmp.Diff(tc.msg, got); d != "" {
				t.Errorf("round trip (-sent +parsed):\n%s", d)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	c := testCodec(t)
	other, err := NewCodec(bytes.Repeat([]byte{1}, KeySize), testSession)
	if err != nil {
		t.Fatal(err)
	}
	otherSession, err := NewCodec(testKey, testSession+1)
	if err != nil {
		t.Fatal(err)
	}
	good := c.AppendData(nil, &Data{Round: 1, Chunk: 2, FrameSize: 10, FragSize: 10, Payload: []byte("0123456789")})
	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x01
		return b
	}
	data := func(frameSize, offset uint32, fragSize uint16, payload int) []byte {
		b := header(TypeData)
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint32(b, 2)
		b = binary.BigEndian.AppendUint32(b, frameSize)
		b = binary.BigEndian.AppendUint32(b, offset)
		b = binary.BigEndian.AppendUint16(b, fragSize)
		b = append(b, 0, 0)
		return sealed(c, append(b, make([]byte, payload)...))
	}
	control := func(phase byte, reserved byte) []byte {
		b := append(header(TypeControl), make([]byte, 12)...)
		return sealed(c, append(b, phase, reserved, 0, 0))
	}
	status := func(flags byte, id string, entries ...byte) []byte {
		b := header(TypeStatus)
		b = binary.BigEndian.AppendUint32(b, 1)  // seq
		b = binary.BigEndian.AppendUint32(b, 0)  // round
		b = binary.BigEndian.AppendUint32(b, 16) // chunks
		b = binary.BigEndian.AppendUint32(b, 0)  // missing
		b = append(b, 0, 0, 0, 1, flags, byte(len(id)))
		b = append(b, id...)
		return sealed(c, append(b, entries...))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrLength},
		{"short", good[:minDatagram-1], ErrLength},
		{"too long", append(bytes.Clone(good), make([]byte, MaxDatagram)...), ErrLength},
		{"magic", flip(good, 0), ErrMagic},
		{"version", flip(good, 4), ErrVersion},
		{"other session", otherSession.AppendControl(nil, &Control{Phase: PhaseIdle}), ErrSession},
		{"other key", other.AppendControl(nil, &Control{Phase: PhaseIdle}), ErrMAC},
		{"body changed", flip(good, len(good)-MACSize-1), ErrMAC},
		{"type changed", flip(good, 5), ErrMAC},
		{"MAC changed", flip(good, len(good)-1), ErrMAC},
		{"header only", sealed(c, header(TypeData)), ErrMalformed},
		{"unknown type", sealed(c, append(header(9), 0)), ErrType},
		{"reserved header", sealed(c, append(header(TypeControl)[:6], append([]byte{0, 1}, header(TypeControl)[8:]...)...)), ErrMalformed},
		{"data zero frame", data(0, 0, 10, 0), ErrMalformed},
		{"data zero fragment size", data(10, 0, 0, 10), ErrMalformed},
		{"data offset past frame", data(10, 10, 10, 0), ErrMalformed},
		{"data offset off grid", data(30, 5, 10, 10), ErrMalformed},
		{"data payload short", data(30, 10, 10, 9), ErrMalformed},
		{"data payload long", data(15, 10, 10, 6), ErrMalformed},
		{"control phase 0", control(0, 0), ErrMalformed},
		{"control phase 5", control(5, 0), ErrMalformed},
		{"control reserved", control(1, 1), ErrMalformed},
		{"control long", sealed(c, append(append(header(TypeControl), make([]byte, 12)...), 1, 0, 0, 0, 0)), ErrMalformed},
		{"status no id", status(0, ""), ErrMalformed},
		{"status long id", status(0, strings.Repeat("n", MaxIDLen+1)), ErrMalformed},
		{"status bad id", status(0, "\xff"), ErrMalformed},
		{"status flags", status(8, "n"), ErrMalformed},
		{"status unknown entry", status(0, "n", 9), ErrMalformed},
		{"status range cut", status(0, "n", kindChunkRange, 0, 0, 0), ErrMalformed},
		{"status empty range", status(0, "n", kindChunkRange, 0, 0, 0, 1, 0, 0, 0, 0), ErrMalformed},
		{"status range past chunks", status(0, "n", kindChunkRange, 0, 0, 0, 15, 0, 0, 0, 2), ErrMalformed},
		{"status bitmap past chunks", status(0, "n", kindChunkBitmap, 0, 0, 0, 8, 0, 2, 0, 0x80), ErrMalformed},
		{"status bitmap cut", status(0, "n", kindChunkBitmap, 0, 0, 0, 0, 0, 3, 0xff), ErrMalformed},
		{"status fragment of no chunk", status(0, "n", kindFragRange, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1), ErrMalformed},
		{"status fragments past 2^32", status(0, "n", kindFragBitmap, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 1, 0x40), ErrMalformed},
		{"status done with entries", status(flagDone, "n", kindChunkRange, 0, 0, 0, 1, 0, 0, 0, 1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := c.Parse(tc.b)
			if !errors.Is(err, tc.want) {
				t.Errorf("Parse = %#v, %v; want %v", m, err, tc.want)
			}
			for _, e := range []error{ErrLength, ErrMagic, ErrVersion, ErrSession, ErrMAC, ErrType, ErrMalformed} {
				if !errors.Is(tc.want, e) && errors.Is(err, e) {
					t.Errorf("Parse's error %v is also %v", err, e)
				}
			}
		})
	}
}

// ranges makes a sorted list of ranges from start,count pairs.
func ranges(pairs ...uint32) []Range {
	var rs []Range
	for i := 0; i < len(pairs); i += 2 {
		rs = append(rs, Range{pairs[i], pairs[i+1]})
	}
	return rs
}

// every lists every other index from start, n times: the worst case for
// ranges.
func every(start, n uint32) []Range {
	var rs []Range
	for i := range n {
		rs = append(rs, Range{start + 2*i, 1})
	}
	return rs
}

func TestStatusRoundTrip(t *testing.T) {
	c := testCodec(t)
	var manyPartials []Partial
	for i := range uint32(2000) {
		manyPartials = append(manyPartials, Partial{Chunk: 3 * i, Missing: every(i%7, 40)})
	}
	for _, tc := range []struct {
		name      string
		s         Status
		r         Report
		wantParts int
		maxParts  int // when more than one: at most this many
	}{
		{name: "done", s: Status{Receiver: "node1-1.grid", Seq: 5, Round: 2, Chunks: 100, Done: true, Hears: true}, wantParts: 1},
		{name: "leave", s: Status{Receiver: "n", Chunks: 100, Missing: 100, Leave: true}, r: Report{Whole: ranges(0, 100)}, wantParts: 1},
		{name: "whole image", s: Status{Receiver: "n", Chunks: 1 << 20, Missing: 1 << 20}, r: Report{Whole: ranges(0, 1<<20)}, wantParts: 1},
		{name: "a few ranges", s: Status{Receiver: "n", Chunks: 4096, Missing: 13},
			r: Report{Whole: ranges(0, 1, 100, 10, 4095, 1)}, wantParts: 1},
		{name: "dense: bitmaps", s: Status{Receiver: "n", Chunks: 200000, Missing: 50000},
			r: Report{Whole: every(1, 50000)}, maxParts: 12},
		{name: "partials", s: Status{Receiver: strings.Repeat("x", MaxIDLen), Chunks: 10, Missing: 3},
			r: Report{Whole: ranges(0, 1), Partial: []Partial{
				{Chunk: 1, Missing: ranges(0, 1, 700, 3)},
				{Chunk: 5, Missing: nil},
				{Chunk: 9, Missing: every(5, 300)},
			}}, wantParts: 1},
		{name: "many partials", s: Status{Receiver: "n", Chunks: 6000, Missing: 2000},
			r: Report{Partial: manyPartials}, maxParts: 40},
		{name: "fragment bitmap at the top", s: Status{Receiver: "n", Chunks: 1, Missing: 1},
			r: Report{Partial: []Partial{{Chunk: 0, Missing: every(1<<32-100, 49)}}}, wantParts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A Partial with nothing missing says nothing: drop it from what must come back.
			want := Report{Whole: tc.r.Whole}
			for _, p := range tc.r.Partial {
				if len(p.Missing) > 0 {
					want.Partial = append(want.Partial, p)
				}
			}
			s := tc.s
			ds, err := c.StatusDatagrams(&s, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantParts > 0 && len(ds) != tc.wantParts:
				t.Errorf("%d datagrams, want %d", len(ds), tc.wantParts)
			case tc.maxParts > 0 && (len(ds) < 2 || len(ds) > tc.maxParts):
				t.Errorf("%d datagrams, want 2..%d", len(ds), tc.maxParts)
			}
			var got Report
			for i, d := range ds {
				if len(d) > MaxDatagram {
					t.Errorf("part %d: %d bytes", i, len(d))
				}
				m, err := c.Parse(d)
				if err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				st := m.(*Status)
				wantHead := tc.s
				wantHead.Part, wantHead.Parts, wantHead.Report = uint16(i), uint16(len(ds)), Report{}
				gotHead := *st
				gotHead.Report = Report{}
				if d := cmp.Diff(wantHead, gotHead); d != "" {
					t.Errorf("part %d header (-want +got):\n%s", i, d)
				}
				for _, r := range st.Report.Whole {
					got.Whole = appendRange(got.Whole, r)
				}
				for _, p := range st.Report.Partial {
					for _, r := range p.Missing {
						got.Partial = appendPartial(got.Partial, p.Chunk, r)
					}
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("report (-sent +parsed):\n%s", d)
			}
		})
	}
}

func TestStatusDatagramsRefuses(t *testing.T) {
	c := testCodec(t)
	for _, tc := range []struct {
		name string
		s    Status
		r    Report
	}{
		{"no id", Status{}, Report{}},
		{"long id", Status{Receiver: strings.Repeat("n", MaxIDLen+1)}, Report{}},
		{"done with missing", Status{Receiver: "n", Done: true, Chunks: 2}, Report{Whole: ranges(0, 1)}},
	} {
		if _, err := c.StatusDatagrams(&tc.s, tc.r); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestSet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		add   []int
		rm    []int
		addR  []Range
		want  []Range
		count int
	}{
		{name: "empty", n: 10},
		{name: "bounds ignored", n: 70, add: []int{-1, 0, 69, 70, 1000}, want: ranges(0, 1, 69, 1), count: 2},
		{name: "ranges across words", n: 200, addR: ranges(60, 10, 190, 100), rm: []int{64}, want: ranges(60, 4, 65, 5, 190, 10), count: 19},
		{name: "adjacent adds merge", n: 8, add: []int{3, 1, 2}, want: ranges(1, 3), count: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSet(tc.n)
			for _, i := range tc.add {
				s.Add(i)
			}
			for _, r := range tc.addR {
				s.AddRange(r)
			}
			for _, i := range tc.rm {
				s.Remove(i)
			}
			if d := cmp.Diff(tc.want, s.Ranges()); d != "" {
				t.Errorf("Ranges (-want +got):\n%s", d)
			}
			if s.Count() != tc.count || len(s.Members()) != tc.count {
				t.Errorf("Count %d, Members %v; want %d", s.Count(), s.Members(), tc.count)
			}
			for _, r := range tc.want {
				if !s.Has(int(r.Start)) || s.Has(int(r.End())) {
					t.Errorf("Has(%d) false or Has(%d) true", r.Start, r.End())
				}
			}
			u := NewSet(tc.n)
			u.AddSet(s)
			u.AddSet(FullSet(tc.n + 100)) // a larger set: the bound stays
			if u.Count() != tc.n {
				t.Errorf("union with a full set: %d members, want %d", u.Count(), tc.n)
			}
		})
	}
}

func TestResolveGroup(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"239.255.18.7:40007", true},
		{"224.0.0.251:5353", true},
		{"10.0.0.1:40000", false},
		{"239.1.1.1", false},
		{"239.1.1.1:0", false},
		{"[ff02::1]:40000", false},
		{"", false},
	} {
		a, err := ResolveGroup(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ResolveGroup(%q) = %v, %v; want ok %v", tc.in, a, err, tc.ok)
		}
		if err == nil && a.String() != tc.in {
			t.Errorf("ResolveGroup(%q) = %v", tc.in, a)
		}
	}
}
