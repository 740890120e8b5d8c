package rc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/rc"
	"github.com/orbit-lab/netboot/rc/proto"
)

// TestExecuteWithoutAShell: on an image without /bin/sh (the default RAM
// image), EXECUTE with args runs the program itself, by path or found on
// the RC's PATH, its arguments untouched by any shell; a command line
// (nbctl rc exec --shell) fails saying there is no shell and what to do.
func TestExecuteWithoutAShell(t *testing.T) {
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Fatalf("echo: %v", err) // coreutils: every machine that runs the tests has it
	}
	// PATH holds only a directory of ours: a program found there was found
	// on the PATH, not anywhere else.
	bin := t.TempDir()
	if err := os.Symlink(echo, filepath.Join(bin, "orbit-echo")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	f, srv := newFakeAM(t)
	noShell := filepath.Join(t.TempDir(), "sh") // never created
	runRC(t, srv.URL, func(c *rc.Config) { c.Shell = noShell })

	tests := []struct {
		name   string
		cmd    proto.Command
		state  string
		stdout string // exactly, when done
		err    string // a piece of the error, when failed
	}{
		{"an absolute path, words as they are", proto.Command{Args: []string{echo, "a;", "$HOME", "*"}}, proto.StateDone, "a; $HOME *\n", ""},
		{"a program found on the PATH", proto.Command{Args: []string{"orbit-echo", "found"}}, proto.StateDone, "found\n", ""},
		{"a program on no PATH", proto.Command{Args: []string{"no-such-program"}}, proto.StateFailed, "", `"no-such-program": executable file not found in $PATH`},
		{"a command line, and no shell", proto.Command{Command: "echo hi"}, proto.StateFailed, "", "this image has no shell (" + noShell + " does not exist"},
	}
	for i, tc := range tests {
		c := tc.cmd
		c.ID, c.Enrollment, c.HRN, c.Type = int64(i+1), fakeEnrollment, "n1", proto.Execute
		env, err := proto.Sign(c, f.secrets[0])
		if err != nil {
			t.Fatal(err)
		}
		f.send(env)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, all := f.final(int64(i + 1))
			var stdout strings.Builder
			for _, r := range all {
				stdout.Write(r.Stdout)
			}
			switch {
			case rep.State != tc.state:
				t.Errorf("%s %q, want %s", rep.State, rep.Error, tc.state)
			case tc.state == proto.StateDone && stdout.String() != tc.stdout:
				t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
			case tc.err != "" && !strings.Contains(rep.Error, tc.err):
				t.Errorf("error %q, want it to say %q", rep.Error, tc.err)
			}
		})
	}
}
