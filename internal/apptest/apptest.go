// Package apptest runs real netbootd processes for end-to-end tests: it
// builds the binaries once per test process, writes a config into a temp
// directory, starts netbootd on a loopback port and waits until it answers.
package apptest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds cmd/... once per test process and returns the directory
// holding netbootd and nbctl: .cache/apptest-bin in the source tree, so
// that test runs do not leave a copy each in /tmp. Test binaries of several
// packages build at once: each builds into a directory of its own and
// renames the binaries into place, which is atomic, and a binary replaced
// while it runs goes on running.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binDir = filepath.Join(root, ".cache", "apptest-bin")
		if buildErr = os.MkdirAll(binDir, 0o755); buildErr != nil {
			return
		}
		tmp, err := os.MkdirTemp(binDir, ".build-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("go", "build", "-o", tmp+"/", "./cmd/netbootd", "./cmd/nbctl")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		for _, name := range []string{"netbootd", "nbctl"} {
			if err := os.Rename(filepath.Join(tmp, name), filepath.Join(binDir, name)); err != nil {
				buildErr = err
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Appliance is one netbootd process and its directories.
type Appliance struct {
	t        testing.TB
	Bin      string // directory of the binaries
	Dir      string // everything of this appliance lives below
	TFTPRoot string
	CfgDir   string // TFTPRoot/pxelinux.cfg
	Config   string // path of the config file
	Seed     string // path of the seed inventory file (absent without Options.Inventory)
	URL      string // http://127.0.0.1:port
	Addr     string // 127.0.0.1:port
	TFTPAddr string // 127.0.0.1:port of the TFTP server, when Options.TFTP
	Log      *SyncBuffer
	args     []string
	netns    string
	cmd      *exec.Cmd
	done     <-chan error
}

// Options say what differs from the defaults.
type Options struct {
	Inventory string   // seed inventory YAML (written to a file)
	Images    []string // pxelinux config files to create in cfg_dir
	Extra     string   // more YAML appended to the config
	Args      []string // more netbootd flags
	TFTP      bool     // serve TFTP on a free loopback port
	Netns     string   // run netbootd (and Nbctl) inside this network namespace
	HTTPHost  string   // address the AM listens on (default 127.0.0.1), e.g. one inside Netns
}

// New writes a config and directories for an appliance; Start runs it.
func New(t testing.TB, o Options) *Appliance {
	t.Helper()
	a := &Appliance{t: t, Bin: Binaries(t), Dir: t.TempDir(), args: o.Args, netns: o.Netns}
	a.TFTPRoot = filepath.Join(a.Dir, "tftpboot")
	a.CfgDir = filepath.Join(a.TFTPRoot, "pxelinux.cfg")
	if err := os.MkdirAll(a.CfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, img := range o.Images {
		body := fmt.Sprintf("DEFAULT boel\nLABEL boel\nKERNEL linux-%s\nAPPEND initrd=initramfs-%s.gz\n", img, img)
		if err := os.WriteFile(filepath.Join(a.CfgDir, img), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.Seed = filepath.Join(a.Dir, "inventory.yaml")
	seed := a.Seed
	if o.Inventory != "" {
		if err := os.WriteFile(seed, []byte(o.Inventory), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.Addr = FreeTCPAddr(t)
	if o.HTTPHost != "" {
		_, port, _ := net.SplitHostPort(a.Addr)
		a.Addr = net.JoinHostPort(o.HTTPHost, port)
	}
	a.URL = "http://" + a.Addr
	if o.TFTP {
		a.TFTPAddr = FreeUDPAddr(t)
	}
	cfg := fmt.Sprintf("state_dir: %s\ntftp_root: %s\nhttp: { listen: %q }\ntftp: { listen: %q }\ninventory: { seed: %s }\n%s",
		filepath.Join(a.Dir, "state"), a.TFTPRoot, a.Addr, a.TFTPAddr, seed, o.Extra)
	a.Config = filepath.Join(a.Dir, "netbootd.yaml")
	if err := os.WriteFile(a.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// Start runs netbootd and waits until its API answers.
func (a *Appliance) Start() {
	a.t.Helper()
	a.Log = &SyncBuffer{}
	a.cmd = a.command(filepath.Join(a.Bin, "netbootd"), append([]string{"--config", a.Config}, a.args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.Log, a.Log
	// netbootd dies with the test binary, also when go test kills it.
	waited, err := childproc.StartLocked(a.cmd)
	if err != nil {
		a.t.Fatal(err)
	}
	a.done = waited
	a.t.Cleanup(func() {
		if a.cmd != nil {
			a.Kill()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-a.done:
			a.cmd = nil
			a.t.Fatalf("netbootd exited at start: %v\n%s", err, a.Log)
		default:
		}
		if a.netns != "" { // its loopback is not ours: ask from inside
			if _, err := a.Nbctl("testbeds"); err == nil {
				return
			}
		} else if resp, err := http.Get(a.URL + "/api/v1/testbeds"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("netbootd did not answer within 20s\n%s", a.Log)
}

// Stop sends SIGTERM and returns netbootd's exit error.
func (a *Appliance) Stop() error {
	a.t.Helper()
	return a.StopWith(syscall.SIGTERM)
}

// StopWith sends sig and returns netbootd's exit error once it has exited.
func (a *Appliance) StopWith(sig os.Signal) error {
	a.t.Helper()
	if a.cmd == nil {
		return nil
	}
	a.cmd.Process.Signal(sig)
	select {
	case err := <-a.done:
		a.cmd = nil
		return err
	case <-time.After(15 * time.Second):
		a.Kill()
		return fmt.Errorf("netbootd did not stop within 15s of %v", sig)
	}
}

// Kill ends netbootd at once, as a crash would.
func (a *Appliance) Kill() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Kill()
	<-a.done
	a.cmd = nil
}

// Nbctl runs nbctl against this appliance and returns its output and error.
func (a *Appliance) Nbctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return a.NbctlContext(ctx, args...)
}

// NbctlContext is Nbctl for commands that may take longer than a minute
// (an image build on a cold cache, nbctl load): ctx bounds it.
func (a *Appliance) NbctlContext(ctx context.Context, args ...string) (string, error) {
	out, err := a.NbctlCommand(ctx, args...).CombinedOutput()
	return string(out), err
}

// NbctlCommand is nbctl against this appliance as a command not yet
// started, for a test that signals it (ip netns exec execs nbctl itself,
// so the process is nbctl's).
func (a *Appliance) NbctlCommand(ctx context.Context, args ...string) *exec.Cmd {
	name, argv := a.argv(filepath.Join(a.Bin, "nbctl"), append([]string{"--server", a.URL}, args...))
	return exec.CommandContext(ctx, name, argv...)
}

// command runs name in the appliance's network namespace, if it has one.
func (a *Appliance) command(name string, args ...string) *exec.Cmd {
	name, args = a.argv(name, args)
	return exec.Command(name, args...)
}

func (a *Appliance) argv(name string, args []string) (string, []string) {
	if a.netns == "" {
		return name, args
	}
	return "ip", append([]string{"netns", "exec", a.netns, name}, args...)
}

// FreeTCPAddr returns a loopback address with a port that was free a moment ago.
func FreeTCPAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreeUDPAddr returns a loopback address with a UDP port that was free a
// moment ago.
func FreeUDPAddr(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// SyncBuffer is a bytes.Buffer safe for a writer and readers at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
