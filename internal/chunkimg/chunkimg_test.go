package chunkimg

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
)

const cs = MinChunkSize

// disk makes n bytes of chunks described by kinds: 'z' zeros, 'r' random,
// 't' text-like; the last chunk is cut to fit n.
func disk(n int, kinds string) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	for i := 0; i*cs < n; i++ {
		c := b[i*cs : min((i+1)*cs, n)]
		switch kinds[i%len(kinds)] {
		case 'r':
			for j := range c {
				c[j] = byte(rng.Uint32())
			}
		case 't':
			for j := range c {
				c[j] = "netboot "[j%8]
			}
		}
	}
	return b
}

func write(t *testing.T, raw []byte) ([]byte, *Manifest, string) {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, cs)
	if err != nil {
		t.Fatal(err)
	}
	// In odd pieces: chunk boundaries must not depend on the writes'.
	for p := raw; len(p) > 0; {
		k := min(len(p), 12345)
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	m, sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), m, sum
}

// unpack writes every chunk of img back into a disk.
func unpack(t *testing.T, img []byte) []byte {
	t.Helper()
	m, _, err := ReadManifest(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(1)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := make([]byte, m.DiskSize)
	for i, c := range m.Chunks {
		if c.Zero {
			continue
		}
		raw, err := dec.Decode(m, i, img[c.Offset:c.Offset+c.Size], nil)
		if err != nil {
			t.Fatal(err)
		}
		off, _ := m.Range(i)
		copy(out[off:], raw)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		kinds     string
		wantZeros int
	}{
		{"empty", 0, "r", 0},
		{"less than a chunk", 1000, "t", 0},
		{"one chunk", cs, "r", 0},
		{"chunks and a tail", 5*cs + 17, "rtz", 2},
		{"all zero", 4 * cs, "z", 4},
		{"zeros between data", 7 * cs, "rzzt", 4},
		{"more chunks than a batch", 40*cs + 1, "trz", 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := disk(tt.size, tt.kinds)
			img, m, sum := write(t, raw)
			if got := unpack(t, img); !bytes.Equal(got, raw) {
				t.Fatal("the unpacked disk differs from the one written")
			}
			if m.DiskSize != int64(tt.size) || m.ZeroChunks() != tt.wantZeros {
				t.Errorf("disk %d, zero chunks %d; want %d, %d", m.DiskSize, m.ZeroChunks(), tt.size, tt.wantZeros)
			}
			m2, sum2, err := Check(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if sum2 != sum || m2.FrameBytes() != m.FrameBytes() {
				t.Errorf("Check: digest %s, frames %d; the writer said %s, %d", sum2, m2.FrameBytes(), sum, m.FrameBytes())
			}
			if want := int64(len(img)) - HeaderSize - FooterSize; m.FrameBytes() >= want && tt.size > 0 {
				t.Errorf("frames %d of a %d-byte file", m.FrameBytes(), len(img))
			}
		})
	}
}

// TestDamage: every kind of damage is found by Check or ReadManifest.
func TestDamage(t *testing.T) {
	img, m, _ := write(t, disk(6*cs+5, "rtz"))
	manifestAt := len(img) - FooterSize - int(len(img)-FooterSize-int(m.framesEnd()))
	remanifest := func(edit func(*Manifest)) []byte {
		m2 := *m
		m2.Chunks = append([]Chunk(nil), m.Chunks...)
		edit(&m2)
		b, _ := json.Marshal(m2)
		out := append([]byte(nil), img[:manifestAt]...)
		return append(append(out, b...), footer(len(b))...)
	}
	flip := func(at int) []byte {
		b := bytes.Clone(img)
		b[at] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		img  []byte
		want error
	}{
		{"flipped byte in a frame", flip(int(m.Chunks[0].Offset + m.Chunks[0].Size/2)), ErrChunk},
		{"flipped byte in the header", flip(3), ErrFormat},
		{"flipped footer magic", flip(len(img) - 2), ErrFormat},
		{"truncated", img[:len(img)-1], ErrFormat},
		{"too short", img[:10], ErrFormat},
		{"hash of another chunk", remanifest(func(m *Manifest) { m.Chunks[0].SHA256 = m.Chunks[1].SHA256 }), ErrChunk},
		{"frame moved", remanifest(func(m *Manifest) { m.Chunks[1].Offset++ }), ErrFormat},
		{"chunk missing", remanifest(func(m *Manifest) { m.Chunks = m.Chunks[1:] }), ErrFormat},
		{"stored chunk marked zero", remanifest(func(m *Manifest) { m.Chunks[1] = Chunk{Zero: true} }), ErrFormat},
		{"bad version", remanifest(func(m *Manifest) { m.Version = 2 }), ErrFormat},
		{"chunk size too big", remanifest(func(m *Manifest) { m.ChunkSize = MaxChunkSize * 2 }), ErrFormat},
		{"disk larger than its chunks", remanifest(func(m *Manifest) { m.DiskSize += cs }), ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Check(bytes.NewReader(tt.img), int64(len(tt.img)))
			if !errors.Is(err, tt.want) {
				t.Errorf("Check: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDigestNamesContent: the same disk gives the same digest; one byte
// changed anywhere in it gives another.
func TestDigestNamesContent(t *testing.T) {
	raw := disk(3*cs, "rt")
	_, _, a := write(t, raw)
	_, _, b := write(t, bytes.Clone(raw))
	raw[2*cs+7] ^= 1
	_, _, c := write(t, raw)
	if a != b || a == c {
		t.Errorf("digests %s, %s (same disk), %s (one byte changed)", a, b, c)
	}
}

func TestIsZero(t *testing.T) {
	for _, tt := range []struct {
		b    []byte
		want bool
	}{
		{nil, true}, {make([]byte, 13), true}, {append(make([]byte, 12), 1), false},
		{append([]byte{1}, make([]byte, 20)...), false}, {append(make([]byte, 8), 0, 0, 2), false},
	} {
		if got := IsZero(tt.b); got != tt.want {
			t.Errorf("IsZero(% x) = %v", tt.b, got)
		}
	}
}

func TestNewWriterRefusesChunkSize(t *testing.T) {
	for _, n := range []int64{1, MinChunkSize - 1, MaxChunkSize + 1} {
		if _, err := NewWriter(&bytes.Buffer{}, n); err == nil {
			t.Errorf("chunk size %d accepted", n)
		}
	}
}

// FuzzCheck: whatever the bytes, Check returns an error or a manifest whose
// chunks all decode; it never panics or allocates beyond its bounds.
func FuzzCheck(f *testing.F) {
	img, _, _ := func() ([]byte, *Manifest, string) {
		var out bytes.Buffer
		w, _ := NewWriter(&out, cs)
		_, _ = w.Write(disk(3*cs+9, "tzr"))
		m, s, _ := w.Close()
		return out.Bytes(), m, s
	}()
	f.Add(img)
	f.Add(img[:HeaderSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, sum, err := Check(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if _, mb, err := ReadManifest(bytes.NewReader(b), int64(len(b))); err != nil || Digest(mb) != sum {
			t.Fatalf("Check passed, ReadManifest: %v", err)
		}
		if m.FrameBytes()+HeaderSize+FooterSize > int64(len(b)) {
			t.Fatalf("frames %d in %d bytes", m.FrameBytes(), len(b))
		}
	})
}
