package diskdata

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/zstdtest"
)

func generate(t *testing.T, size int64, m Mix) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, size, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// kinds counts the blocks of data that are all zeros, text (start with
// the text's first bytes) and neither (random).
func kinds(data []byte) (zero, text, random int) {
	for off := 0; off < len(data); off += Block {
		b := data[off:min(off+Block, len(data))]
		switch {
		case bytes.Count(b, []byte{0}) == len(b):
			zero++
		case bytes.HasPrefix(b, []byte("Lorem ipsum")):
			text++
		default:
			random++
		}
	}
	return
}

// TestWriteDeterministic: one seed gives the same bytes every time, and
// another seed other bytes; the mix is what was asked, within the chance
// of 64 draws.
func TestWriteDeterministic(t *testing.T) {
	const size = 64*Block + 12345 // a last, partial block
	m := Mix{Seed: 7, RandomPct: 40, ZeroPct: 40}
	a, b := generate(t, size, m), generate(t, size, m)
	if len(a) != size {
		t.Fatalf("%d bytes, want %d", len(a), size)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave different data")
	}
	m2 := m
	m2.Seed = 8
	if bytes.Equal(a, generate(t, size, m2)) {
		t.Error("seeds 7 and 8 gave the same data")
	}
	zero, text, random := kinds(a)
	for _, k := range []struct {
		name   string
		n, pct int
	}{{"zero", zero, m.ZeroPct}, {"random", random, m.RandomPct}, {"text", text, 100 - m.ZeroPct - m.RandomPct}} {
		// 65 blocks: a share far from what was asked is a broken mix, not bad luck.
		if want := k.pct * 65 / 100; k.n < want/3 || k.n > want*2+3 {
			t.Errorf("%d %s blocks of 65, want about %d", k.n, k.name, want)
		}
	}
	for _, tc := range []struct {
		m    Mix
		kind string
	}{{Mix{Seed: 1, ZeroPct: 100}, "zero"}, {Mix{Seed: 1, RandomPct: 100}, "random"}, {Mix{Seed: 1}, "text"}} {
		z, x, r := kinds(generate(t, 8*Block, tc.m))
		got := map[string]int{"zero": z, "text": x, "random": r}
		if got[tc.kind] != 8 {
			t.Errorf("%+v: %v, want 8 %s blocks", tc.m, got, tc.kind)
		}
	}
}

func TestWriteRefusesBadMix(t *testing.T) {
	for _, m := range []Mix{{RandomPct: 60, ZeroPct: 41}, {RandomPct: -1}, {ZeroPct: -5}} {
		if err := Write(&bytes.Buffer{}, Block, m); err == nil || !strings.Contains(err.Error(), "percentages") {
			t.Errorf("%+v: %v, want an error about the percentages", m, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1GiB", 1 << 30, false}, {"64MiB", 64 << 20, false}, {"3KiB", 3 << 10, false}, {"4096", 4096, false},
		{"0", 0, true}, {"-1MiB", 0, true}, {"1GB", 0, true}, {"", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestMakeCompress: Make's sum is the file's; the zstd file decompresses
// to the data.
func TestMakeCompress(t *testing.T) {
	dir := t.TempDir()
	raw, zst := filepath.Join(dir, "raw"), filepath.Join(dir, "img.zst")
	m := Mix{Seed: 3, RandomPct: 30, ZeroPct: 30}
	sum, err := Make(raw, 5*Block, m)
	if err != nil {
		t.Fatal(err)
	}
	data := generate(t, 5*Block, m)
	if want := sha256.Sum256(data); !bytes.Equal(sum, want[:]) {
		t.Errorf("Make's sum %x, the data's %x", sum, want)
	}
	if fs, err := FileSum(raw); err != nil || !bytes.Equal(fs, sum) {
		t.Errorf("FileSum %x, %v; want %x", fs, err, sum)
	}
	n, err := Compress(raw, zst, "zstd")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(zst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Size() != n || n >= 5*Block {
		t.Errorf("Compress said %d bytes; the file has %d (data %d)", n, fi.Size(), 5*Block)
	}
	if got := zstdtest.Decompress(t, f); !bytes.Equal(got, data) {
		t.Error("the zstd image does not decompress to the data")
	}
	if _, err := Compress(raw, filepath.Join(dir, "x"), "lz4"); err == nil {
		t.Error("format lz4: no error")
	}
}
