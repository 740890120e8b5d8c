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

func (p *Program) Helper()      {}
func (p *Program) Name() string { return p.name }

func (p *Program) Log(args ...any) { p.logf("%s", strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }
func (p *Program) Logf(format string, args ...any) {
	p.logf(format, args...)
}

func (p *Program) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "    %s: %s\n", p.name, fmt.Sprintf(format, args...))
}

func (p *Program) Fail() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *Program) FailNow() {
	p.Fail()
	panic(programExit{})
}

func (p *Program) Error(args ...any)                 { p.Log(args...); p.Fail() }
func (p *Program) Errorf(format string, args ...any) { p.Logf(format, args...); p.Fail() }
func (p *Program) Fatal(args ...any)                 { p.Log(args...); p.Fail(); panic(programExit{}) }
func (p *Program) Fatalf(format string, args ...any) {
	p.Logf(format, args...)
	p.Fail()
	panic(programExit{})
}
func (p *Program) Skip(args ...any)                 { p.Log(args...); p.SkipNow() }
func (p *Program) Skipf(format string, args ...any) { p.Logf(format, args...); p.SkipNow() }
func (p *Program) SkipNow() {
	p.mu.Lock()
	p.skipped = true
	p.mu.Unlock()
	panic(programExit{})
}
func (p *Program) Skipped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanup = append(p.cleanup, f)
	p.mu.Unlock()
}

func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp("", "vtb-prog-")
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (p *Program) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	os.Setenv(key, value)
	p.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}
