package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Token is an operator API token as stored: never the token itself, only
// its hash (internal/apitoken).
type Token struct {
	Name    string
	Role    string // viewer, operator or admin: the guard's words
	Created time.Time
	Expires time.Time // zero: never
	Revoked time.Time // zero: not revoked
}

// Active says whether the token admits its bearer at now.
func (t Token) Active(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

// CreateToken stores a token under its name. A name is taken while its
// token is active: ErrConflict. A revoked or expired token's name is
// free, and that token is dropped for the new one.
func (s *Store) CreateToken(ctx context.Context, t Token, hash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := t.Created.UnixNano()
		if _, err := s.exec(ctx, tx, `DELETE FROM api_tokens WHERE name = ?
			AND (revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?))`, t.Name, now); err != nil {
			return fmt.Errorf("store: token %q: %w", t.Name, err)
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens WHERE name = ?`, t.Name).Scan(&n); err != nil {
			return fmt.Errorf("store: token %q: %w", t.Name, err)
		}
		if n > 0 {
			return fmt.Errorf("token %q exists (revoke it first): %w", t.Name, ErrConflict)
		}
		_, err := s.exec(ctx, tx, `INSERT INTO api_tokens (name, role, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			t.Name, t.Role, hash, now, nullTime(t.Expires))
		if err != nil {
			return fmt.Errorf("store: token %q: %w", t.Name, err)
		}
		return nil
	})
}

// TokenByHash is the token whose hash is hash, active or not; none is
// ErrNotFound.
func (s *Store) TokenByHash(ctx context.Context, hash string) (Token, error) {
	return scanOne(s.queryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE hash = ?`, hash), scanToken, "token")
}

// Tokens lists every token, by name.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.query(ctx, nil, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY name`)
	out, err := scanAll(rows, err, scanToken)
	if err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes the named token at at; a name with no token that is
// not yet revoked is ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, name string, at time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL`, at.UnixNano(), name)
		if err != nil {
			return fmt.Errorf("store: revoke token %q: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("token %q: %w", name, ErrNotFound)
		}
		return nil
	})
}

// HasActiveToken says whether some token of role admits its bearer at now.
func (s *Store) HasActiveToken(ctx context.Context, role string, now time.Time) (bool, error) {
	var n int64
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM api_tokens WHERE role = ? AND revoked_at IS NULL
		AND (expires_at IS NULL OR expires_at > ?)`, role, now.UnixNano()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: tokens: %w", err)
	}
	return n > 0, nil
}

const tokenColumns = `name, role, created_at, expires_at, revoked_at`

func scanToken(r scanner) (Token, error) {
	var t Token
	var created int64
	var expires, revoked sql.NullInt64
	if err := r.Scan(&t.Name, &t.Role, &created, &expires, &revoked); err != nil {
		return Token{}, err
	}
	t.Created = time.Unix(0, created)
	if expires.Valid {
		t.Expires = time.Unix(0, expires.Int64)
	}
	if revoked.Valid {
		t.Revoked = time.Unix(0, revoked.Int64)
	}
	return t, nil
}

// nullTime is t in unix ns, or NULL for the zero time.
func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}
