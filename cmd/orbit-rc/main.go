// Command orbit-rc is the orbit-pxe RAM image's Resource Controller
// (package rc). orbit-init starts it as /bin/orbit-rc, without arguments,
// with the ORBIT_* environment of package initramfs/layout, and restarts it
// with back-off whenever it exits. Every flag defaults to what orbit-init
// passes, so none is needed on a node:
//
//	--am URL            the appliance (default $ORBIT_AM, i.e. orbit.am= of the kernel
//	                    command line; else orbit.am= in --cmdline; else the boot server
//	                    of pxelinux's ip= in --cmdline; else --next-server)
//	--next-server IP    the DHCP next-server, taken as http://IP:5054
//	                    (default $ORBIT_NEXT_SERVER, else $ORBIT_DHCP_SERVER)
//	--cmdline FILE      kernel command line to read orbit.am= and ip= from (default /proc/cmdline)
//	--image-file FILE   the RAM image's name, for ENROLL (default /.orbit_image)
//	--state-dir DIR     keeps the enrollment across restarts of the RC (default /run/orbit-rc)
//	--disk-allow LIST   comma-separated globs of the disks LOAD_IMAGE and SAVE_IMAGE may
//	                    touch (default /dev/sd*,/dev/hd*,/dev/vd*,/dev/xvd*,/dev/nvme*n*,/dev/mmcblk*)
//	--mac MAC[,MAC]     MACs to enroll with (default $ORBIT_CONTROL_MAC, then every NIC's)
//	--hostname NAME     (default the host name orbit-init set)
//	--poll-wait 25s     how long one poll waits for a command
//	--max-backoff 30s   the longest wait between reconnection attempts
//	--reboot-cmd CMD    run by /bin/sh -c for REBOOT (default: sync, SIGTERM to PID 1)
//	--poweroff-cmd CMD  run by /bin/sh -c for POWEROFF (default: sync, SIGUSR2 to PID 1)
//	--log-format text|json, --log-level debug|info|warn|error
//
// It stops cleanly on SIGTERM or SIGINT (orbit-init sends SIGTERM to every
// process before a reboot). It exits 2 if nothing names the appliance.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/initramfs/layout"
	"github.com/orbit-lab/netboot/internal/logging"
	"github.com/orbit-lab/netboot/rc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage), errors.Is(err, rc.ErrNoAM):
		fmt.Fprintln(os.Stderr, "orbit-rc:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "orbit-rc:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("orbit-rc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nextDefault := os.Getenv(layout.EnvNextServer)
	if nextDefault == "" {
		nextDefault = os.Getenv(layout.EnvDHCPServer)
	}
	var (
		am          = fs.String("am", os.Getenv(layout.EnvAM), "appliance URL, http://HOST[:5054]")
		nextServer  = fs.String("next-server", nextDefault, "DHCP next-server: the appliance is http://IP:5054")
		cmdline     = fs.String("cmdline", "/proc/cmdline", "kernel command line to read orbit.am= and pxelinux's ip= from")
		imageFile   = fs.String("image-file", layout.ImageName, "file holding the RAM image's name")
		stateDir    = fs.String("state-dir", "/run/orbit-rc", "directory keeping the enrollment across RC restarts (\"\": none)")
		diskAllow   = fs.String("disk-allow", strings.Join(rc.DefaultDiskAllow, ","), "comma-separated globs of the disks the RC may read and write")
		macs        = fs.String("mac", "", "comma-separated MACs to enroll with (default: $ORBIT_CONTROL_MAC, then every NIC's)")
		hostname    = fs.String("hostname", "", "host name to report (default: the system's)")
		pollWait    = fs.Duration("poll-wait", 25*time.Second, "how long one poll waits for a command")
		maxBackoff  = fs.Duration("max-backoff", 30*time.Second, "longest wait between reconnection attempts")
		rebootCmd   = fs.String("reboot-cmd", "", "shell command for REBOOT (default: sync, then SIGTERM to PID 1)")
		poweroffCmd = fs.String("poweroff-cmd", "", "shell command for POWEROFF (default: sync, then SIGUSR2 to PID 1)")
		efiDir      = fs.String("efi-dir", "/sys/firmware/efi", "the kernel's UEFI directory: reported firmware and Secure Boot come from it")
		logFormat   = fs.String("log-format", "text", "log format: text or json")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log = log.With("svc", "orbit-rc")
	base, how, err := rc.FindAM(*am, *cmdline, *nextServer)
	if err != nil {
		return err
	}
	cfg := rc.Config{
		AM:         base,
		ImageFile:  *imageFile,
		StateDir:   *stateDir,
		DiskAllow:  splitList(*diskAllow),
		MACs:       splitList(*macs),
		ControlMAC: os.Getenv(layout.EnvControlMAC),
		Hostname:   *hostname,
		ImageName:  os.Getenv(layout.EnvImage),
		PollWait:   *pollWait,
		MaxBackoff: *maxBackoff,
		EFIDir:     *efiDir,
		Log:        log,
	}
	if *rebootCmd != "" || *poweroffCmd != "" {
		cfg.PowerCheck = func() error { return nil }
	}
	if *rebootCmd != "" {
		cfg.Reboot = rc.ShellHook(*rebootCmd)
	}
	if *poweroffCmd != "" {
		cfg.Poweroff = rc.ShellHook(*poweroffCmd)
	}
	log.Info("orbit-rc starting", "am", base, "found_by", how, "version", rc.Version)
	if err := rc.Run(ctx, cfg); err != nil {
		return err
	}
	log.Info("orbit-rc stopped")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
