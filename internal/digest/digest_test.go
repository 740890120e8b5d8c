package digest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sums of "" and "abc" from FIPS 180-2.
const (
	sumEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	sumABC   = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
)

func TestSums(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{{"", sumEmpty}, {"abc", sumABC}} {
		h := New()
		for _, c := range tc.in { // in pieces: the sum is of the stream
			if _, err := h.Write([]byte(string(c))); err != nil {
				t.Fatal(err)
			}
		}
		if got := h.Hex(); got != tc.want {
			t.Errorf("Hash(%q) = %s, want %s", tc.in, got, tc.want)
		}
		got, n, err := Reader(strings.NewReader(tc.in))
		if err != nil || got != tc.want || n != int64(len(tc.in)) {
			t.Errorf("Reader(%q) = %s, %d, %v; want %s, %d", tc.in, got, n, err, tc.want, len(tc.in))
		}
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, n, err := File(p); err != nil || got != sumABC || n != 3 {
		t.Errorf("File = %s, %d, %v; want %s, 3", got, n, err, sumABC)
	}
	if _, _, err := File(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("File(missing) error = %v, want ErrNotExist", err)
	}
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{sumABC, true},
		{strings.ToUpper(sumABC), false},
		{sumABC[:63], false},
		{sumABC + "0", false},
		{sumABC[:63] + "g", false},
		{"", false},
	} {
		if got := Valid(tc.s); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestBytes(t *testing.T) {
	// sha256sum of "abc", as sha256sum(1) prints it.
	if got, want := Bytes([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Bytes(abc) = %s, want %s", got, want)
	}
}
