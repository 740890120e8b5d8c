package initramfs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/orbit-lab/netboot/initramfs/layout"
	"github.com/orbit-lab/netboot/initramfs/orbitinit"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestDebugShellSSH runs the image's sshd, as the init starts it (the
// flags of orbitinit.SSHDArgs, on 127.0.0.1 and a free port), and connects
// with the authorized key (a command runs), a wrong key and a password
// (both refused). As root, gosh is bind-mounted on /bin/sh in a private
// mount namespace, as in the image; otherwise the host's /bin/sh runs.
func TestDebugShellSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles u-root's sshd and gosh")
	}
	if runtime.GOOS != "linux" {
		t.Skip("sshd and gosh are built for linux")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	shell, err := CompileDebugShell(ctx, "", "..", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sshd, gosh := filepath.Join(dir, "sshd"), filepath.Join(dir, "gosh")
	testenv.WriteFile(t, sshd, shell.SSHD)
	testenv.WriteFile(t, gosh, shell.Gosh)
	must(t, os.Chmod(sshd, 0o755))
	must(t, os.Chmod(gosh, 0o755))

	// The client's key, a wrong one, and the host key as the init writes it.
	_, clientKey, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	client, err := ssh.NewSignerFromKey(clientKey)
	must(t, err)
	_, wrongKey, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	wrong, err := ssh.NewSignerFromKey(wrongKey)
	must(t, err)
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(hostKey)
	must(t, err)
	hostSigner, err := ssh.NewSignerFromKey(hostKey)
	must(t, err)
	keys, hostFile := filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "host_key")
	line, err := orbitinit.ParseSSHKeyArg(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(client.PublicKey()))))
	must(t, err)
	testenv.WriteFile(t, keys, []byte(line+"\n"))
	testenv.WriteFile(t, hostFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	l.Close()

	args := strings.NewReplacer(layout.SSHAuthorizedKeys, keys, layout.SSHHostKey, hostFile, "0.0.0.0", "127.0.0.1", layout.SSHPort, port)
	var sshdArgs []string
	for _, a := range orbitinit.SSHDArgs {
		sshdArgs = append(sshdArgs, args.Replace(a))
	}
	var cmd *exec.Cmd
	wantShell := "gosh"
	if _, err := exec.LookPath("unshare"); err == nil && os.Geteuid() == 0 {
		script := `mount --bind "$1" /bin/sh && shift && exec "$@"`
		cmd = exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", gosh, sshd}, sshdArgs...)...)
	} else {
		t.Logf("not root or no unshare: sessions run the host's /bin/sh, not gosh")
		cmd = exec.CommandContext(ctx, sshd, sshdArgs...)
		wantShell = ""
	}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("sshd output:\n%s", log.String())
		}
	})

	dial := func(auth ssh.AuthMethod) (*ssh.Client, error) {
		cfg := &ssh.ClientConfig{
			User: "root", Auth: []ssh.AuthMethod{auth},
			HostKeyCallback: ssh.FixedHostKey(hostSigner.PublicKey()),
			Timeout:         30 * time.Second,
		}
		var lastErr error
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			c, err := ssh.Dial("tcp", addr, cfg)
			var opErr *net.OpError
			if errors.As(err, &opErr) && opErr.Op == "dial" {
				lastErr = err // not listening yet
				continue
			}
			return c, err
		}
		return nil, lastErr
	}

	c, err := dial(ssh.PublicKeys(client))
	if err != nil {
		t.Fatalf("dial with the authorized key: %v", err)
	}
	defer c.Close()
	// u-root v0.15.0's sshd answers an exec request only when the command
	// is done, and without a pty waits for the client's end of stdin first,
	// which x/crypto/ssh's Session sends only after the answer: a deadlock.
	// (Its pty needs a controlling terminal, which sshd under the init has
	// not.) So: a raw session channel, exec without asking for an answer.
	ch, reqs, err := c.OpenChannel("session", nil)
	must(t, err)
	go ssh.DiscardRequests(reqs)
	// $0 is what /bin/sh is: gosh's interpreter says "gosh".
	_, err = ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{`echo hi; echo "shell=$0"`}))
	must(t, err)
	must(t, ch.CloseWrite())
	outb, err := io.ReadAll(ch)
	must(t, err)
	got := string(outb)
	t.Logf("session output: %q", got)
	if !strings.HasPrefix(got, "hi\n") {
		t.Errorf("output %q, want hi", got)
	}
	if wantShell != "" && !strings.Contains(got, "shell="+wantShell) {
		t.Errorf("output %q: /bin/sh is not %s", got, wantShell)
	}

	for name, auth := range map[string]ssh.AuthMethod{
		"wrong key": ssh.PublicKeys(wrong),
		"password":  ssh.Password(""),
		"keyboard":  ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil }),
	} {
		if c, err := dial(auth); err == nil {
			c.Close()
			t.Errorf("%s: logged in", name)
		} else if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("%s: %v, want an authentication failure", name, err)
		}
	}
}
