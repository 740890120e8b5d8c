package vtestbed

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// Program stands in for a *testing.T in programs that use the testbed
// outside `go test` (bench/boot): Fatal and Skip end the function given to
// Run, cleanups run in reverse order when it ends, logs go to Out. It
// implements the testing.TB methods this package and internal/apptest
// call: Helper, Name, Log(f), Error(f), Fatal(f), Fail, FailNow, Failed,
// Skip(f), SkipNow, Skipped, Cleanup, TempDir, Setenv. Any other method
// panics (the embedded interface is nil).
type Program struct {
	testing.TB // nil: only the methods below may be called

	name    string
	out     io.Writer
	mu      sync.Mutex
	failed  bool
	skipped bool
	cleanup []func()
}

var _ testing.TB = (*Program)(nil)

// ErrSkipped is returned by RunProgram when the function called Skip.
var ErrSkipped = errors.New("skipped")

type programExit struct{}

// RunProgram runs f with a Program named name that logs to out, then its
// cleanups. It returns an error if f failed (Error, Fatal), ErrSkipped
// (wrapped, with the reason logged) if it skipped, and nil otherwise.
// Fatal, FailNow and Skip must be called from the goroutine running f.
func RunProgram(name string, out io.Writer, f func(t testing.TB)) (err error) {
	p := &Program{name: name, out: out}
	defer func() {
		r := recover()
		p.runCleanups()
		if r != nil {
			if _, ok := r.(programExit); !ok {
				panic(r)
			}
		}
		switch {
		case p.Failed():
			err = fmt.Errorf("%s failed", name)
		case p.skipped:
			err = fmt.Errorf("%s: %w", name, ErrSkipped)
		}
	}()
	f(p)
	return nil
}

func (p *Program) runCleanups() {
	for {
		p.mu.Lock()
		if len(p.cleanup) == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanup[len(p.cleanup)-1]
		p.cleanup = p.cleanup[:len(p.cleanup)-1]
		p.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(programExit); !ok {
						panic(r)
					}
				}
			}()
			f()
		}()
	}
}

// Helper is testing.TB's; a Program prints no file:line, so it does nothing.
func (p *Program) Helper() {}

// Name is testing.TB's: the name given to RunProgram.
func (p *Program) Name() string { return p.name }

// Log is testing.TB's: the line goes to the Program's output at once.
func (p *Program) Log(args ...any) { p.logf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }

// Logf is testing.TB's, as Log.
func (p *Program) Logf(format string, args ...any) {
	p.logf(format, args...)
}

func (p *Program) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "    %s: %s\n", p.name, fmt.Sprintf(format, args...))
}

// Fail is testing.TB's: RunProgram then returns an error.
func (p *Program) Fail() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

// Failed is testing.TB's.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// FailNow is testing.TB's: it ends the function given to RunProgram.
func (p *Program) FailNow() {
	p.Fail()
	panic(programExit{})
}

// Error is testing.TB's: Log, then Fail.
func (p *Program) Error(args ...any) { p.Log(args...); p.Fail() }

// Errorf is testing.TB's: Logf, then Fail.
func (p *Program) Errorf(format string, args ...any) { p.Logf(format, args...); p.Fail() }

// Fatal is testing.TB's: Log, then FailNow.
func (p *Program) Fatal(args ...any) { p.Log(args...); p.FailNow() }

// Fatalf is testing.TB's: Logf, then FailNow.
func (p *Program) Fatalf(format string, args ...any) { p.Logf(format, args...); p.FailNow() }

// Skip is testing.TB's: Log, then SkipNow.
func (p *Program) Skip(args ...any) { p.Log(args...); p.SkipNow() }

// Skipf is testing.TB's: Logf, then SkipNow.
func (p *Program) Skipf(format string, args ...any) { p.Logf(format, args...); p.SkipNow() }

// SkipNow is testing.TB's: it ends the function given to RunProgram, which
// then returns ErrSkipped.
func (p *Program) SkipNow() {
	p.mu.Lock()
	p.skipped = true
	p.mu.Unlock()
	panic(programExit{})
}

// Skipped is testing.TB's.
func (p *Program) Skipped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Cleanup is testing.TB's: RunProgram calls f once the function it was
// given has ended, the last registered first.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanup = append(p.cleanup, f)
	p.mu.Unlock()
}

// TempDir is testing.TB's: a new directory, removed by a cleanup.
func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp("", "vtb-prog-")
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Setenv is testing.TB's: a cleanup puts the old value back.
func (p *Program) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() {
		var err error
		if had {
			err = os.Setenv(key, old)
		} else {
			err = os.Unsetenv(key)
		}
		if err != nil {
			p.Error(err)
		}
	})
}
