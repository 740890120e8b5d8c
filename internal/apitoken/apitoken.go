// Package apitoken makes and recognises the operator API's bearer tokens:
// Prefix and 32 random bytes in base64url. The database keeps only a
// token's SHA-256: the bytes are random, so a plain hash cannot be
// reversed by guessing, and a stolen database admits nobody.
package apitoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Prefix starts every token: it tells an API token from an RC enrollment's
// bearer (hex) on the routes that take both, and marks a leaked one for
// secret scanners.
const Prefix = "nbt_"

// randomBytes is a token's entropy.
const randomBytes = 32

// New makes a token and its hash, the one to show once and the one to
// store.
func New() (token, hash string, err error) {
	b := make([]byte, randomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("apitoken: %w", err)
	}
	token = Prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, Hash(token), nil
}

// Hash is the stored form of token: hex SHA-256.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Is says whether s has a token's form (not whether it is valid).
func Is(s string) bool { return strings.HasPrefix(s, Prefix) }

// Bearer is the credential r's Authorization header carries in the Bearer
// scheme (RFC 6750; the scheme's name in any case), and whether the header
// has that form. Both API tokens and RC enrollments' secrets come so.
func Bearer(r *http.Request) (string, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}
