package rc

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// orbit-init's signals (cmd/orbit-init): SIGTERM reboots, SIGUSR2 powers
// off (SIGUSR1 halts). It stops every process, syncs, unmounts and calls
// reboot(2) itself: the RC never does.
const (
	sigReboot   = syscall.SIGTERM
	sigPoweroff = syscall.SIGUSR2
)

// signalInit syncs the disks and asks PID 1 to go down.
func signalInit(sig syscall.Signal) func(context.Context) error {
	return func(context.Context) error {
		syscall.Sync()
		if err := syscall.Kill(1, sig); err != nil {
			return fmt.Errorf("signal %v to PID 1: %w", sig, err)
		}
		return nil
	}
}

// canSignalInit checks that PID 1 can be signalled at all.
func canSignalInit() error {
	if err := syscall.Kill(1, 0); err != nil {
		return fmt.Errorf("cannot signal PID 1 (orbit-init): %w", err)
	}
	return nil
}

// ShellHook returns a hook that runs command with /bin/sh -c (the
// --reboot-cmd and --poweroff-cmd of orbit-rc).
func ShellHook(command string) func(context.Context) error {
	return func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", command, err, out)
		}
		return nil
	}
}

// power runs REBOOT or POWEROFF: sync, report success, then ask for it.
// The success is reported first because the node goes down right after.
func (r *rc) power(ctx context.Context, c proto.Command, rep *reporter) {
	hook := r.cfg.Reboot
	if c.Type == proto.Poweroff {
		hook = r.cfg.Poweroff
	}
	if r.cfg.PowerCheck != nil {
		if err := r.cfg.PowerCheck(); err != nil {
			rep.finish(ctx, proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: err.Error()})
			return
		}
	}
	syscall.Sync()
	rep.finish(ctx, proto.Report{State: proto.StateDone, Reply: proto.ReplyOK})
	r.log.Info("going down", "type", c.Type)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := hook(hctx); err != nil {
		r.log.Error("going down failed", "type", c.Type, "err", err)
	}
}
