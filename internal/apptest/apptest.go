// Package apptest runs real netbootd processes for end-to-end tests: it
// builds the binaries once per test process, writes a config into a temp
// directory, starts netbootd on a loopback port of its own choosing (port 0:
// no probe for a free port that another test package may take meanwhile)
// and waits until netbootd says, in its --ready-file, which port it bound.
//
// It is a test kit: it runs the binaries (go build), never links the
// services, and imports only leaf helpers (internal/childproc).
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/childproc"
	"github.com/orbit-lab/netboot/internal/modroot"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds cmd/... once per test process and returns the directory
// holding netbootd, nbctl and orbit-rc: .cache/apptest-bin in the source tree, so
// that test runs do not leave a copy each in /tmp. Test binaries of several
// packages build at once: each builds into a directory of its own and
// renames the binaries into place, which is atomic, and a binary replaced
// while it runs goes on running.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := modroot.Find()
		if err != nil {
			buildErr = err
			return
		}
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
		cmd := exec.Command("go", "build", "-o", tmp+"/", "./cmd/netbootd", "./cmd/nbctl", "./cmd/orbit-rc")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		for _, name := range []string{"netbootd", "nbctl", "orbit-rc"} {
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
	// Seed is the path of the inventory file (absent without
	// Options.Inventory): the seed, or with Options.FollowFile, the file
	// netbootd follows (inventory.file).
	Seed string
	// Addr is where the AM listens: 127.0.0.1:0 until Start has learnt
	// the port netbootd bound, 127.0.0.1:port after; URL is http://Addr,
	// set by Start. A restart binds the same port again.
	URL      string
	Addr     string
	TFTPAddr string // host:port of the TFTP server, when Options.TFTP (as Addr)
	// TLSAddr is where the AM's TLS listener is, with Options.TLS (as
	// Addr); TLSURL is https://TLSAddr, set by Start.
	TLSAddr  string
	TLSURL   string
	tls      string
	tftpMore string // Options.TFTPMore
	// ReadyFile is netbootd's --ready-file: its bound addresses, as JSON.
	ReadyFile string
	// Token is the admin token netbootd made at its first start
	// (state_dir/admin.token), set by Start: Nbctl, Call and Client send it.
	Token string
	// TokenFile holds Token: nbctl --token-file.
	TokenFile string
	Log       *SyncBuffer
	args      []string
	netns     string
	cmd       *exec.Cmd
	done      <-chan error
}

// Options say what differs from the defaults.
type Options struct {
	Inventory  string   // seed inventory YAML (written to a file)
	FollowFile bool     // that file is inventory.file, which netbootd follows, not a seed
	Images     []string // pxelinux config files to create in cfg_dir
	Extra      string   // more YAML appended to the config
	Args       []string // more netbootd flags
	TFTP       bool     // serve TFTP on a free loopback port
	TFTPHost   string   // with TFTP, the address it listens on instead of loopback, e.g. one inside Netns
	TFTPMore   string   // with TFTP, more keys of its section, e.g. "retries: 2"
	Netns      string   // run netbootd (and Nbctl) inside this network namespace
	HTTPHost   string   // address the AM listens on (default 127.0.0.1), e.g. one inside Netns
	// TLS, if set, is http.tls as YAML (auto, or {cert: F, key: F}): the
	// AM listens for HTTPS too, on a free port at the same host.
	TLS string
}

// New writes a config and directories for an appliance; Start runs it.
func New(t testing.TB, o Options) *Appliance {
	t.Helper()
	a := &Appliance{t: t, Bin: Binaries(t), Dir: t.TempDir(), args: o.Args, netns: o.Netns}
	a.TFTPRoot = filepath.Join(a.Dir, "tftpboot")
	a.ReadyFile = filepath.Join(a.Dir, "ready.json")
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
	host := "127.0.0.1"
	if o.HTTPHost != "" {
		host = o.HTTPHost
	}
	a.Addr = net.JoinHostPort(host, "0")
	if o.TLS != "" {
		a.TLSAddr, a.tls = net.JoinHostPort(host, "0"), o.TLS
	}
	if o.TFTP {
		a.TFTPAddr, a.tftpMore = "127.0.0.1:0", o.TFTPMore
		if o.TFTPHost != "" {
			a.TFTPAddr = net.JoinHostPort(o.TFTPHost, "0")
		}
	}
	invKey := "seed"
	if o.FollowFile {
		invKey = "file"
	}
	cfg := fmt.Sprintf("state_dir: %s\ntftp_root: %s\n%s\n%s\ninventory: { %s: %s }\n%s",
		filepath.Join(a.Dir, "state"), a.TFTPRoot, a.httpYAML(), a.tftpYAML(), invKey, seed, o.Extra)
	a.Config = filepath.Join(a.Dir, "netbootd.yaml")
	if err := os.WriteFile(a.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

func listenYAML(service, addr string) string {
	return fmt.Sprintf("%s: { listen: %q }", service, addr)
}

// tftpYAML is the config's tftp line.
func (a *Appliance) tftpYAML() string {
	more := ""
	if a.tftpMore != "" {
		more = ", " + a.tftpMore
	}
	return fmt.Sprintf("tftp: { listen: %q%s }", a.TFTPAddr, more)
}

// httpYAML is the config's http line for the appliance's addresses.
func (a *Appliance) httpYAML() string {
	if a.tls == "" {
		return listenYAML("http", a.Addr)
	}
	return fmt.Sprintf("http: { listen: %q, tls_listen: %q, tls: %s }", a.Addr, a.TLSAddr, a.tls)
}

// Start runs netbootd and waits until it serves: until it has written its
// ready file. The first start learns the ports netbootd chose and writes
// them into the config, for the restarts.
func (a *Appliance) Start() {
	a.t.Helper()
	a.Log = &SyncBuffer{}
	ready := a.ReadyFile
	if err := os.Remove(ready); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.t.Fatal(err)
	}
	a.cmd = a.command(filepath.Join(a.Bin, "netbootd"), append([]string{"--config", a.Config, "--ready-file", ready}, a.args...)...)
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
	var bound struct{ HTTP, HTTPS, TFTP string }
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-a.done:
			a.cmd = nil
			a.t.Fatalf("netbootd exited at start: %v\n%s", err, a.Log)
		default:
		}
		data, err := os.ReadFile(ready)
		if err == nil {
			if err := json.Unmarshal(data, &bound); err != nil {
				a.t.Fatalf("netbootd's ready file: %v: %q", err, data)
			}
			break
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("netbootd did not serve within 60s\n%s", a.Log)
		}
	}
	// A test that wrote its own config with fixed ports (vtestbed) keeps
	// its addresses.
	cfg, err := os.ReadFile(a.Config)
	if err != nil {
		a.t.Fatal(err)
	}
	text := string(cfg)
	oldHTTP := a.httpYAML()
	if _, port, _ := net.SplitHostPort(a.Addr); port == "0" {
		a.Addr = bound.HTTP
	}
	if _, port, _ := net.SplitHostPort(a.TLSAddr); port == "0" {
		a.TLSAddr = bound.HTTPS
	}
	text = strings.Replace(text, oldHTTP, a.httpYAML(), 1)
	if _, port, _ := net.SplitHostPort(a.TFTPAddr); port == "0" {
		oldTFTP := a.tftpYAML()
		a.TFTPAddr = bound.TFTP
		text = strings.Replace(text, oldTFTP, a.tftpYAML(), 1)
	}
	a.URL = "http://" + a.Addr
	if a.TLSAddr != "" {
		a.TLSURL = "https://" + a.TLSAddr
	}
	// A config of the test's own may name another state_dir: the token is
	// where netbootd logged it.
	a.TokenFile = a.adminTokenPath(text)
	if tok, err := os.ReadFile(a.TokenFile); err == nil {
		a.Token = strings.TrimSpace(string(tok))
	} else {
		a.t.Fatalf("netbootd's admin token: %v\n%s", err, a.Log)
	}
	if text != string(cfg) {
		if err := os.WriteFile(a.Config, []byte(text), 0o644); err != nil {
			a.t.Fatal(err)
		}
	}
}

// adminTokenPath is state_dir/admin.token of the config text.
func (a *Appliance) adminTokenPath(cfg string) string {
	state := filepath.Join(a.Dir, "state")
	for _, l := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(l, "state_dir:"); ok {
			state = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return filepath.Join(state, "admin.token")
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
	err, killed := childproc.Stop(a.cmd.Process, sig, 15*time.Second, a.done)
	a.cmd = nil
	if killed {
		return fmt.Errorf("netbootd did not stop within 15s of %v", sig)
	}
	return err
}

// Signal sends sig to the running netbootd (SIGHUP: read the inventory
// file again).
func (a *Appliance) Signal(sig os.Signal) {
	a.t.Helper()
	if a.cmd == nil {
		a.t.Fatal("netbootd is not running")
	}
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.t.Fatal(err)
	}
}

// Kill ends netbootd at once, as a crash would.
func (a *Appliance) Kill() {
	if a.cmd == nil {
		return
	}
	// SIGKILL needs no grace, and the exit error it causes says nothing.
	_, _ = childproc.Stop(a.cmd.Process, os.Kill, time.Minute, a.done)
	a.cmd = nil
}

// HasLine reports whether some line of text (a log, a command's output)
// contains every one of parts: tests look for a line, not for words that
// may come from different lines.
func HasLine(text string, parts ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
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
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Env = append(os.Environ(), "NBCTL_TOKEN="+a.Token)
	return cmd
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

// SyncBuffer is a bytes.Buffer safe for a writer and readers at once.
// With Max > 0 it keeps the first Max bytes and drops the rest (a
// benchmark's servers write for minutes).
type SyncBuffer struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 {
		s.b.Write(p[:min(len(p), max(s.Max-s.b.Len(), 0))])
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
