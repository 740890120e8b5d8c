package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// completionScript is what nbctl completion bash prints, in a file.
func completionScript(t *testing.T) string {
	t.Helper()
	var out, errs bytes.Buffer
	if err := run(t.Context(), []string{"completion", "bash"}, &out, &errs); err != nil {
		t.Fatalf("nbctl completion bash: %v\n%s", err, errs.String())
	}
	path := filepath.Join(t.TempDir(), "nbctl")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// complete runs the script's completion function in bash on a command
// line whose last word is the one under the cursor, and returns what it
// offers.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	const driver = `source "$0" && COMP_WORDS=("$@") && COMP_CWORD=$(($# - 1)) && _nbctl && printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command("bash", append([]string{"-c", driver, script}, words...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("completing %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

// TestCompletionBash: the script bash accepts names every command of the
// table and offers, on a command line, its words, each command's flags
// (every flag its synopsis names among them) and a flag's listed values;
// an operand or another value is left to file names.
func TestCompletionBash(t *testing.T) {
	testenv.Programs(t, "Debian: bash", "bash")
	script := completionScript(t)
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	text := testenv.ReadFile(t, script)
	specs := (&cli{}).commands()
	synFlag := regexp.MustCompile(`--[a-z][a-z0-9-]*`)
	for _, s := range specs {
		if !strings.Contains(text, "\t\""+s.name+"\") echo ") {
			t.Errorf("the script has no case for %q", s.name)
		}
		words := append([]string{"nbctl"}, strings.Fields(s.name)...)
		if len(words) == 3 {
			if got := complete(t, script, words[0], words[1], ""); !slices.Contains(got, words[2]) {
				t.Errorf("nbctl %s <TAB>: %q, want %q among them", words[1], got, words[2])
			}
		}
		got := complete(t, script, append(words, "--")...)
		for _, f := range append(synFlag.FindAllString(s.args, -1), "--help") {
			if !slices.Contains(got, f) {
				t.Errorf("nbctl %s --<TAB>: %q, want %s (its synopsis names it)", s.name, got, f)
			}
		}
	}
	for _, tc := range []struct {
		words []string // the last is the word under the cursor
		want  []string // exactly, in any order
	}{
		{[]string{"nbctl", ""}, []string{"inventory", "nodes", "testbeds", "images", "boot", "rc", "disk", "load", "save", "token", "tls", "audit", "image", "completion", "help"}},
		{[]string{"nbctl", "-"}, []string{"--help", "--ca", "--fingerprint", "--server", "--token-file"}},
		{[]string{"nbctl", "--server", "http://a:5054", "--ca", "ca.pem", "bo"}, []string{"boot"}},
		{[]string{"nbctl", "--server", "=", "http://a:5054", "t"}, []string{"testbeds", "token", "tls"}},
		{[]string{"nbctl", "-server", "http://a:5054", "no"}, []string{"nodes"}},
		{[]string{"nbctl", "nodes", ""}, []string{"list", "show", "events", "discovered"}},
		{[]string{"nbctl", "nodes", "--"}, []string{"--help", "--domain", "--json"}},
		{[]string{"nbctl", "nodes", "--json", "--d"}, []string{"--domain"}},
		{[]string{"nbctl", "nodes", "events", "--domain", "sb8", "--f"}, []string{"--follow"}},
		{[]string{"nbctl", "boot", "set", "--im"}, []string{"--image"}},
		{[]string{"nbctl", "boot", "-"}, nil},
		{[]string{"nbctl", "load", "--image", "x", "--no"}, []string{"--nodes", "--no-reboot"}},
		{[]string{"nbctl", "save", "--re"}, []string{"--replace"}},
		{[]string{"nbctl", "token", "create", "--role", ""}, []string{"viewer", "operator", "admin"}},
		{[]string{"nbctl", "token", "create", "--name", "a", "--role", "op"}, []string{"operator"}},
		{[]string{"nbctl", "token", "create", "--name", ""}, nil},
		{[]string{"nbctl", "disk", "put", "--as-is", "--chunk-size", "4096", ""}, nil},
		{[]string{"nbctl", "nodes", "show", "node1", "--"}, nil},
		{[]string{"nbctl", "rc", "exec", "node1", "--", "--"}, nil},
		{[]string{"nbctl", "completion", ""}, []string{"bash"}},
		{[]string{"nbctl", "help", "t"}, []string{"testbeds", "token", "tls"}},
		{[]string{"nbctl", "help", "disk", "p"}, []string{"put"}},
		{[]string{"nbctl", "frobnicate", ""}, nil},
	} {
		got := complete(t, script, tc.words...)
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%q: offered %q, want %q", tc.words, got, want)
		}
	}
}

// TestCompletionUsage: completion takes one shell it knows.
func TestCompletionUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion"}, "usage: nbctl completion bash"},
		{[]string{"completion", "zsh"}, `no script for shell "zsh" (only bash)`},
		{[]string{"completion", "bash", "x"}, `unexpected argument "x"`},
	} {
		err := run(t.Context(), tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
