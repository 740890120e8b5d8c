package textclip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in         string
		n          int
		text, line string
	}{
		{"short", 10, "short", "short"},
		{"a\nb\x00c", 10, "a\nb\x00c", "abc"},
		{"abcdefghijkl", 10, "abcdefg...", "abcdefg..."},
		{"abcdefé", 10, "abcdefé", "abcdefé"},
		{"abcdeféxyz", 10, "abcdef...", "abcdef..."}, // the é across the cut goes whole
		{"ab€€€", 7, "ab...", "ab..."},               // a 3-byte rune across the cut
		{"ab€€€", 8, "ab€...", "ab€..."},
		{"\x7f\x01" + strings.Repeat("x", 20), 10, "\x7f\x01xxxxx...", "xxxxxxx..."},
		{"abcdef", 3, "...", "..."},
	} {
		if got := Text(tc.in, tc.n); got != tc.text {
			t.Errorf("Text(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.text)
		}
		if got := Line(tc.in, tc.n); got != tc.line {
			t.Errorf("Line(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.line)
		}
	}
}

func FuzzText(f *testing.F) {
	f.Add("abcdeféxyz", 10)
	f.Add("ab€€€", 8)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = 3 + abs(n)%300
		got := Text(s, n)
		if len(got) > n {
			t.Fatalf("Text(%q, %d) = %q: %d bytes", s, n, got, len(got))
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Text(%q, %d) = %q: not UTF-8", s, n, got)
		}
		if len(s) <= n && got != s {
			t.Fatalf("Text(%q, %d) = %q: changed", s, n, got)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
