package mcast

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"maps"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

// FuzzParse feeds Parse any datagram. With seal set the fuzzer's bytes get
// the test session's id and a valid MAC, so that the body parsers see them
// too. Whatever Parse accepts must encode back to what it decodes to.
func FuzzParse(f *testing.F) {
	c := testCodec(f)
	f.Add(c.AppendData(nil, &Data{Round: 1, Chunk: 2, FrameSize: 30, Offset: 20, FragSize: 10, Payload: make([]byte, 10)}), false)
	f.Add(c.AppendControl(nil, &Control{Round: 1, Chunks: 9, Frames: 3, Phase: PhaseStart}), false)
	s := &Status{Receiver: "node1-1", Seq: 3, Round: 1, Chunks: 100, Missing: 20}
	ds, err := c.StatusDatagrams(s, Report{Whole: every(0, 20), Partial: []Partial{{Chunk: 50, Missing: ranges(3, 2, 9, 1)}}})
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range ds {
		f.Add(d, false)
		f.Add(d[:len(d)-MACSize], true)
	}
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		if seal {
			if len(b) < headerSize || len(b)+MACSize > MaxDatagram {
				return
			}
			b = append([]byte(nil), b...)
			copy(b, Magic)
			b[4] = Version
			binary.BigEndian.PutUint64(b[8:], testSession)
			b = sealed(c, b)
		}
		m, err := c.Parse(b)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned %#v with error %v", m, err)
			}
			return
		}
		switch m := m.(type) {
		case *Data:
			if again := c.AppendData(nil, m); !bytes.Equal(again, b) {
				t.Fatalf("DATA %+v re-encodes to %x, parsed from %x", m, again, b)
			}
		case *Control:
			if again := c.AppendControl(nil, m); !bytes.Equal(again, b) {
				t.Fatalf("CONTROL %+v re-encodes to %x, parsed from %x", m, again, b)
			}
		case *Status:
			// The encoder may split or encode differently; what comes back must mean the same.
			head := *m
			ds, err := c.StatusDatagrams(&head, m.Report)
			if err != nil {
				t.Fatalf("STATUS %+v does not re-encode: %v", m, err)
			}
			var got Report
			for _, d := range ds {
				again, err := c.Parse(d)
				if err != nil {
					t.Fatalf("re-encoded STATUS does not parse: %v", err)
				}
				st := again.(*Status)
				if st.Receiver != m.Receiver || st.Seq != m.Seq || st.Missing != m.Missing || st.Done != m.Done || st.Leave != m.Leave || st.Hears != m.Hears {
					t.Fatalf("re-encoded STATUS header %+v, want %+v", st, m)
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
			if d := gocmp.Diff(normalize(m.Report), normalize(got)); d != "" {
				t.Fatalf("STATUS report changed in a re-encoding (-parsed +again):\n%s", d)
			}
		default:
			t.Fatalf("Parse returned %T", m)
		}
	})
}

// normalize sorts and merges what a report says, so that two encodings of
// the same sets compare equal (a parsed report may list ranges out of
// order, overlapping, or a chunk in several places).
func normalize(r Report) Report {
	out := Report{Whole: canonical(r.Whole)}
	frags := map[uint32][]Range{}
	for _, p := range r.Partial {
		frags[p.Chunk] = append(frags[p.Chunk], p.Missing...)
	}
	for _, chunk := range slices.Sorted(maps.Keys(frags)) {
		out.Partial = append(out.Partial, Partial{Chunk: chunk, Missing: canonical(frags[chunk])})
	}
	return out
}

// canonical sorts rs and merges ranges that overlap or touch.
func canonical(rs []Range) []Range {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && uint64(r.Start) <= out[n-1].End() {
			if r.End() > out[n-1].End() {
				out[n-1].Count = uint32(r.End() - uint64(out[n-1].Start))
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
