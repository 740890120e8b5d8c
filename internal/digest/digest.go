// Package digest is the one way the project names content by its bytes:
// the lower-case hex SHA-256 that disk images, uploads and RAM image files
// are checked and reported by.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
)

// Hash is an io.Writer that sums what passes through it.
type Hash struct{ h hash.Hash }

// New returns an empty Hash.
func New() *Hash { return &Hash{h: sha256.New()} }

// Write adds p to the sum; it never fails.
func (h *Hash) Write(p []byte) (int, error) { return h.h.Write(p) }

// Hex is the sum of everything written so far, as 64 lower-case hex digits.
func (h *Hash) Hex() string { return hex.EncodeToString(h.h.Sum(nil)) }

// Bytes is the sum of b.
func Bytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Reader sums r to its end and says how many bytes it read.
func Reader(r io.Reader) (sum string, n int64, err error) {
	h := New()
	if n, err = io.Copy(h, r); err != nil {
		return "", n, fmt.Errorf("digest: %w", err)
	}
	return h.Hex(), n, nil
}

// File sums the file at path.
func File(path string) (sum string, n int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	return Reader(f)
}

// Valid reports whether s is a sum as Hex writes it: 64 lower-case hex
// digits.
func Valid(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
