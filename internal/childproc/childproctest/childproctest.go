// Package childproctest is childproc's test kit: a child that can prove it
// is still alive, for the tests that check a Pdeathsig child outlives the
// threads the Go runtime ends around it.
package childproctest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
)

// Cat is cat(1) started by childproc.StartLocked. It echoes a line only
// while it lives: once a Pdeathsig SIGKILL is queued it never returns to
// user space, so an echo proves it survived whatever came before.
type Cat struct {
	Cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File
	echoes *bufio.Reader
	exited chan struct{} // closed once cat has exited; then err is its exit error
	err    error
}

// StartCat starts cat with childproc.StartLocked; Close ends it.
func StartCat() (*Cat, error) {
	cmd := exec.Command("cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	out, ok := stdout.(*os.File)
	if !ok {
		return nil, errors.New("cat's stdout pipe is not a file")
	}
	done, err := childproc.StartLocked(cmd)
	if err != nil {
		return nil, err
	}
	c := &Cat{Cmd: cmd, stdin: stdin, stdout: out, echoes: bufio.NewReader(out), exited: make(chan struct{})}
	go func() {
		c.err = <-done
		close(c.exited)
	}()
	return c, nil
}

// Exited reports whether cat has exited, and with what error.
func (c *Cat) Exited() (exited bool, err error) {
	select {
	case <-c.exited:
		return true, c.err
	default:
		return false, nil
	}
}

// Echo writes line to cat and reads it back. An error means cat is gone,
// or hung: the deadline is generous, so reaching it is not slowness.
func (c *Cat) Echo(line string) error {
	if err := c.stdout.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return fmt.Errorf("cat: %w", err)
	}
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return fmt.Errorf("writing to cat: %w", err)
	}
	got, err := c.echoes.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading cat's echo: %w (got %q)", err, got)
	}
	if got != line+"\n" {
		return fmt.Errorf("cat echoed %q for %q", got, line)
	}
	return nil
}

// Close kills cat and waits for it: its exit status says nothing then.
func (c *Cat) Close() {
	_ = c.Cmd.Process.Kill() // fails only if cat has died already
	<-c.exited
}
