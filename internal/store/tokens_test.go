package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	now := time.Unix(1_800_000_000, 0)
	if err := s.CreateToken(ctx, Token{Name: "ec1", Role: "operator", Created: now}, "h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, Token{Name: "ec1", Role: "admin", Created: now}, "h2"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second active ec1: %v, want ErrConflict", err)
	}
	got, err := s.TokenByHash(ctx, "h1")
	if err != nil || got.Name != "ec1" || got.Role != "operator" || !got.Active(now) {
		t.Fatalf("TokenByHash(h1) = %+v, %v", got, err)
	}
	if _, err := s.TokenByHash(ctx, "h2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused token stored: %v", err)
	}
	if ok, err := s.HasActiveToken(ctx, "admin", now); err != nil || ok {
		t.Fatalf("HasActiveToken(admin) = %v, %v; want false", ok, err)
	}
	if err := s.RevokeToken(ctx, "ec1", now); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "ec1", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked twice: %v, want ErrNotFound", err)
	}
	if got, _ := s.TokenByHash(ctx, "h1"); got.Active(now) {
		t.Fatalf("revoked token active: %+v", got)
	}
	// A revoked name is free again; an expired one too, once expired.
	later := now.Add(time.Hour)
	if err := s.CreateToken(ctx, Token{Name: "ec1", Role: "viewer", Created: now, Expires: later}, "h3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TokenByHash(ctx, "h3"); !got.Active(now) || got.Active(later) || !got.Expires.Equal(later) {
		t.Fatalf("expiring token: %+v", got)
	}
	if err := s.CreateToken(ctx, Token{Name: "ec1", Role: "admin", Created: later}, "h4"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.HasActiveToken(ctx, "admin", later); err != nil || !ok {
		t.Fatalf("HasActiveToken(admin) = %v, %v; want true", ok, err)
	}
	list, err := s.Tokens(ctx)
	if err != nil || len(list) != 1 || list[0].Role != "admin" {
		t.Fatalf("Tokens = %+v, %v", list, err)
	}
}
