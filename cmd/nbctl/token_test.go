package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestLoadToken: --token-file, else $NBCTL_TOKEN, else the config dir's
// netboot/token, else none.
func TestLoadToken(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("HOME", t.TempDir())
	flagFile := filepath.Join(t.TempDir(), "tok")
	testenv.WriteFile(t, flagFile, "nbt_flag\n")

	t.Setenv("NBCTL_TOKEN", "")
	if tok, err := loadToken(""); err != nil || tok != "" {
		t.Errorf("nothing set: %q, %v; want none", tok, err)
	}
	if _, err := loadToken(filepath.Join(cfg, "missing")); err == nil {
		t.Error("a missing --token-file: no error")
	}
	testenv.WriteFile(t, filepath.Join(cfg, "netboot", "token"), " nbt_file\n")
	if tok, _ := loadToken(""); tok != "nbt_file" {
		t.Errorf("config dir: %q, want nbt_file", tok)
	}
	t.Setenv("NBCTL_TOKEN", "nbt_env")
	if tok, _ := loadToken(""); tok != "nbt_env" {
		t.Errorf("environment: %q, want nbt_env", tok)
	}
	if tok, _ := loadToken(flagFile); tok != "nbt_flag" {
		t.Errorf("--token-file: %q, want nbt_flag", tok)
	}
}

func TestParseLifetime(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "30m": 30 * time.Minute} {
		if got, err := parseLifetime(in); err != nil || got != want {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-1h", "d", "soon", "1.5d"} {
		if _, err := parseLifetime(bad); err == nil {
			t.Errorf("parseLifetime(%q): no error", bad)
		}
	}
}

// TestTokenInClearWarning: nbctl says so when its token would cross the
// network in clear. The command (completion) contacts no server: no packet
// leaves for the documentation addresses named.
func TestTokenInClearWarning(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, tc := range []struct {
		server, token string
		warn          bool
	}{
		{"http://192.0.2.1:5054", "nbt_x", true},
		{"https://192.0.2.1:5443", "nbt_x", false},
		{"http://127.0.0.1:5054", "nbt_x", false},
		{"http://192.0.2.1:5054", "", false},
	} {
		t.Setenv("NBCTL_TOKEN", tc.token)
		var out, errs bytes.Buffer
		if err := run(t.Context(), []string{"--server", tc.server, "completion", "bash"}, &out, &errs); err != nil {
			t.Fatalf("%s: %v", tc.server, err)
		}
		if got := strings.Contains(errs.String(), "in clear"); got != tc.warn {
			t.Errorf("--server %s, token %q: warned %v, want %v (stderr %q)", tc.server, tc.token, got, tc.warn, errs.String())
		}
	}
}
