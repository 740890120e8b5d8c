package rc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// execute runs an EXECUTE command: its output goes to the appliance as it
// comes, and its exit code at the end. A program that exits non-zero is a
// command done (reply ERROR, with the code); one that cannot start, or is
// killed, has failed.
func (r *rc) execute(ctx context.Context, c proto.Command, rep *reporter) proto.Report {
	runCtx := ctx // the command's; reports go on with ctx
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: fmt.Sprintf("timeout %q is not a duration", c.Timeout)}
		}
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var cmd *exec.Cmd
	switch {
	case c.Command != "":
		// Said before the start fails with a bare "no such file", which
		// names neither the shell nor the way out.
		if _, err := os.Stat(r.cfg.Shell); errors.Is(err, fs.ErrNotExist) {
			return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: fmt.Sprintf(
				"this image has no shell (%s does not exist: only images built with the debug shell have one): run the program without a shell (nbctl rc exec without --shell)", r.cfg.Shell)}
		}
		cmd = exec.CommandContext(runCtx, r.cfg.Shell, "-c", c.Command)
	case len(c.Args) > 0:
		// No shell: the program is found as given, or on the RC's PATH.
		cmd = exec.CommandContext(runCtx, c.Args[0], c.Args[1:]...)
	default:
		return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: "EXECUTE without a command"}
	}
	cmd.Dir = "/"
	cmd.Stdout = streamWriter{p: rep}
	cmd.Stderr = streamWriter{p: rep, stderr: true}
	// The whole process group goes when the command is stopped, and Wait
	// does not wait for the output of what it left running in the
	// background for more than a moment.
	ownGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	rep.start(ctx)
	if err := cmd.Start(); err != nil {
		return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: "start: " + err.Error()}
	}
	err := cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	var ee *exec.ExitError
	switch {
	case code >= 0 && (err == nil || errors.As(err, &ee) || errors.Is(err, exec.ErrWaitDelay)):
		rp := proto.Report{State: proto.StateDone, Reply: proto.ReplyOK, ExitCode: &code}
		if code != 0 {
			rp.Reply = proto.ReplyError
		}
		return rp
	case ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: "killed: timeout " + c.Timeout + " reached"}
	case ctx.Err() != nil:
		return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: "killed: the RC is stopping"}
	}
	return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: fmt.Sprintf("%v (%s)", err, cmd.ProcessState)}
}
