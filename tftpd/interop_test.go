package tftpd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// The interoperability tests run the real Debian clients against a real
// Server on loopback. They install nothing: without the clients they skip
// (fail under CI=true), and `make test` installs them.

// requireClient returns the path of a client binary whose version output
// contains brand, or skips the test.
func requireClient(t *testing.T, bin, pkg, brand string, versionArgs ...string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		testenv.Missing(t, "%s not installed: run make test, which installs it", pkg)
	}
	out, _ := exec.Command(path, versionArgs...).CombinedOutput()
	if !strings.Contains(string(out), brand) {
		testenv.Missing(t, "%s is not %s (%q): run make test, which installs it", path, pkg, firstLine(out))
	}
	return path
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// runClient runs a client with a time bound and returns its combined
// output and whether it exited 0.
func runClient(t *testing.T, path string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out; output %q", path, args, out)
	}
	return string(out), err == nil
}

func readLocal(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("client wrote no file: %v", err)
	}
	return b
}

// interopCase is one request from a real client.
type interopCase struct {
	name     string
	remote   string
	want     string // key in tree.Files for a download, "" for a refusal
	wantFile string // Transfer.File the sink must see ("" for write requests)
	wantCode int    // TFTP error code expected, 0 for success
	put      bool
	ascii    bool
}

func interopCases() []interopCase {
	return []interopCase{
		{name: "8M", remote: "kernel-8m", want: "kernel-8m", wantFile: "kernel-8m"},
		{name: "64M", remote: "initrd-64m", want: "initrd-64m", wantFile: "initrd-64m"},
		{name: "leading slash, symlink followed", remote: "/pxelinux.cfg/0A120102", want: "pxelinux.cfg/orbit-2.0.0", wantFile: "pxelinux.cfg/0A120102"},
		{name: "netascii", remote: "text.txt", want: "text.txt", wantFile: "text.txt", ascii: true},
		{name: "symlink escaping", remote: "escape", wantFile: "escape", wantCode: 2},
		{name: "dot dot", remote: "../outside/secret", wantFile: "../outside/secret", wantCode: 2},
		{name: "missing", remote: "pxelinux.cfg/01-52-54-00-12-34-56", wantFile: "pxelinux.cfg/01-52-54-00-12-34-56", wantCode: 1},
		{name: "write request", remote: "uploaded", put: true, wantCode: 2},
	}
}

func interopFiles() map[string]int {
	return map[string]int{"kernel-8m": 8 << 20, "initrd-64m": 64 << 20}
}

// interopRun serves the interop tree to a real client: each case it can
// do (skip says which not) is a subtest in which fetch runs the client
// (local is its own file, filled first for a write request) and checks
// what it says. What the sink got is checked then; for a download, its
// blksize too when blksize is not 0.
func interopRun(t *testing.T, skip func(interopCase) bool, blksize int, fetch func(t *testing.T, port string, tc interopCase, local string, tr *tree)) *tree {
	tr := newTree(t, interopFiles())
	ts := startServer(t, Config{Root: tr.Root})
	port := strconv.Itoa(ts.port())
	for _, tc := range interopCases() {
		if skip != nil && skip(tc) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			local := filepath.Join(t.TempDir(), "local")
			if tc.put {
				testenv.WriteFile(t, local, []byte("not for a read-only server\n"))
			}
			start := time.Now()
			fetch(t, port, tc, local, tr)
			t.Logf("took %v", time.Since(start).Round(time.Millisecond))
			rep := checkReported(t, ts, tr, tc)
			if blksize != 0 && tc.wantFile != "" && tc.wantCode == 0 && rep.BlkSize != blksize {
				t.Errorf("sink: blksize %d, want %d", rep.BlkSize, blksize)
			}
		})
	}
	return tr
}

// TestInteropTFTPHPA fetches with tftp-hpa's tftp client. It sends no
// options, so it runs at blksize 512: the 64 MB file takes 131072 blocks
// and checks that the block number wraps around (to 0, as tftp-hpa does).
func TestInteropTFTPHPA(t *testing.T) {
	bin := requireClient(t, "tftp", "tftp-hpa", "tftp-hpa", "-V")
	tr := interopRun(t, nil, 0, func(t *testing.T, port string, tc interopCase, local string, tr *tree) {
		mode := "binary"
		if tc.ascii {
			mode = "ascii"
		}
		args := []string{"-m", mode, "127.0.0.1", port, "-c", "get", tc.remote, local}
		if tc.put {
			args = []string{"-m", mode, "127.0.0.1", port, "-c", "put", local, tc.remote}
		}
		out, _ := runClient(t, bin, args...) // tftp-hpa exits 0 even after an ERROR
		t.Logf("%q", out)
		if tc.wantCode != 0 {
			if want := "Error code " + strconv.Itoa(tc.wantCode) + ":"; !strings.Contains(out, want) {
				t.Fatalf("output %q, want %q", out, want)
			}
			return
		}
		if strings.Contains(out, "Error") {
			t.Fatalf("output %q", out)
		}
		equalBytes(t, tc.remote, readLocal(t, local), tr.Files[tc.want])
	})
	if _, err := os.Stat(filepath.Join(tr.Root, "uploaded")); err == nil {
		t.Error("a write request created a file")
	}
}

// TestInteropAtftp fetches with atftp at UEFI's block size, asking for
// tsize as PXE ROMs do. atftp prints the server's message, not its code;
// the code itself is checked by TestRefusals and TestInteropTFTPHPA.
func TestInteropAtftp(t *testing.T) {
	bin := requireClient(t, "atftp", "atftp", "atftp", "--version")
	octetOnly := func(tc interopCase) bool { return tc.ascii } // atftp only does octet
	interopRun(t, octetOnly, 1468, func(t *testing.T, port string, tc interopCase, local string, tr *tree) {
		verb := "--get"
		if tc.put {
			verb = "--put"
		}
		out, ok := runClient(t, bin, "--option", "blksize 1468", "--option", "tsize 0",
			verb, "-r", tc.remote, "-l", local, "127.0.0.1", port)
		t.Logf("%q", out)
		if tc.wantCode != 0 {
			msg := map[int]string{1: msgFileNotFound, 2: msgAccessViolation}[tc.wantCode]
			if ok || !strings.Contains(out, "<"+msg+">") {
				t.Fatalf("exit ok=%v output %q, want a failure with <%s>", ok, out, msg)
			}
			return
		}
		if !ok {
			t.Fatalf("atftp failed: %q", out)
		}
		equalBytes(t, tc.remote, readLocal(t, local), tr.Files[tc.want])
	})
}

// checkReported finds the transfer the sink got for tc and checks it.
// Write requests are not transfers: nothing to find.
func checkReported(t *testing.T, ts *testServer, tr *tree, tc interopCase) Transfer {
	t.Helper()
	if tc.put {
		return Transfer{}
	}
	rep := ts.sink.waitFor(t, 0, tc.wantFile)
	if !rep.Client.Addr().IsLoopback() || !rep.Client.Addr().Is4() {
		t.Errorf("sink: client %v, want an IPv4 loopback address", rep.Client)
	}
	switch tc.wantCode {
	case 0:
		if rep.Err != nil {
			t.Errorf("sink: Err = %v", rep.Err)
		}
		if !tc.ascii && rep.Bytes != int64(len(tr.Files[tc.want])) {
			t.Errorf("sink: Bytes = %d, want %d", rep.Bytes, len(tr.Files[tc.want]))
		}
	default:
		if code, _ := codeOf(rep.Err); int(code) != tc.wantCode {
			t.Errorf("sink: Err = %v (code %d), want code %d", rep.Err, code, tc.wantCode)
		}
	}
	return rep
}
