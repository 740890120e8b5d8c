// Package benchproc is what the benchmarks share about their own process:
// each runs the server it measures as itself re-run with -serve (a child
// process, so that the server's CPU and memory are measured apart from the
// load generator's), and may profile it.
package benchproc

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// ServeFlag is the argument that, first on a benchmark's command line,
// runs its server child.
const ServeFlag = "-serve"

// Child runs serve with the rest of the arguments and exits, if the
// program was started as a server child; otherwise it returns.
func Child(serve func(args []string) error) {
	if len(os.Args) < 2 || os.Args[1] != ServeFlag {
		return
	}
	if err := serve(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Run runs a benchmark until it ends, limit passes or SIGINT or SIGTERM
// stops it, and exits 1 if it failed.
func Run(limit time.Duration, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, limit)
	err := run(ctx)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// ChildContext is a server child's context: it ends on SIGINT or SIGTERM,
// or when stdin reaches EOF (the parent holds the child's stdin open, so
// EOF means it is gone).
func ChildContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		// A read error ends the wait as EOF does: either way the parent
		// can no longer be heard.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, func() { cancel(); stop() }
}

// CPUProfile profiles the whole process into path until stop is called;
// with path "" it does nothing.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// LoadAvg is the machine's 1-minute load average ("?" if unknown): the
// benchmarks share the machine, and say how busy it was beside each result.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
