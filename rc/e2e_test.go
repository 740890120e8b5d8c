package rc_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker/rcbrokertest"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

// These tests run the real orbit-rc binary against a real appliance on
// loopback: once against the broker in process (a real store, the
// broker's routes on their own HTTP server), and once against a real
// netbootd process, which is skipped while netbootd does not serve the
// broker's routes yet.

const (
	node1    = "node1-1.sb8.orbit-lab.org"
	node1MAC = "00:03:1d:0c:01:01"
	node2    = "node1-2.sb8.orbit-lab.org"
	node2MAC = "00:03:1d:0c:01:02"
	ramImage = "orbit-2.0.0"
)

// An RC enrolls only from its node's address: the real orbit-rc runs as
// node1, whose control IP is the loopback address it speaks from; node2's
// simulated RC speaks from node2IP (apptest.ClientFrom).
const node2IP = "127.0.0.12"

const inventoryYAML = `images:
  - { name: orbit-2.0.0, description: ORBIT RAM image for imaging }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8.orbit-lab.org, hostname: node1-1, control_ip: 127.0.0.1, control_mac: "00:03:1d:0c:01:01", x: 1, y: 1, disk: /dev/sda }
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 127.0.0.12, control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, disk: /dev/sda }
`

// backend is an appliance the tests drive.
type backend interface {
	url() string
	restart(t *testing.T, wipe bool) // stop, (wipe the database), start on the same address
	events(t *testing.T, hrn string) []store.Event
	log() string
	imageDir() string // where the broker keeps the disk images
	token() string    // an operator's API token
}

type inproc struct {
	a   *rcbrokertest.Appliance
	buf *apptest.SyncBuffer
}

func (b *inproc) url() string      { return b.a.URL }
func (b *inproc) token() string    { return rcbrokertest.OperatorToken }
func (b *inproc) log() string      { return b.buf.String() }
func (b *inproc) imageDir() string { return filepath.Join(b.a.Dir, "images") }
func (b *inproc) restart(t *testing.T, wipe bool) {
	t.Helper()
	if err := b.a.Restart(wipe); err != nil {
		t.Fatal(err)
	}
}
func (b *inproc) events(t *testing.T, hrn string) []store.Event {
	evs, err := b.a.Store().Events(context.Background(), hrn)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

type netbootd struct{ a *apptest.Appliance }

func (b *netbootd) url() string      { return b.a.URL }
func (b *netbootd) token() string    { return b.a.Token }
func (b *netbootd) log() string      { return b.a.Log.String() }
func (b *netbootd) imageDir() string { return filepath.Join(b.a.Dir, "state", "images") }
func (b *netbootd) restart(t *testing.T, wipe bool) {
	t.Helper()
	if err := b.a.Stop(); err != nil {
		t.Fatalf("netbootd stop: %v\n%s", err, b.a.Log)
	}
	if wipe {
		os.RemoveAll(filepath.Join(b.a.Dir, "state", "netboot.db"))
		os.RemoveAll(filepath.Join(b.a.Dir, "state", "netboot.db-wal"))
		os.RemoveAll(filepath.Join(b.a.Dir, "state", "netboot.db-shm"))
	}
	b.a.Start()
}
func (b *netbootd) events(t *testing.T, hrn string) []store.Event {
	evs, err := amclient.New(b.a.URL).WithToken(b.a.Token).Events(context.Background(), hrn, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestRCAgainstInProcessBroker(t *testing.T) {
	buf := &apptest.SyncBuffer{}
	a, err := rcbrokertest.Start(t.TempDir(), rcbrokertest.Options{Inventory: inventoryYAML, Log: buf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	scenarios(t, &inproc{a: a, buf: buf})
}

func TestRCAgainstNetbootd(t *testing.T) {
	a := apptest.New(t, apptest.Options{Inventory: inventoryYAML, Images: []string{ramImage}})
	a.Start()
	scenarios(t, &netbootd{a: a})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if rcBin != "" {
		os.RemoveAll(filepath.Dir(rcBin))
	}
	os.Exit(code)
}

var (
	rcOnce sync.Once
	rcBin  string
	rcErr  error
)

// orbitRC builds cmd/orbit-rc once per test process.
func orbitRC(t *testing.T) string {
	t.Helper()
	rcOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orbit-rc-bin-")
		if err != nil {
			rcErr = err
			return
		}
		rcBin = filepath.Join(dir, "orbit-rc")
		out, err := exec.Command("go", "build", "-o", rcBin, "github.com/orbit-lab/netboot/cmd/orbit-rc").CombinedOutput()
		if err != nil {
			rcErr = fmt.Errorf("go build orbit-rc: %w\n%s", err, out)
		}
	})
	if rcErr != nil {
		t.Fatal(rcErr)
	}
	return rcBin
}

// node is a running orbit-rc and its files.
type node struct {
	t     *testing.T
	dir   string // disks live here: dir/disk*
	state string
	args  []string
	cmd   *exec.Cmd
	out   *apptest.SyncBuffer
	done  chan error
}

func startNode(t *testing.T, amURL string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, dir: dir, state: filepath.Join(dir, "state"), out: &apptest.SyncBuffer{}}
	testenv.WriteFile(t, filepath.Join(dir, "orbit_image"), []byte(ramImage+"\n"))
	// A UEFI node with Secure Boot on, as efivarfs shows it.
	testenv.WriteFile(t, filepath.Join(dir, "efi", "efivars", "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"), "\x06\x00\x00\x00\x01")
	n.args = []string{
		"--am", amURL, "--mac", node1MAC, "--hostname", "node1-1", "--cmdline", "/dev/null",
		"--image-file", filepath.Join(dir, "orbit_image"), "--state-dir", n.state,
		"--disk-allow", filepath.Join(dir, "disk*"), "--efi-dir", filepath.Join(dir, "efi"),
		"--poll-wait", "5s", "--max-backoff", "1s",
		"--reboot-cmd", "touch " + filepath.Join(dir, "rebooted"),
		"--poweroff-cmd", "touch " + filepath.Join(dir, "powered-off"),
		"--log-level", "debug",
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	n.cmd = exec.Command(orbitRC(n.t), n.args...)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan error, 1)
	go func() { n.done <- n.cmd.Wait() }()
}

// stop sends SIGTERM and waits: the RC must stop by itself.
func (n *node) stop() {
	if n.cmd == nil {
		return
	}
	// A failed signal means orbit-rc has exited already: done says how.
	_ = n.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("orbit-rc exited with %v on SIGINT\n%s", err, n.out)
		}
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill() // it may have ended meanwhile
		err := <-n.done
		n.t.Errorf("orbit-rc did not stop within 10s of SIGINT (then killed: %v)\n%s", err, n.out)
	}
	n.cmd = nil
}

func (n *node) disk(name string, data []byte) string {
	p := filepath.Join(n.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// waitEnrolled waits until the node's RC is enrolled and online, with an
// enrollment made after after.
// waitTimeline polls hrn's timeline until its last event satisfies want:
// events are recorded apart from the API answer that caused them, so a
// reader may see the answer first. It gives up after a deadline that
// means the event never comes, returning the timeline it saw.
func waitTimeline(t *testing.T, app backend, hrn string, want func(store.Event) bool) ([]store.Event, bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := app.events(t, hrn)
		if len(evs) > 0 && want(evs[len(evs)-1]) {
			return evs, true
		}
		if time.Now().After(deadline) {
			return evs, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitEnrolled(ctx context.Context, t *testing.T, c *amclient.Client, hrn string, after time.Time, diag func() string) proto.RCStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := c.RCStatus(ctx, hrn)
		if err == nil && s.Enrolled && s.Online && s.EnrolledAt.After(after) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not enrolled within 30s: %+v %v\n%s", hrn, s, err, diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do sends a command and waits for its end.
func do(ctx context.Context, t *testing.T, c *amclient.Client, hrn string, req proto.CommandRequest, diag func() string) proto.CommandStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	st, err := c.SendCommand(ctx, hrn, req)
	if err != nil {
		t.Fatalf("send %+v: %v", req, err)
	}
	if st.State != proto.StateQueued || st.ID == 0 {
		t.Errorf("a new command: %+v, want queued with an id", st)
	}
	st, err = c.WaitCommand(ctx, st.ID, 20*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("command %d (%s): %v; last %+v\n%s", st.ID, req.Type, err, st, diag())
	}
	return st
}

// testData is a disk's worth of bytes: random stretches, zeros and text,
// so that it compresses some but not all.
func testData(size int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
	b := make([]byte, size)
	for off := 0; off < size; off += 64 << 10 {
		end := min(off+64<<10, size)
		switch (off / (64 << 10)) % 3 {
		case 0:
			for i := off; i < end; i++ {
				b[i] = byte(r.Uint32())
			}
		case 1: // zeros
		case 2:
			copy(b[off:end], bytes.Repeat([]byte("orbit testbed disk image "), (end-off)/25+1))
		}
	}
	return b
}

func gzipped(t *testing.T, data []byte, members int) []byte {
	var buf bytes.Buffer
	step := (len(data) + members - 1) / members
	for off := 0; off < len(data); off += step { // pigz-style: one member after another
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(data[off:min(off+step, len(data))]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// call sends body (nil for none) as JSON, with bearer (if not "") as the
// RC's secret.
func call(t *testing.T, method, url, bearer string, body any) (int, string) {
	t.Helper()
	return callFrom(t, "", method, url, bearer, body)
}

// callFrom is call from source address from ("" for any).
func callFrom(t *testing.T, from, method, url, bearer string, body any) (int, string) {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	var h http.Header
	if bearer != "" {
		h = http.Header{"Authorization": {"Bearer " + bearer}}
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	r := apptest.DoFrom(t, from, req)
	return r.Status, r.Body
}

func scenarios(t *testing.T, app backend) {
	c := amclient.New(app.url()).WithToken(app.token())
	ctx := context.Background()
	n := startNode(t, app.url())
	diag := func() string { return "--- orbit-rc:\n" + n.out.String() + "\n--- appliance:\n" + app.log() }
	var enr proto.RCStatus

	t.Run("enroll", func(t *testing.T) {
		enr = waitEnrolled(ctx, t, c, node1, time.Time{}, diag)
		if enr.Image != ramImage || enr.Hostname != "node1-1" || len(enr.MACs) != 1 || enr.MACs[0] != node1MAC || enr.Version == "" || enr.BootID == "" ||
			enr.Firmware != proto.FirmwareUEFI || enr.SecureBoot == nil || !*enr.SecureBoot {
			t.Errorf("status = %+v", enr)
		}
		if evs, ok := waitTimeline(t, app, node1, func(e store.Event) bool {
			return e.Source == "rc" && e.What == "enrolled" && e.Detail == ramImage+" firmware=uefi secure_boot=on"
		}); !ok {
			t.Errorf("timeline = %+v, want it to end with rc enrolled %s firmware=uefi secure_boot=on", evs, ramImage)
		}
		all, err := c.RCs(ctx)
		if err != nil || len(all) != 1 || all[0].HRN != node1 {
			t.Errorf("all RCs = %+v, %v", all, err)
		}
		if s, err := c.RCStatus(ctx, node2); err != nil || s.Enrolled {
			t.Errorf("node2 = %+v, %v; want not enrolled", s, err)
		}
		if _, err := c.SendCommand(ctx, node2, proto.CommandRequest{Type: proto.Execute, Command: "true"}); err == nil || !strings.Contains(err.Error(), "no enrolled RC") {
			t.Errorf("command to a node without RC: %v, want 409 no enrolled RC", err)
		}
	})

	t.Run("execute", func(t *testing.T) {
		st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Execute, Command: "echo hi; echo oops >&2; exit 3"}, diag)
		if st.State != proto.StateDone || st.Stdout != "hi\n" || st.Stderr != "oops\n" || st.ExitCode == nil || *st.ExitCode != 3 || st.Reply != proto.ReplyError {
			t.Errorf("echo hi; exit 3 = %+v", st)
		}
		st = do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Execute, Args: []string{"/bin/echo", "a  b"}}, diag)
		if st.State != proto.StateDone || st.Stdout != "a  b\n" || *st.ExitCode != 0 || st.Reply != proto.ReplyOK {
			t.Errorf("args = %+v", st)
		}
		st = do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Execute, Command: "sleep 30", Timeout: "300ms"}, diag)
		if st.State != proto.StateFailed || !strings.Contains(st.Error, "timeout") {
			t.Errorf("timeout = %+v", st)
		}
		st = do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Execute, Args: []string{"/nonexistent/program"}}, diag)
		if st.State != proto.StateFailed || !strings.Contains(st.Error, "start") {
			t.Errorf("missing program = %+v", st)
		}
	})

	t.Run("enroll image check", func(t *testing.T) {
		if st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Enroll, Image: ramImage}, diag); st.State != proto.StateDone || st.Reply != proto.ReplyEnrolled {
			t.Errorf("ENROLL right image = %+v", st)
		}
		if st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Enroll, Image: "orbit-9.9"}, diag); st.State != proto.StateDone || st.Reply != proto.ReplyWrongImage {
			t.Errorf("ENROLL wrong image = %+v", st)
		}
	})

	t.Run("bearer and ownership", func(t *testing.T) {
		if code, body := call(t, http.MethodGet, app.url()+"/api/v1/rc/poll?wait=0s", "", nil); code != http.StatusUnauthorized {
			t.Errorf("poll without a secret: %d %s", code, body)
		}
		if code, body := call(t, http.MethodGet, app.url()+"/api/v1/rc/poll?wait=0s", strings.Repeat("ab", 32), nil); code != http.StatusUnauthorized || !strings.Contains(body, proto.ErrUnknownEnrollment) {
			t.Errorf("poll with a wrong secret: %d %s", code, body)
		}
		st, err := c.SendCommand(ctx, node1, proto.CommandRequest{Type: proto.Execute, Command: "sleep 1"})
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := call(t, http.MethodPost, fmt.Sprintf("%s/api/v1/rc/commands/%d/report", app.url(), st.ID), "", proto.Report{Seq: 99, State: proto.StateDone}); code != http.StatusUnauthorized {
			t.Errorf("report without a secret: %d", code)
		}
		// node1's MAC from another address gets nothing.
		if code, body := callFrom(t, node2IP, http.MethodPost, app.url()+"/api/v1/rc/enroll", "", proto.EnrollRequest{MACs: []string{node1MAC}, Image: ramImage}); code != http.StatusForbidden || strings.Contains(body, "secret") {
			t.Errorf("enroll as node1 from %s: %d %s, want 403", node2IP, code, body)
		}
		// Another node enrolls: its secret opens nothing of node1's.
		code, body := callFrom(t, node2IP, http.MethodPost, app.url()+"/api/v1/rc/enroll", "", proto.EnrollRequest{MACs: []string{node2MAC}, Image: ramImage})
		var other proto.EnrollResponse
		if code != http.StatusOK || json.Unmarshal([]byte(body), &other) != nil || other.HRN != node2 {
			t.Fatalf("enroll node2: %d %s", code, body)
		}
		if code, body := call(t, http.MethodPost, fmt.Sprintf("%s/api/v1/rc/commands/%d/report", app.url(), st.ID), other.Secret, proto.Report{Seq: 99, State: proto.StateDone}); code != http.StatusNotFound {
			t.Errorf("report on node1's command with node2's secret: %d %s", code, body)
		}
		if code, body := call(t, http.MethodGet, app.url()+"/api/v1/rc/poll?wait=0s", other.Secret, nil); code != http.StatusNoContent {
			t.Errorf("node2's poll: %d %s, want 204 (node1's commands are not its)", code, body)
		}
		if code, body := call(t, http.MethodPost, app.url()+"/api/v1/rc/enroll", "", proto.EnrollRequest{MACs: []string{"02:00:00:00:00:99"}}); code != http.StatusNotFound {
			t.Errorf("enroll from an unknown MAC: %d %s", code, body)
		}
		got, err := c.WaitCommand(ctx, st.ID, 20*time.Millisecond, nil)
		if err != nil || got.State != proto.StateDone {
			t.Errorf("node1's command after the attempts: %+v, %v", got, err)
		}
	})

	raw := testData(6<<20 + 12345)
	t.Run("load image", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data []byte
		}{
			{"test-gz", gzipped(t, raw, 1)},
			{"test-gz-multi", gzipped(t, raw, 3)},
			{"test-zst", zstdtest.Compress(t, raw)},
		} {
			img, err := putImage(ctx, c, tc.name, tc.data)
			if err != nil || img.SHA256 != sum(tc.data) || img.Size != int64(len(tc.data)) {
				t.Fatalf("upload %s: %+v, %v", tc.name, img, err)
			}
			disk := n.disk("disk-"+tc.name, nil)
			st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.LoadImage, Image: tc.name, Disk: disk}, diag)
			if st.State != proto.StateDone || st.SHA256 != img.SHA256 || st.Progress.Done != img.Size || st.Progress.Total != img.Size || st.Progress.Written != int64(len(raw)) {
				t.Errorf("LOAD_IMAGE %s = %+v", tc.name, st)
			}
			got, _ := os.ReadFile(disk)
			if !bytes.Equal(got, raw) {
				t.Errorf("LOAD_IMAGE %s: the disk holds %d bytes that differ from the %d of the image", tc.name, len(got), len(raw))
			}
		}
		imgs, err := c.DiskImages(ctx)
		if err != nil || len(imgs) != 3 || imgs[0].Name != "test-gz" || imgs[0].Format != proto.FormatGzip || imgs[2].Format != proto.FormatZstd {
			t.Errorf("disk images = %+v, %v", imgs, err)
		}
		if evs, ok := waitTimeline(t, app, node1, func(e store.Event) bool {
			return e.What == "image load done" && strings.Contains(e.Detail, "test-zst")
		}); !ok {
			t.Errorf("timeline = %+v, want it to end with image load done (test-zst)", evs)
		}
		st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.LoadImage, Image: "test-zst", Disk: "/etc/hostname"}, diag)
		if st.State != proto.StateFailed || !strings.Contains(st.Error, "not allowed") {
			t.Errorf("LOAD_IMAGE onto /etc/hostname = %+v, want failed: not allowed", st)
		}
		if _, err := c.SendCommand(ctx, node1, proto.CommandRequest{Type: proto.LoadImage, Image: "nope", Disk: "/dev/sdb"}); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("LOAD_IMAGE of a missing image: %v, want 404", err)
		}
	})

	t.Run("corrupted upload rejected", func(t *testing.T) {
		good, _ := c.DiskImages(ctx)
		bad := zstdtest.Compress(t, testData(1<<20))
		if _, err := c.PutDiskImage(ctx, "test-zst", bytes.NewReader(bad), sum(bad[:len(bad)-1])); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Errorf("upload with a wrong checksum: %v", err)
		}
		if _, err := c.PutDiskImage(ctx, "test-zst", bytes.NewReader(bad), ""); err == nil {
			t.Errorf("upload without a checksum accepted")
		}
		plain := []byte("not compressed at all")
		if _, err := c.PutDiskImage(ctx, "test-zst", bytes.NewReader(plain), sum(plain)); err == nil || !strings.Contains(err.Error(), "neither gzip nor zstd") {
			t.Errorf("uncompressed upload: %v", err)
		}
		// A cut upload: the body ends early.
		cut := &cutReader{r: bytes.NewReader(bad), n: len(bad) / 2}
		if _, err := c.PutDiskImage(ctx, "test-zst", cut, sum(bad)); err == nil {
			t.Errorf("cut upload accepted")
		}
		for _, name := range []string{"..", "a..b", ".hidden", "x.sha256", strings.Repeat("a", 200)} {
			if _, err := c.PutDiskImage(ctx, name, bytes.NewReader(bad), sum(bad)); err == nil {
				t.Errorf("upload as %q accepted", name)
			}
		}
		after, _ := c.DiskImages(ctx)
		if len(after) != len(good) || after[2] != good[2] {
			t.Errorf("images changed by refused uploads:\n%+v\n%+v", good, after)
		}
		var buf bytes.Buffer
		if s, err := c.GetDiskImage(ctx, "test-zst", &buf); err != nil || s != good[2].SHA256 || sum(buf.Bytes()) != good[2].SHA256 {
			t.Errorf("the old image is not served intact: %s, %v", s, err)
		}
		// The cut upload's handler may still be cleaning up after the
		// client saw its end: its leftovers must go, not at once.
		var left []string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			entries, err := os.ReadDir(app.imageDir())
			if err != nil {
				t.Fatal(err)
			}
			left = left[:0]
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") {
					left = append(left, e.Name())
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			t.Errorf("left behind in the image directory 30s after the uploads: %v", left)
		}
	})

	t.Run("save image as a chunked image", func(t *testing.T) {
		// The disk: raw with 3 MiB of zeros inside, whole chunks of them.
		disk := slices.Concat(raw[:2<<20], make([]byte, 3<<20), raw[2<<20:])
		src := n.disk("disk-src", disk)
		st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.SaveImage, Image: "saved", Disk: src}, diag)
		if st.State != proto.StateDone || st.Progress.Done != int64(len(disk)) || st.Progress.Total != int64(len(disk)) {
			t.Fatalf("SAVE_IMAGE = %+v", st)
		}
		var stored bytes.Buffer
		s, err := getImage(ctx, c, "saved", &stored)
		if err != nil || s != st.SHA256 || st.Progress.Written != int64(stored.Len()) {
			t.Fatalf("saved image: sha %s, %v; the RC said %s, %d bytes sent of %d stored", s, err, st.SHA256, st.Progress.Written, stored.Len())
		}
		m, mb, err := chunkimg.ReadManifest(bytes.NewReader(stored.Bytes()), int64(stored.Len()))
		if err != nil || chunkimg.Digest(mb) != s {
			t.Fatalf("saved image: %v; its manifest's digest is not the sha256 %s", err, s)
		}
		if !bytes.Equal(zstdtest.Disk(t, stored.Bytes()), disk) {
			t.Errorf("the saved image's chunks are not the disk")
		}
		if m.ZeroChunks() < 3 {
			t.Errorf("%d zero chunks for 3 MiB of zeros in chunks of %d: zeros were stored", m.ZeroChunks(), m.ChunkSize)
		}
	})

	// The saved image loads onto an empty disk; loaded again, it writes
	// and fetches nothing; with one chunk changed, that chunk only.
	t.Run("load a chunked image, again by delta", func(t *testing.T) {
		want := slices.Concat(raw[:2<<20], make([]byte, 3<<20), raw[2<<20:]) // as saved above
		imgs, err := c.DiskImages(ctx)
		i := slices.IndexFunc(imgs, func(d proto.DiskImage) bool { return d.Name == "saved" })
		if err != nil || i < 0 || imgs[i].Format != proto.FormatChunked {
			t.Fatalf("disk images = %+v, %v; want the chunked image saved", imgs, err)
		}
		img := imgs[i]
		chunk := img.ChunkSize
		disk := n.disk("disk-chunked", nil)
		for _, step := range []struct {
			name                      string
			change                    func()
			written, skipped, fetched int64 // fetched -1: some, less than stored
		}{
			{"onto an empty disk", func() {}, int64(len(want)) - 3<<20, 3 << 20, -1},
			{"again", func() {}, 0, int64(len(want)), 0},
			{"with one chunk changed", func() {
				f, err := os.OpenFile(disk, os.O_WRONLY, 0)
				if err == nil {
					_, err = f.WriteAt([]byte{^want[chunk+5]}, chunk+5)
					f.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
			}, chunk, int64(len(want)) - chunk, -1},
		} {
			step.change()
			st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.LoadImage, Image: "saved", Disk: disk}, diag)
			p := st.Progress
			if st.State != proto.StateDone || st.SHA256 != img.SHA256 || p.Written != step.written || p.Skipped != step.skipped ||
				p.Done != int64(len(want)) || p.Total != int64(len(want)) ||
				(step.fetched >= 0 && p.Fetched != step.fetched) || (step.fetched < 0 && (p.Fetched <= 0 || p.Fetched >= img.Size)) {
				t.Errorf("LOAD_IMAGE %s = %+v; want %d written, %d skipped", step.name, st, step.written, step.skipped)
			}
			if got, _ := os.ReadFile(disk); !bytes.Equal(got, want) {
				t.Errorf("LOAD_IMAGE %s: the disk differs from the image", step.name)
			}
		}
	})

	t.Run("reconnect after an appliance restart", func(t *testing.T) {
		before, _ := c.RCStatus(ctx, node1)
		app.restart(t, false)
		st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Execute, Command: "echo back"}, diag)
		if st.State != proto.StateDone || st.Stdout != "back\n" {
			t.Errorf("after the restart: %+v", st)
		}
		if after, _ := c.RCStatus(ctx, node1); !after.EnrolledAt.Equal(*before.EnrolledAt) {
			t.Errorf("the RC enrolled again over a restart (%v -> %v): the enrollment should be kept", before.EnrolledAt, after.EnrolledAt)
		}
	})

	t.Run("RC restart resumes its enrollment", func(t *testing.T) {
		before, _ := c.RCStatus(ctx, node1)
		n.stop()
		st, err := c.SendCommand(ctx, node1, proto.CommandRequest{Type: proto.Execute, Command: "echo queued while away"})
		if err != nil {
			t.Fatal(err)
		}
		n.start()
		got, err := c.WaitCommand(ctx, st.ID, 20*time.Millisecond, nil)
		if err != nil || got.State != proto.StateDone || got.Stdout != "queued while away\n" {
			t.Errorf("command queued while the RC was down: %+v, %v\n%s", got, err, diag())
		}
		if after, _ := c.RCStatus(ctx, node1); !after.EnrolledAt.Equal(*before.EnrolledAt) {
			t.Errorf("the RC enrolled again (%v -> %v): the kept enrollment was not resumed", before.EnrolledAt, after.EnrolledAt)
		}
	})

	t.Run("re-enroll when the appliance forgot", func(t *testing.T) {
		before, _ := c.RCStatus(ctx, node1)
		app.restart(t, true)
		// The database is new: the enrollment id may be the same, the
		// enrollment (and its secret) is not.
		waitEnrolled(ctx, t, c, node1, *before.EnrolledAt, diag)
		if st := do(ctx, t, c, node1, proto.CommandRequest{Type: proto.Execute, Command: "echo again"}, diag); st.Stdout != "again\n" {
			t.Errorf("after re-enrolling: %+v", st)
		}
	})

	t.Run("reboot and poweroff", func(t *testing.T) {
		for typ, file := range map[string]string{proto.Reboot: "rebooted", proto.Poweroff: "powered-off"} {
			st := do(ctx, t, c, node1, proto.CommandRequest{Type: typ}, diag)
			if st.State != proto.StateDone || st.Reply != proto.ReplyOK {
				t.Errorf("%s = %+v", typ, st)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				if _, err := os.Stat(filepath.Join(n.dir, file)); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: the hook did not run", typ)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
}

// cutReader returns an error after n bytes, as a client that dies does.
type cutReader struct {
	r io.Reader
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= k
	return k, err
}

// putImage stores a disk image as an operator does, through the API.
func putImage(ctx context.Context, c *amclient.Client, name string, data []byte) (proto.DiskImage, error) {
	return c.PutDiskImage(ctx, name, bytes.NewReader(data), sum(data))
}

// getImage reads a stored disk image as an operator does into w, and
// returns its checksum.
func getImage(ctx context.Context, c *amclient.Client, name string, w io.Writer) (string, error) {
	return c.GetDiskImage(ctx, name, w)
}
