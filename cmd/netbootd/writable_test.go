package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestReadOnlyDirs: a state_dir, cfg_dir or tftp_root/grub on a read-only file system (as
// netbootd's unit makes /usr, /boot and /etc) stops netbootd at start with
// the config key, the directory and the unit setting that would allow it.
// netbootd runs in a mount namespace of its own where one directory is
// bind-mounted read-only.
func TestReadOnlyDirs(t *testing.T) {
	testenv.Root(t, "a read-only bind mount in a mount namespace")
	testenv.Programs(t, "Debian: util-linux, mount; make test installs them", "unshare", "mount")
	bin := apptest.Binaries(t)
	dir := t.TempDir()
	ro, rw := filepath.Join(dir, "ro"), filepath.Join(dir, "rw")
	for _, d := range []string{"state", "tftpboot/pxelinux.cfg"} {
		for _, base := range []string{ro, rw} {
			if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name, state, tftp string
		extra             string
		want              []string
	}{
		{"state_dir", filepath.Join(ro, "state"), filepath.Join(rw, "tftpboot"), "", []string{
			"state_dir " + filepath.Join(ro, "state") + " is on a read-only file system",
			"ReadWritePaths=" + filepath.Join(ro, "state"),
		}},
		{"state_dir to be made", filepath.Join(ro, "state", "new"), filepath.Join(rw, "tftpboot"), "", []string{
			"state_dir " + filepath.Join(ro, "state", "new") + " is on a read-only file system",
		}},
		{"cfg_dir", filepath.Join(rw, "state"), filepath.Join(ro, "tftpboot"), "", []string{
			"pxe.cfg_dir " + filepath.Join(ro, "tftpboot", "pxelinux.cfg") + " is on a read-only file system",
			"ProtectSystem=full", "ReadWritePaths=" + filepath.Join(ro, "tftpboot", "pxelinux.cfg"),
		}},
		{"grub", filepath.Join(rw, "state"), filepath.Join(ro, "tftpboot"), "pxe: { cfg_dir: " + filepath.Join(rw, "tftpboot", "pxelinux.cfg") + " }\n", []string{
			"tftp_root/grub " + filepath.Join(ro, "tftpboot", "grub") + " is on a read-only file system",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "netbootd.yaml")
			testenv.WriteFile(t, cfg, "state_dir: "+tt.state+"\ntftp_root: "+tt.tftp+"\nhttp: { listen: \"127.0.0.1:0\" }\ntftp: { listen: \"\" }\ninventory: { seed: \"\" }\n"+tt.extra)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
				`mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; exec "$2" --config "$3"`,
				"sh", ro, filepath.Join(bin, "netbootd"), cfg)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("netbootd kept running:\n%s", out)
			}
			if err == nil {
				t.Fatalf("netbootd started:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
