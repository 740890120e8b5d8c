package vtestbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Line is a line of a serial console, with the time this host first saw it
// complete in the log file (to within Console's poll interval).
type Line struct {
	At   time.Time
	Text string // without the line end; "\r" removed
}

// Console follows a serial log file that QEMU writes (-serial file:PATH)
// and time-stamps its lines as they appear. It reads the file every Poll
// from Start until Stop.
type Console struct {
	Path string
	Poll time.Duration // default 20ms

	mu      sync.Mutex
	lines   []Line
	partial []byte        // an unfinished last line
	wake    chan struct{} // closed and replaced when lines arrive
	stopped bool
	stop    chan struct{}
	done    chan struct{}
	off     int64
}

// ErrConsoleStopped is returned by waits on a console that no longer
// follows its file (the machine is gone) when the line did not appear.
var ErrConsoleStopped = errors.New("console stopped")

// NewConsole returns a console following path (the file may not exist yet).
func NewConsole(path string) *Console {
	return &Console{Path: path, wake: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start follows the file in a goroutine.
func (c *Console) Start() {
	poll := c.Poll
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	go func() {
		defer close(c.done)
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			c.readMore()
			select {
			case <-c.stop:
				c.readMore() // what was written last
				c.mu.Lock()
				if len(c.partial) > 0 { // an unfinished line is a line now
					c.lines = append(c.lines, Line{At: time.Now(), Text: string(c.partial)})
					c.partial = nil
				}
				c.stopped = true
				close(c.wake)
				c.mu.Unlock()
				return
			case <-t.C:
			}
		}
	}()
}

// Stop reads what is left and stops following; waits end.
func (c *Console) Stop() {
	c.mu.Lock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *Console) readMore() {
	f, err := os.Open(c.Path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return
	}
	data, err := io.ReadAll(f)
	if len(data) == 0 {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += int64(len(data))
	c.feed(now, data)
	_ = err
}

// feed splits data into lines; the caller holds mu.
func (c *Console) feed(now time.Time, data []byte) {
	buf := slices.Concat(c.partial, data)
	n := 0
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		text := strings.ReplaceAll(string(buf[:i]), "\r", "")
		c.lines = append(c.lines, Line{At: now, Text: text})
		buf = buf[i+1:]
		n++
	}
	c.partial = append([]byte(nil), buf...)
	if n > 0 {
		close(c.wake)
		c.wake = make(chan struct{})
	}
}

// Lines returns the complete lines seen so far.
func (c *Console) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...)
}

// Text returns everything read so far, lines joined by "\n".
func (c *Console) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	b.Write(bytes.ReplaceAll(c.partial, []byte("\r"), nil))
	return b.String()
}

// Find returns the first line matching re, if one was seen.
func (c *Console) Find(re *regexp.Regexp) (Line, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if re.MatchString(l.Text) {
			return l, true
		}
	}
	return Line{}, false
}

// Wait waits for the first line matching re (one seen before the call
// counts). It fails when ctx ends or the console stops without one.
func (c *Console) Wait(ctx context.Context, re *regexp.Regexp) (Line, error) {
	for {
		c.mu.Lock()
		for _, l := range c.lines {
			if re.MatchString(l.Text) {
				c.mu.Unlock()
				return l, nil
			}
		}
		wake, stopped := c.wake, c.stopped
		c.mu.Unlock()
		if stopped {
			return Line{}, fmt.Errorf("serial %s: no line matching %q: %w", c.Path, re, ErrConsoleStopped)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return Line{}, fmt.Errorf("serial %s: no line matching %q: %w", c.Path, re, ctx.Err())
		}
	}
}

// WaitLine waits for a line equal to text (after trimming spaces).
func (c *Console) WaitLine(ctx context.Context, text string) (Line, error) {
	return c.Wait(ctx, regexp.MustCompile(`^\s*`+regexp.QuoteMeta(text)+`\s*$`))
}
