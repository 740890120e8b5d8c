package rc_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc"
	"github.com/orbit-lab/netboot/rc/proto"
)

// fakeAM is an appliance that the test scripts: it hands out the
// envelopes it is given, however they are signed, and records reports.
type fakeAM struct {
	t       *testing.T
	secrets []string // the secret of the n-th enrollment

	mu      sync.Mutex
	enrolls int
	queue   []proto.Envelope
	reports map[int64][]proto.Report
	forget  bool // answer the next poll with 401 unknown enrollment
	image   []byte
	// The image is sent in this many pieces, each once the RC has
	// reported progress up to the end of the one before: the load
	// advances only as fast as the reports come.
	pieces   int
	reported chan struct{} // a report came
}

const fakeEnrollment = 7

// answer writes v as JSON. A client that left (an RC stopped mid-poll) is
// noted only: the test checks what the RC did, not the AM's writes.
func (f *fakeAM) answer(w http.ResponseWriter, v any) {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		f.t.Logf("fake AM: answer: %v", err)
	}
}

func newFakeAM(t *testing.T) (*fakeAM, *httptest.Server) {
	f := &fakeAM{t: t, secrets: []string{strings.Repeat("11", 32), strings.Repeat("22", 32), strings.Repeat("33", 32)}, reports: map[int64][]proto.Report{}, reported: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/rc/enroll", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		secret := f.secrets[min(f.enrolls, len(f.secrets)-1)]
		f.enrolls++
		f.mu.Unlock()
		f.answer(w, proto.EnrollResponse{HRN: "n1", Enrollment: fakeEnrollment, Secret: secret, PollWait: "1s"})
	})
	mux.HandleFunc("GET /api/v1/rc/poll", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		forget := f.forget
		f.forget = false
		var env *proto.Envelope
		if len(f.queue) > 0 && !forget {
			env = &f.queue[0]
			f.queue = f.queue[1:]
		}
		f.mu.Unlock()
		switch {
		case forget:
			w.WriteHeader(http.StatusUnauthorized)
			f.answer(w, map[string]string{"error": proto.ErrUnknownEnrollment})
		case env != nil:
			f.answer(w, env)
		default:
			time.Sleep(100 * time.Millisecond)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("POST /api/v1/rc/commands/{id}/report", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		var rep proto.Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.reports[id] = append(f.reports[id], rep)
		f.mu.Unlock()
		select {
		case f.reported <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/v1/disk-images/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		img, pieces := f.image, max(f.pieces, 1)
		f.mu.Unlock()
		w.Header().Set(proto.HeaderSHA256, sum(img))
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		if r.Method == http.MethodHead { // the RC asks the format first
			return
		}
		piece := len(img)/pieces + 1
		for off := 0; off < len(img); off += piece {
			end := min(off+piece, len(img))
			if _, err := w.Write(img[off:end]); err != nil {
				return // the RC gave up the load
			}
			w.(http.Flusher).Flush()
			if end < len(img) && !f.waitProgress(r.Context(), int64(end)) {
				panic(http.ErrAbortHandler) // the RC's load fails, and the test with it
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAM) send(env proto.Envelope) {
	f.mu.Lock()
	f.queue = append(f.queue, env)
	f.mu.Unlock()
}

// waitProgress waits until a report tells of done bytes of an image read.
// It gives up after a deadline that means the RC has stopped reporting.
func (f *fakeAM) waitProgress(ctx context.Context, done int64) bool {
	hung := time.NewTimer(15 * time.Second)
	defer hung.Stop()
	for {
		f.mu.Lock()
		for _, rs := range f.reports {
			for _, r := range rs {
				if r.Progress != nil && r.Progress.Done >= done {
					f.mu.Unlock()
					return true
				}
			}
		}
		f.mu.Unlock()
		select {
		case <-f.reported:
		case <-ctx.Done():
			return false
		case <-hung.C:
			f.t.Errorf("no report of progress up to %d bytes of the image within 15s", done)
			return false
		}
	}
}

// final waits for the last report on a command.
func (f *fakeAM) final(id int64) (proto.Report, []proto.Report) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		rs := append([]proto.Report(nil), f.reports[id]...)
		f.mu.Unlock()
		if len(rs) > 0 && proto.Terminal(rs[len(rs)-1].State) {
			return rs[len(rs)-1], rs
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("no final report on command %d", id)
	return proto.Report{}, nil
}

func runRC(t *testing.T, am string, mod func(*rc.Config)) (string, *apptest.SyncBuffer) {
	dir := t.TempDir()
	logs := &apptest.SyncBuffer{}
	cfg := rc.Config{
		AM: am, MACs: []string{node1MAC}, Hostname: "node1-1", ImageFile: filepath.Join(dir, "none"), ImageName: ramImage,
		DiskAllow: []string{filepath.Join(dir, "disk*")}, PollWait: time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		PowerCheck: func() error { return nil }, Reboot: func(context.Context) error { return nil }, Poweroff: func(context.Context) error { return nil },
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	// Registered first, so it runs after the Stop below: a Run that
	// failed or hung leaves its log in the output.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("RC log:\n%s", logs)
		}
	})
	testenv.Serve(t, "Run", 10*time.Second, func(ctx context.Context) error { return rc.Run(ctx, cfg) })
	return dir, logs
}

func TestRCRunsOnlyCommandsSignedForIt(t *testing.T) {
	f, srv := newFakeAM(t)
	dir, logs := runRC(t, srv.URL, nil)
	secret := f.secrets[0]
	touch := func(id int64, name string) proto.Command {
		return proto.Command{ID: id, Enrollment: fakeEnrollment, HRN: "n1", Type: proto.Execute, Command: "touch " + filepath.Join(dir, name)}
	}
	sign := func(c proto.Command, key string) proto.Envelope {
		env, err := proto.Sign(c, key)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tampered := sign(touch(4, "tampered-orig"), secret)
	tampered.Payload = []byte(strings.Replace(string(tampered.Payload), "tampered-orig", "tampered-evil", 1))
	noMAC := sign(touch(3, "no-mac"), secret)
	noMAC.MAC = ""
	wrongEnrollment := touch(5, "wrong-enrollment")
	wrongEnrollment.Enrollment = fakeEnrollment + 1
	wrongNode := touch(6, "wrong-node")
	wrongNode.HRN = "n2"
	cases := []struct {
		id     int64
		env    proto.Envelope
		marker string
		why    string
	}{
		{1, sign(touch(1, "good"), secret), "good", ""},
		{2, sign(touch(2, "other-key"), strings.Repeat("99", 32)), "other-key", "MAC"},
		{3, noMAC, "no-mac", "MAC"},
		{4, tampered, "tampered-evil", "MAC"},
		{5, sign(wrongEnrollment, secret), "wrong-enrollment", "enrollment 8"},
		{6, sign(wrongNode, secret), "wrong-node", "of n2"},
	}
	for _, c := range cases {
		f.send(c.env)
	}
	for _, c := range cases {
		rep, _ := f.final(c.id)
		_, statErr := os.Stat(filepath.Join(dir, c.marker))
		if c.why == "" {
			if rep.State != proto.StateDone || statErr != nil {
				t.Errorf("command %d: %+v, marker: %v; want done and run", c.id, rep, statErr)
			}
			continue
		}
		if rep.State != proto.StateRefused || !strings.Contains(rep.Error, c.why) {
			t.Errorf("command %d: %s %q, want refused (%s)", c.id, rep.State, rep.Error, c.why)
		}
		if statErr == nil {
			t.Errorf("command %d was refused but ran: %s exists", c.id, c.marker)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tampered-orig")); err == nil {
		t.Errorf("the tampered command ran in its original form")
	}
	if t.Failed() {
		t.Log(logs)
	}
}

// The load is held at each piece of the image until the RC reports having
// read it: only an RC that reports while its load waits on the network
// gets to the end, and the reports must tell each piece's end exactly.
func TestRCReportsProgressAsTheLoadAdvances(t *testing.T) {
	f, srv := newFakeAM(t)
	raw := testData(3 << 20)
	img := zstdtest.Compress(t, raw)
	const pieces = 8
	f.mu.Lock()
	f.image, f.pieces = img, pieces
	f.mu.Unlock()
	dir, logs := runRC(t, srv.URL, func(c *rc.Config) { c.ReportEvery = 20 * time.Millisecond })
	disk := filepath.Join(dir, "disk0")
	testenv.WriteFile(t, disk, "")
	env, _ := proto.Sign(proto.Command{ID: 1, Enrollment: fakeEnrollment, HRN: "n1", Type: proto.LoadImage, Image: "slow", Disk: disk, SHA256: sum(img), Size: int64(len(img))}, f.secrets[0])
	f.send(env)
	final, reports := f.final(1)
	if final.State != proto.StateDone || final.SHA256 != sum(img) {
		t.Fatalf("final = %+v\n%s", final, logs)
	}
	if got, _ := os.ReadFile(disk); string(got) != string(raw) {
		t.Errorf("the disk differs from the image")
	}
	var last int64
	at := map[int64]bool{} // Done of the running reports
	for i, r := range reports {
		p := r.Progress
		if p == nil {
			continue
		}
		if p.Done < last || p.Total != int64(len(img)) {
			t.Errorf("report %d: progress %+v after %d", i, p, last)
		}
		last = p.Done
		if r.State == proto.StateRunning {
			at[p.Done] = true
		}
	}
	if last != int64(len(img)) {
		t.Errorf("progress ends at %d of %d", last, len(img))
	}
	piece := len(img)/pieces + 1
	for end := piece; end < len(img); end += piece {
		if !at[int64(end)] {
			t.Errorf("no running report at %d bytes, where the image stalled; reports at %v", end, at)
		}
	}
}

func TestRCEnrollsAgainWhenForgotten(t *testing.T) {
	f, srv := newFakeAM(t)
	dir, _ := runRC(t, srv.URL, nil)
	deadline := time.Now().Add(30 * time.Second)
	wait := func(enrolls int) {
		for {
			f.mu.Lock()
			n := f.enrolls
			f.mu.Unlock()
			if n >= enrolls {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d enrollments, want %d", n, enrolls)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(1)
	f.mu.Lock()
	f.forget = true
	f.mu.Unlock()
	wait(2)
	// Commands are now checked with the second secret only.
	old, _ := proto.Sign(proto.Command{ID: 1, Enrollment: fakeEnrollment, HRN: "n1", Type: proto.Execute, Command: "touch " + filepath.Join(dir, "old")}, f.secrets[0])
	cur, _ := proto.Sign(proto.Command{ID: 2, Enrollment: fakeEnrollment, HRN: "n1", Type: proto.Execute, Command: "touch " + filepath.Join(dir, "new")}, f.secrets[1])
	f.send(old)
	f.send(cur)
	if r, _ := f.final(1); r.State != proto.StateRefused {
		t.Errorf("a command signed with the forgotten secret: %+v", r)
	}
	if r, _ := f.final(2); r.State != proto.StateDone {
		t.Errorf("a command signed with the new secret: %+v", r)
	}
}

func TestFindAM(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		testenv.WriteFile(t, p, []byte(text))
		return p
	}
	cmdline := file("cmdline", "BOOT_IMAGE=vmlinuz orbit.am=10.0.0.9 quiet orbit.am=http://10.18.0.1:8080/\n")
	empty := file("empty", "quiet\n")
	// What pxelinux makes of the image's APPEND line with IPAPPEND 3.
	pxe := file("pxe", "initrd=initramfs-orbit-pxe-2.0.0.gz console=ttyS0,115200 ip=10.18.1.1:10.18.0.1:10.18.0.2:255.255.0.0 BOOTIF=01-52-54-00-18-01-01\n")
	pxeAndAM := file("pxe-am", "orbit.am=http://10.18.0.9 ip=10.18.1.1:10.18.0.1:10.18.0.2:255.255.0.0\n")
	noServer := file("pxe-none", "ip=10.18.1.1:0.0.0.0:10.18.0.2:255.255.0.0\n")
	dracut := file("dracut", "ip=dhcp\n")
	tests := []struct {
		am, cmdline, next string
		want              string
		how               string // a prefix of FindAM's how
		wantErr           bool
	}{
		{am: "http://am.example:5054", cmdline: pxe, next: "10.18.0.2", want: "http://am.example:5054", how: "--am "},
		{am: "10.18.0.1", want: "http://10.18.0.1:5054"},
		{am: "10.18.0.1:80", want: "http://10.18.0.1:80"},
		{cmdline: cmdline, next: "10.1.1.1", want: "http://10.18.0.1:8080", how: "orbit.am= in "}, // the last orbit.am= wins
		{cmdline: empty, next: "10.18.0.2", want: "http://10.18.0.2:5054", how: "DHCP next-server 10.18.0.2"},
		{cmdline: filepath.Join(dir, "missing"), next: "fd00::1", want: "http://[fd00::1]:5054"},
		// Proxy mode: the site's DHCP server is the next-server, pxelinux's
		// boot server is the appliance.
		{cmdline: pxe, next: "10.18.0.2", want: "http://10.18.0.1:5054", how: "boot server 10.18.0.1 (pxelinux ip= in " + pxe + ")"},
		{cmdline: pxe, want: "http://10.18.0.1:5054", how: "boot server 10.18.0.1"},
		{cmdline: pxeAndAM, next: "10.18.0.2", want: "http://10.18.0.9:5054", how: "orbit.am= in "},
		{cmdline: noServer, next: "10.18.0.2", want: "http://10.18.0.2:5054", how: "DHCP next-server 10.18.0.2 (ip=10.18.1.1:0.0.0.0:10.18.0.2:255.255.0.0: no boot server)"},
		{cmdline: dracut, next: "10.18.0.2", want: "http://10.18.0.2:5054", how: "DHCP next-server 10.18.0.2 (ip=dhcp: not pxelinux's"},
		{cmdline: dracut, wantErr: true},
		{cmdline: empty, wantErr: true},
		{next: "not-an-ip", wantErr: true},
		{am: "ftp://x", wantErr: true},
	}
	for _, tc := range tests {
		got, how, err := rc.FindAM(tc.am, tc.cmdline, tc.next)
		if (err != nil) != tc.wantErr || got != tc.want || !strings.HasPrefix(how, tc.how) {
			t.Errorf("FindAM(%q, %q, %q) = %q, %q, %v; want %q, %q... (error %v)", tc.am, tc.cmdline, tc.next, got, how, err, tc.want, tc.how, tc.wantErr)
		}
	}
}

func TestBootServer(t *testing.T) {
	tests := []struct {
		name, cmdline string
		want          string // "" for none
		wantErr       string // a part of the error
	}{
		{"absent", "console=ttyS0 BOOTIF=01-52-54-00-18-01-01", "", ""},
		{"empty command line", "", "", ""},
		{"pxelinux IPAPPEND 1", "ip=10.18.1.1:10.18.0.1:10.18.0.254:255.255.0.0", "10.18.0.1", ""},
		{"among other arguments", "quiet ip=10.18.1.1:10.18.0.1:0.0.0.0:255.255.0.0 BOOTIF=01-52-54-00-18-01-01", "10.18.0.1", ""},
		{"kernel syntax, more fields", "ip=10.18.1.1:10.18.0.7:10.18.0.254:255.255.0.0:node1-1:eth0:off", "10.18.0.7", ""},
		{"the last one wins", "ip=10.0.0.2:10.0.0.1:0.0.0.0:255.0.0.0 ip=10.18.1.1:10.18.0.1:0.0.0.0:255.255.0.0", "10.18.0.1", ""},
		{"last malformed wins over an earlier good one", "ip=10.18.1.1:10.18.0.1:0.0.0.0:255.255.0.0 ip=dhcp", "", "not pxelinux's"},
		{"dracut dhcp", "ip=dhcp", "", "not pxelinux's"},
		{"three fields", "ip=10.18.1.1:10.18.0.1:10.18.0.254", "", "not pxelinux's"},
		{"empty value", "ip=", "", "not pxelinux's"},
		{"server not an address", "ip=10.18.1.1:appliance:10.18.0.254:255.255.0.0", "", "not pxelinux's"},
		{"IPv6 server", "ip=10.18.1.1:fd00--1:10.18.0.254:255.255.0.0", "", "not pxelinux's"},
		{"kernel form without addresses", "ip=::::node1-1:eth0:dhcp", "", "not pxelinux's"},
		{"no boot server known", "ip=10.18.1.1:0.0.0.0:10.18.0.254:255.255.0.0", "", "no boot server"},
		{"loopback server", "ip=10.18.1.1:127.0.0.1:10.18.0.254:255.255.0.0", "", "no boot server"},
		{"broadcast server", "ip=10.18.1.1:255.255.255.255:10.18.0.254:255.255.0.0", "", "no boot server"},
		{"not ip= but a longer key", "nfsip=10.18.1.1:10.18.0.1:0.0.0.0:255.255.0.0", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rc.BootServer(tc.cmdline)
			var gotS string
			if got.IsValid() {
				gotS = got.String()
			}
			if gotS != tc.want {
				t.Errorf("BootServer(%q) = %q, want %q", tc.cmdline, gotS, tc.want)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("BootServer(%q): %v", tc.cmdline, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("BootServer(%q) error %v, want one saying %q", tc.cmdline, err, tc.wantErr)
			}
		})
	}
}
