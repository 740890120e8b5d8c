package mutate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestList keeps the list honest as the code changes: a snippet that no
// longer occurs exactly once fails here, in make test, and not only in
// make mutate.
func TestList(t *testing.T) {
	root := testenv.SourceTree(t)
	list := List()
	if err := Check(root, list); err != nil {
		t.Error(err)
	}
	// Issue 10 asks for at least 23, across these packages.
	if len(list) < 23 {
		t.Errorf("%d mutations, want at least 23", len(list))
	}
	for _, dir := range []string{"dhcpd/", "tftpd/", "am/", "am/pxelink/", "internal/store/", "rc/", "internal/imaging/"} {
		if !slices.ContainsFunc(list, func(m Mutation) bool { return strings.HasPrefix(m.File, dir) }) {
			t.Errorf("no mutation in %s", dir)
		}
	}
}

func TestApply(t *testing.T) {
	src := []byte("a < b\nc < d\na <= b\n")
	tests := []struct {
		name, old, new string
		want           string // "" means an error
	}{
		{"once", "c < d", "c >= d", "a < b\nc >= d\na <= b\n"},
		{"twice", " < ", " > ", ""},
		{"missing", "e < f", "e > f", ""},
		{"empty", "", "x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Mutation{Name: tc.name, File: "f.go", Old: tc.old, New: tc.new}.Apply(src)
			if tc.want == "" {
				if err == nil {
					t.Errorf("Apply = %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("Apply = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCheckFindsEveryProblem(t *testing.T) {
	root := t.TempDir()
	testenv.WriteFile(t, filepath.Join(root, "p", "p.go"), "package p\n\nfunc f(a, b int) bool { return a < b }\n")
	list := []Mutation{
		{Name: "good", File: "p/p.go", Old: "a < b", New: "a <= b", Pkgs: []string{"./p"}, Why: "off by one"},
		{Name: "good", File: "p/p.go", Old: "a < b", New: "a > b", Pkgs: []string{"./p"}, Why: "a name used twice"},
		{Name: "gone", File: "p/p.go", Old: "a > b", New: "a < b", Pkgs: []string{"./p"}, Why: "snippet not there"},
		{Name: "nopkg", File: "p/p.go", Old: "a < b", New: "b < a", Pkgs: []string{"./q"}, Why: "no such package"},
		{Name: "slash", File: "p/p.go", Old: "a < b", New: "b < a", Pkgs: []string{"./p"}, Run: "TestA/sub", Why: "subtest pattern"},
		{Name: "same", File: "p/p.go", Old: "a < b", New: "a < b", Pkgs: []string{"./p"}, Why: "no change"},
		{Name: "nowhy", File: "p/p.go", Old: "a < b", New: "b < a", Pkgs: []string{"./p"}},
		{Name: "nofile", File: "p/none.go", Old: "a < b", New: "b < a", Pkgs: []string{"./p"}, Why: "no such file"},
	}
	err := Check(root, list)
	if err == nil {
		t.Fatal("Check = nil")
	}
	var got []string
	for _, line := range strings.Split(err.Error(), "\n") {
		got = append(got, strings.SplitN(line, ":", 2)[0])
	}
	want := []string{`mutation name "good"`, "gone", "nopkg", "slash", "same", "nowhy", "nofile"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\nfull error:\n%v", diff, err)
	}
}

func TestFailedTests(t *testing.T) {
	out := []byte(`=== RUN   TestA
--- FAIL: TestA (0.00s)
    --- FAIL: TestA/sub (0.00s)
--- PASS: TestB (0.00s)
FAIL
panic: test timed out after 1s
`)
	if diff := cmp.Diff([]string{"TestA", "TestA/sub", "(timed out)"}, failedTests(out)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestRunner runs the runner on a module of its own: a breakage its tests
// catch, one they miss, one that does not build, and one that only a
// program the test builds and runs with go run can see (the way
// internal/apptest builds netbootd).
func TestRunner(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test and go run on a module of its own")
	}
	root := t.TempDir()
	testenv.WriteFile(t, filepath.Join(root, "go.mod"), "module example.com/m\n\ngo 1.21\n")
	testenv.WriteFile(t, filepath.Join(root, "p", "p.go"), "package p\n\nfunc Less(a, b int) bool { return a < b }\n")
	testenv.WriteFile(t, filepath.Join(root, "p", "p_test.go"), `package p

import "testing"

func TestLess(t *testing.T) {
	if !Less(1, 2) || Less(2, 1) {
		t.Error("Less is wrong")
	}
}
`)
	testenv.WriteFile(t, filepath.Join(root, "show", "main.go"), `package main

import (
	"fmt"

	"example.com/m/p"
)

func main() { fmt.Println(p.Less(2, 1)) }
`)
	testenv.WriteFile(t, filepath.Join(root, "viaexec", "viaexec_test.go"), `package viaexec

import (
	"os/exec"
	"strings"
	"testing"
)

func TestShow(t *testing.T) {
	out, err := exec.Command("go", "run", "../show").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "false" {
		t.Errorf("go run: %s %v", out, err)
	}
}
`)
	tests := []struct {
		m      Mutation
		want   Outcome
		failed []string
	}{
		{Mutation{Name: "flip", File: "p/p.go", Old: "a < b", New: "a > b", Pkgs: []string{"./p"}}, Caught, []string{"TestLess"}},
		{Mutation{Name: "equal", File: "p/p.go", Old: "a < b", New: "a <= b", Pkgs: []string{"./p"}}, Survived, nil},
		{Mutation{Name: "nobuild", File: "p/p.go", Old: "a < b", New: "a <", Pkgs: []string{"./p"}}, Broken, nil},
		{Mutation{Name: "exec", File: "p/p.go", Old: "a < b", New: "a >= b", Pkgs: []string{"./viaexec"}, Run: "^TestShow$"}, Caught, []string{"TestShow"}},
	}
	r := &Runner{Root: root, Work: t.TempDir()}
	for _, tc := range tests {
		t.Run(tc.m.Name, func(t *testing.T) {
			res, err := r.Try(t.Context(), tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tc.want || !slices.Equal(res.Failed, tc.failed) {
				t.Errorf("outcome %s, failed %q; want %s, %q\n%s", res.Outcome, res.Failed, tc.want, tc.failed, res.Output)
			}
		})
	}
	// The tree itself is never changed.
	if b, err := os.ReadFile(filepath.Join(root, "p", "p.go")); err != nil || !strings.Contains(string(b), "a < b") {
		t.Errorf("p.go after the runs: %q %v", b, err)
	}

	// A test that fails unbroken shows in the baseline.
	testenv.WriteFile(t, filepath.Join(root, "p", "p_test.go"), "package p\n\nimport \"testing\"\n\nfunc TestLess(t *testing.T) { t.Error(\"always\") }\n")
	base, err := r.Baseline(t.Context(), []Mutation{tests[0].m, tests[3].m})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range base {
		got = append(got, b.Name+" "+string(b.Outcome))
	}
	if diff := cmp.Diff([]string{"baseline ./p caught", "baseline ./viaexec SURVIVED"}, got); diff != "" {
		t.Errorf("baseline (-want +got):\n%s", diff)
	}
}
