// Command mutate is the mutation check (make mutate): it applies each
// breakage of internal/mutate's list to the code in turn, runs the tests
// named for it, and reports the breakages the tests let through. It exits
// non-zero when one survives, does not build, or when a test fails
// without any breakage (the baseline run that comes first).
//
// Usage:
//
//	go run ./bench/mutate                  # the whole list
//	go run ./bench/mutate -run 'store|ra-' # the breakages whose names match
//	go run ./bench/mutate -list            # print the list
//
// The tests run in a mirror of the source tree, kept between runs (so
// that the build cache stays warm) in the user's cache directory, e.g.
// ~/.cache/netboot-mutate/<hash of the tree's path>, with each breakage as
// a Go build overlay: the tree is never edited.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orbit-lab/netboot/internal/modroot"
	"github.com/orbit-lab/netboot/internal/mutate"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

func run() error {
	only := flag.String("run", "", "only the breakages whose names match this regexp")
	list := flag.Bool("list", false, "print the list and exit")
	baseline := flag.Bool("baseline", true, "first run every named test without a breakage")
	timeout := flag.Duration("timeout", 10*time.Minute, "go test -timeout of each run")
	verbose := flag.Bool("v", false, "print go test's output of every run")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := modroot.Find()
	if err != nil {
		return err
	}

	re, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-run: %w", err)
	}
	var todo []mutate.Mutation
	for _, m := range mutate.List() {
		if re.MatchString(m.Name) {
			todo = append(todo, m)
		}
	}
	if err := mutate.Check(src, todo); err != nil {
		return fmt.Errorf("the list does not fit the code:\n%w", err)
	}
	if *list {
		tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFILE\tTESTS\tWHY")
		for _, m := range todo {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.File, tests(m), m.Why)
		}
		return tw.Flush()
	}

	// Not under the tree's .cache, which a work tree may share with
	// others through a symlink.
	cache, err := os.UserCacheDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(cache, "netboot-mutate", fmt.Sprintf("%x", sha256.Sum256([]byte(src)))[:16])
	if err := os.MkdirAll(filepath.Join(dir, "tree"), 0o755); err != nil {
		return err
	}
	// One run at a time per tree: a second would rewrite the mirror under
	// the first one's tests.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("another mutation check of %s runs: %w", src, err)
	}
	tree, err := filepath.EvalSymlinks(filepath.Join(dir, "tree"))
	if err != nil {
		return err
	}
	if err := mutate.Mirror(ctx, src, tree); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r := &mutate.Runner{Root: tree, Work: work, Timeout: *timeout}
	start := time.Now()

	bad := 0
	if *baseline {
		fmt.Printf("baseline: the named tests of %d breakages, unbroken\n", len(todo))
		base, err := r.Baseline(ctx, todo)
		if err != nil {
			return err
		}
		for _, b := range base {
			ok := b.Outcome == mutate.Survived // passed
			fmt.Printf("  %-40s %s  %v\n", b.Name, map[bool]string{true: "ok", false: "FAIL"}[ok], b.Took.Round(time.Second))
			if !ok || *verbose {
				fmt.Print(indent(b.Output))
			}
			if !ok {
				bad++
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d packages fail without any breakage: fix them first", bad)
		}
	}

	var results []mutate.Result
	for i, m := range todo {
		res, err := r.Try(ctx, m)
		if err != nil {
			return err
		}
		results = append(results, res)
		fmt.Printf("[%d/%d] %-40s %-8s %v  %s\n", i+1, len(todo), m.Name, res.Outcome, res.Took.Round(time.Second), strings.Join(res.Failed, " "))
		if res.Outcome == mutate.Broken || *verbose {
			fmt.Print(indent(res.Output))
		}
	}

	fmt.Printf("\n%d breakages in %v:\n\n", len(results), time.Since(start).Round(time.Second))
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOUTCOME\tFILE\tCAUGHT BY")
	for _, res := range results {
		by := strings.Join(res.Failed, " ")
		if res.Outcome != mutate.Caught {
			by = "-"
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Name, res.Outcome, res.File, by)
	}
	tw.Flush()
	for _, res := range results {
		if res.Outcome != mutate.Caught {
			fmt.Printf("\n%s %s: %s\n  tests: %s\n", res.Outcome, res.Name, res.Why, tests(res.Mutation))
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d breakages not caught", bad, len(results))
	}
	fmt.Println("\nevery breakage caught")
	return nil
}

func tests(m mutate.Mutation) string {
	s := strings.Join(m.Pkgs, " ")
	if m.Run != "" {
		s += " -run '" + m.Run + "'"
	}
	return s
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
