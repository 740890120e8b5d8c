// Package mutate is the mutation check behind `make mutate`: it breaks the
// code on purpose, one hand-picked breakage at a time (List), runs the
// tests that should notice, and reports the breakages they let through. A
// breakage that survives names a feature whose tests pass while it is
// broken.
//
// The source tree is never edited: each breakage is a Go build overlay
// (go help build, -overlay) passed in GOFLAGS, so that it also reaches the
// binaries a test builds for itself with `go build` (internal/apptest's
// netbootd and nbctl). The tests run in a mirror of the tree (Mirror), so
// the binaries they build never land in the tree's own .cache/apptest-bin,
// where a `make test` running beside them would pick them up.
//
// It is a development tool's library (bench/mutate), under internal/ so
// that nothing outside the module uses it; it imports no package of the
// module, only names their files and tests as data.
package mutate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Mutation is one deliberate breakage and the tests that must catch it.
type Mutation struct {
	Name string // unique, for the report and -run
	File string // slash-separated, relative to the module root
	// Old must occur exactly once in File: the list fails loudly when the
	// code it breaks has changed, instead of quietly breaking nothing.
	Old, New string
	Pkgs     []string // the packages whose tests run, e.g. "./dhcpd/ra"
	Run      string   // go test -run; "" runs every test of Pkgs
	Why      string   // what the breakage means to a user
}

// Apply returns src with m.Old replaced by m.New.
func (m Mutation) Apply(src []byte) ([]byte, error) {
	switch n := bytes.Count(src, []byte(m.Old)); {
	case m.Old == "":
		return nil, fmt.Errorf("%s: empty original snippet", m.Name)
	case n != 1:
		return nil, fmt.Errorf("%s: the original snippet occurs %d times in %s, want exactly once (has the code changed? update the list)", m.Name, n, m.File)
	}
	return bytes.Replace(src, []byte(m.Old), []byte(m.New), 1), nil
}

// Check reports every way the list does not fit the tree at root: a name
// used twice, a snippet not found exactly once, a change that changes
// nothing, a package that does not exist, a -run pattern with a slash
// (which go test would read as a subtest pattern when patterns are
// joined for the baseline).
func Check(root string, list []Mutation) error {
	var errs []error
	seen := map[string]bool{}
	for _, m := range list {
		if m.Name == "" || seen[m.Name] {
			errs = append(errs, fmt.Errorf("mutation name %q: empty or used twice", m.Name))
		}
		seen[m.Name] = true
		if m.Old == m.New {
			errs = append(errs, fmt.Errorf("%s: the replacement equals the original", m.Name))
		}
		if m.Why == "" {
			errs = append(errs, fmt.Errorf("%s: no why", m.Name))
		}
		if len(m.Pkgs) == 0 {
			errs = append(errs, fmt.Errorf("%s: no packages to test", m.Name))
		}
		for _, p := range m.Pkgs {
			if !strings.HasPrefix(p, "./") {
				errs = append(errs, fmt.Errorf("%s: package %q: want a ./relative path", m.Name, p))
			} else if fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil || !fi.IsDir() {
				errs = append(errs, fmt.Errorf("%s: package %q: no such directory", m.Name, p))
			}
		}
		if strings.Contains(m.Run, "/") {
			errs = append(errs, fmt.Errorf("%s: -run %q has a slash", m.Name, m.Run))
		} else if _, err := regexp.Compile(m.Run); err != nil {
			errs = append(errs, fmt.Errorf("%s: -run: %w", m.Name, err))
		}
		src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(m.File)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		if _, err := m.Apply(src); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Outcome is what the tests made of a breakage.
type Outcome string

// The outcomes; only Caught is a pass.
const (
	Caught   Outcome = "caught"   // a test failed: good
	Survived Outcome = "SURVIVED" // the tests passed with the code broken
	Broken   Outcome = "BROKEN"   // the mutated code does not build: fix the list
)

// Result is one breakage's outcome.
type Result struct {
	Mutation
	Outcome Outcome
	Failed  []string // the tests that failed (go test's --- FAIL lines)
	Took    time.Duration
	Output  string // go's output, for a broken build or -v
}

// Runner runs tests in a tree.
type Runner struct {
	Root    string        // the module root the tests run in (a Mirror), without symlinks
	Work    string        // a directory for overlay files
	Go      string        // the go command; "" is "go"
	Timeout time.Duration // go test -timeout for each run; 0 is go's default
}

// Baseline runs, without any breakage, every test the list names, one go
// test per package with the union of its patterns: a test failing here
// would count its breakages as caught while catching nothing.
func (r *Runner) Baseline(ctx context.Context, list []Mutation) ([]Result, error) {
	runs := map[string][]string{} // package -> patterns; nil: all tests
	all := map[string]bool{}
	var pkgs []string
	for _, m := range list {
		for _, p := range m.Pkgs {
			if _, ok := runs[p]; !ok && !all[p] {
				pkgs = append(pkgs, p)
			}
			if m.Run == "" {
				all[p] = true
				delete(runs, p)
			} else if !all[p] && !slices.Contains(runs[p], m.Run) {
				runs[p] = append(runs[p], m.Run)
			}
		}
	}
	var out []Result
	for _, p := range pkgs {
		run := strings.Join(runs[p], "|")
		res, err := r.test(ctx, "", []string{p}, run)
		if err != nil {
			return out, err
		}
		res.Name, res.Pkgs, res.Run = "baseline "+p, []string{p}, run
		out = append(out, res)
	}
	return out, nil
}

// Try applies m in an overlay, checks that the mutated package builds, and
// runs m's tests.
func (r *Runner) Try(ctx context.Context, m Mutation) (Result, error) {
	src, err := os.ReadFile(filepath.Join(r.Root, filepath.FromSlash(m.File)))
	if err != nil {
		return Result{}, fmt.Errorf("mutate: %w", err)
	}
	mutated, err := m.Apply(src)
	if err != nil {
		return Result{}, fmt.Errorf("mutate: %w", err)
	}
	file := filepath.Join(r.Root, filepath.FromSlash(m.File))
	repl := filepath.Join(r.Work, "mutated-"+filepath.Base(file))
	if err := os.WriteFile(repl, mutated, 0o644); err != nil {
		return Result{}, fmt.Errorf("mutate: %w", err)
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {file: repl}})
	if err != nil {
		return Result{}, fmt.Errorf("mutate: %w", err)
	}
	ov := filepath.Join(r.Work, "overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		return Result{}, fmt.Errorf("mutate: %w", err)
	}

	start := time.Now()
	build := r.cmd(ctx, ov, "build", "-o", os.DevNull, "./"+filepath.ToSlash(filepath.Dir(m.File)))
	if out, err := build.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{Mutation: m, Outcome: Broken, Took: time.Since(start), Output: string(out)}, nil
	}
	res, err := r.test(ctx, ov, m.Pkgs, m.Run)
	res.Mutation = m
	res.Took = time.Since(start)
	if res.Outcome == Caught && len(res.Failed) == 0 && strings.Contains(res.Output, "[build failed]") {
		res.Outcome = Broken
	}
	return res, err
}

// test runs go test; overlay "" means none. A pass is Survived, a failure
// Caught: the caller names it for what it ran.
func (r *Runner) test(ctx context.Context, overlay string, pkgs []string, run string) (Result, error) {
	args := []string{"test", "-count=1", "-vet=off"}
	if r.Timeout > 0 {
		args = append(args, "-timeout", r.Timeout.String())
	}
	if run != "" {
		args = append(args, "-run", run)
	}
	start := time.Now()
	cmd := r.cmd(ctx, overlay, append(args, pkgs...)...)
	out, err := cmd.CombinedOutput()
	res := Result{Outcome: Survived, Took: time.Since(start), Output: string(out), Failed: failedTests(out)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.As(err, &exit):
		res.Outcome = Caught
	case err != nil:
		return res, fmt.Errorf("mutate: go test: %w", err)
	}
	return res, nil
}

func (r *Runner) cmd(ctx context.Context, overlay string, args ...string) *exec.Cmd {
	g := r.Go
	if g == "" {
		g = "go"
	}
	cmd := exec.CommandContext(ctx, g, args...)
	cmd.Dir = r.Root
	// PWD too: the go command takes it for its directory, and an overlay
	// names files by the path the go command sees.
	cmd.Env = append(os.Environ(), "PWD="+r.Root)
	if overlay != "" {
		// GOFLAGS, not a flag: the tests' own go build sees it too.
		cmd.Env = append(cmd.Env, "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -overlay="+overlay))
	}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)|^panic: test timed out`)

// failedTests lists the failing tests in go test's output, and a timeout.
func failedTests(out []byte) []string {
	var names []string
	for _, m := range failLine.FindAllSubmatch(out, -1) {
		name := string(m[1])
		if name == "" {
			name = "(timed out)"
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// Mirror makes dst a copy of the files git knows in src (tracked, and
// untracked but not ignored, so work in progress counts), keeping dst's
// .cache; a file no longer in src goes.
func Mirror(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("mutate: git ls-files: %w", err)
	}
	ents, err := os.ReadDir(dst)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mutate: %w", err)
	}
	for _, e := range ents {
		if e.Name() != ".cache" {
			if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
				return fmt.Errorf("mutate: %w", err)
			}
		}
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		if err := copyFile(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted in the work tree, not yet in the index
	}
	if err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("mutate: %w", err)
		}
		return os.Symlink(target, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("mutate: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	return nil
}
