// Package textclip shortens text that came from outside (a request's
// parameter, an RC's report) before it is quoted back in an error, logged,
// stored or shown: at most n bytes, cut on a rune boundary so that valid
// UTF-8 stays valid, and a cut marked with "...".
package textclip

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const mark = "..."

// Text is s in at most n bytes (n >= len("...")).
func Text(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Line is Text of s without its control characters: one line, safe to
// print to a terminal or a log.
func Line(s string, n int) string {
	return Text(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s), n)
}
