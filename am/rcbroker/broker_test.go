package rcbroker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/am/rcbroker/rcbrokertest"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

const inventoryYAML = `testbeds:
  - domain: sb8
    nodes:
      - { hrn: n1.sb8, hostname: n1, control_ip: 127.0.0.11, control_mac: "00:03:1d:0c:01:01", disk: /dev/sda }
      - { hrn: n2.sb8, hostname: n2, control_ip: 127.0.0.12, control_mac: "00:03:1d:0c:01:02", disk: /dev/hda }
`

// The simulated nodes speak from their control IPs (apptest.ClientFrom);
// req's default source, 127.0.0.1, is no node's.
var nodeIP = map[string]string{"00:03:1d:0c:01:01": "127.0.0.11", "00:03:1d:0c:01:02": "127.0.0.12"}

const operatorToken = rcbrokertest.OperatorToken

func start(t testing.TB, cfg rcbroker.Config) *rcbrokertest.Appliance {
	t.Helper()
	a, err := rcbrokertest.Start(t.TempDir(), rcbrokertest.Options{Inventory: inventoryYAML, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

type answer struct {
	code   int
	body   string
	header http.Header
}

func req(t testing.TB, method, url, bearer string, body any, hdr ...string) answer {
	t.Helper()
	return reqFrom(t, "", method, url, bearer, body, hdr...)
}

// reqFrom is req from source address from ("" for any).
func reqFrom(t testing.TB, from, method, url, bearer string, body any, hdr ...string) answer {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		r = bytes.NewReader(data)
	}
	rq, _ := http.NewRequest(method, url, r)
	if bearer != "" {
		rq.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		rq.Header.Set(hdr[i], hdr[i+1])
	}
	return doFrom(t, from, rq)
}

// do sends rq and reads the whole answer.
func do(t testing.TB, rq *http.Request) answer {
	t.Helper()
	return doFrom(t, "", rq)
}

func doFrom(t testing.TB, from string, rq *http.Request) answer {
	t.Helper()
	r := apptest.DoFrom(t, from, rq)
	return answer{r.Status, r.Body, r.Header}
}

// enroll enrolls the node of macs[0] from its control IP.
func enroll(t testing.TB, a *rcbrokertest.Appliance, macs ...string) proto.EnrollResponse {
	t.Helper()
	ans := reqFrom(t, nodeIP[macs[0]], http.MethodPost, a.URL+"/api/v1/rc/enroll", "", proto.EnrollRequest{MACs: macs, Image: "orbit-2.0.0", BootID: "b1"})
	var e proto.EnrollResponse
	if ans.code != http.StatusOK || json.Unmarshal([]byte(ans.body), &e) != nil {
		t.Fatalf("enroll %v: %d %s", macs, ans.code, ans.body)
	}
	return e
}

func TestEnrollChecks(t *testing.T) {
	a := start(t, rcbroker.Config{})
	on := true
	n1, n2 := nodeIP["00:03:1d:0c:01:01"], nodeIP["00:03:1d:0c:01:02"]
	for _, tc := range []struct {
		name string
		from string
		body any
		hdr  []string
		want int
	}{
		{"no MACs", n1, proto.EnrollRequest{}, nil, http.StatusBadRequest},
		{"bad MAC", n1, proto.EnrollRequest{MACs: []string{"00:03:1d"}}, nil, http.StatusBadRequest},
		{"not JSON", n1, "{", nil, http.StatusBadRequest},
		{"unknown", n1, proto.EnrollRequest{MACs: []string{"02:00:00:00:00:01"}}, nil, http.StatusNotFound},
		{"two nodes", n1, proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01", "00:03:1d:0c:01:02"}}, nil, http.StatusConflict},
		{"unknown firmware", n1, proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01"}, Firmware: "coreboot"}, nil, http.StatusBadRequest},
		{"secure boot on bios", n1, proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01"}, Firmware: proto.FirmwareBIOS, SecureBoot: &on}, nil, http.StatusBadRequest},
		// MACs are not secret: n1's from another address is not n1.
		{"n1 from n2's address", n2, proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01"}}, nil, http.StatusForbidden},
		{"n1 from no node's address", "127.0.0.1", proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01"}}, nil, http.StatusForbidden},
		{"n1 from elsewhere, forwarded for n1", "127.0.0.1", proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01"}},
			[]string{"X-Forwarded-For", n1, "X-Real-IP", n1}, http.StatusForbidden},
		{"upper case, unknown first", n2, proto.EnrollRequest{MACs: []string{"02:00:00:00:00:01", "00:03:1D:0C:01:02"}}, nil, http.StatusOK},
	} {
		ans := reqFrom(t, tc.from, http.MethodPost, a.URL+"/api/v1/rc/enroll", "", tc.body, tc.hdr...)
		if ans.code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, ans.code, ans.body, tc.want)
		}
		if tc.want == http.StatusForbidden && (strings.Contains(ans.body, "secret") || !strings.Contains(ans.body, "enrolls from its control IP 127.0.0.11")) {
			t.Errorf("%s: %s; want a refusal that names the node's address, and no secret", tc.name, ans.body)
		}
	}
	s, err := amclient.New(a.URL).RCStatus(context.Background(), "n2.sb8")
	if err != nil || !s.Enrolled || s.MACs[1] != "00:03:1d:0c:01:02" {
		t.Errorf("n2 = %+v, %v", s, err)
	}
	if s, err := amclient.New(a.URL).RCStatus(context.Background(), "n1.sb8"); err != nil || s.Enrolled {
		t.Errorf("n1 = %+v, %v: a refused enrollment enrolled it", s, err)
	}
}

// TestEnrollFirmware: how the node booted, as its RC said, is in its RC
// status and on its timeline; an RC that did not say is unknown.
func TestEnrollFirmware(t *testing.T) {
	a := start(t, rcbroker.Config{})
	on, off := true, false
	for _, tc := range []struct {
		name     string
		firmware string
		sb       *bool
		detail   string
	}{
		{"older RC", "", nil, "orbit-2.0.0"},
		{"bios", proto.FirmwareBIOS, &off, "orbit-2.0.0 firmware=bios secure_boot=off"},
		{"uefi, efivarfs unreadable", proto.FirmwareUEFI, nil, "orbit-2.0.0 firmware=uefi"},
		{"uefi", proto.FirmwareUEFI, &off, "orbit-2.0.0 firmware=uefi secure_boot=off"},
		{"uefi secure boot", proto.FirmwareUEFI, &on, "orbit-2.0.0 firmware=uefi secure_boot=on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans := reqFrom(t, nodeIP["00:03:1d:0c:01:01"], http.MethodPost, a.URL+"/api/v1/rc/enroll", "", proto.EnrollRequest{
				MACs: []string{"00:03:1d:0c:01:01"}, Image: "orbit-2.0.0", BootID: tc.name, Firmware: tc.firmware, SecureBoot: tc.sb})
			if ans.code != http.StatusOK {
				t.Fatalf("enroll: %d %s", ans.code, ans.body)
			}
			for _, path := range []string{"/api/v1/nodes/n1.sb8/rc", "/api/v1/rc"} {
				ans := req(t, http.MethodGet, a.URL+path, "", nil)
				var one proto.RCStatus
				var all []proto.RCStatus
				if path == "/api/v1/rc" {
					if err := json.Unmarshal([]byte(ans.body), &all); err != nil || len(all) != 1 {
						t.Fatalf("GET %s: %d %s", path, ans.code, ans.body)
					}
					one = all[0]
				} else if err := json.Unmarshal([]byte(ans.body), &one); err != nil {
					t.Fatalf("GET %s: %d %s", path, ans.code, ans.body)
				}
				if one.Firmware != tc.firmware || (one.SecureBoot == nil) != (tc.sb == nil) || (tc.sb != nil && *one.SecureBoot != *tc.sb) {
					t.Errorf("GET %s: %s; want firmware %q secure_boot %v", path, ans.body, tc.firmware, tc.sb)
				}
				if tc.sb == nil && strings.Contains(ans.body, "secure_boot") {
					t.Errorf("GET %s: %s: an unknown secure_boot must be absent", path, ans.body)
				}
			}
			evs, err := a.Store().Events(context.Background(), "n1.sb8")
			if err != nil || len(evs) == 0 {
				t.Fatalf("events: %v, %v", evs, err)
			}
			if last := evs[len(evs)-1]; last.What != "enrolled" || last.Detail != tc.detail {
				t.Errorf("last event %+v; want enrolled %q", last, tc.detail)
			}
		})
	}
}

func TestCommandRequestChecks(t *testing.T) {
	a := start(t, rcbroker.Config{})
	enroll(t, a, "00:03:1d:0c:01:01")
	u := a.URL + "/api/v1/nodes/n1.sb8/commands"
	for _, tc := range []struct {
		body any
		want int
		msg  string
	}{
		{`{"type": "DANCE"}`, 400, "want one of"},
		{`{"type": "EXECUTE"}`, 400, "either a command"},
		{`{"type": "EXECUTE", "command": "x", "args": ["y"]}`, 400, "either a command"},
		{`{"type": "EXECUTE", "command": "x", "colour": "red"}`, 400, "unknown field"},
		{`{"type": "EXECUTE", "command": "x", "timeout": "soon"}`, 400, "timeout"},
		{`{"type": "EXECUTE", "command": "x", "disk": "/dev/sda"}`, 400, "takes no disk"},
		{`{"type": "REBOOT", "image": "x"}`, 400, "takes no image"},
		{`{"type": "SAVE_IMAGE", "image": "x", "disk": "/dev/sda", "multicast": true}`, 400, "takes no multicast"},
		{`{"type": "EXECUTE", "command": "x", "multicast": true}`, 400, "takes no multicast"},
		{`{"type": "ENROLL"}`, 400, "needs an image"},
		{`{"type": "SAVE_IMAGE", "image": "../etc"}`, 400, "disk image name"},
		{`{"type": "SAVE_IMAGE", "image": "ok", "disk": "dev/sda"}`, 400, "absolute"},
		{`{"type": "SAVE_IMAGE", "image": "ok", "disk": "/dev/../etc/passwd"}`, 400, "absolute"},
		{`{"type": "LOAD_IMAGE", "image": "missing"}`, 404, "no disk image"},
		{`{"type": "execute", "command": "true"}`, 202, ""},
		{`{"type": "SAVE_IMAGE", "image": "ok"}`, 202, `"disk":"/dev/sda"`}, // the inventory's disk
	} {
		ans := req(t, http.MethodPost, u, "", tc.body)
		if ans.code != tc.want || !strings.Contains(ans.body, tc.msg) {
			t.Errorf("%s: %d %s, want %d %q", tc.body, ans.code, ans.body, tc.want, tc.msg)
		}
	}
	for path, want := range map[string]int{
		"/api/v1/nodes/n2.sb8/commands":     http.StatusConflict, // not enrolled
		"/api/v1/nodes/nope/commands":       http.StatusNotFound,
		"/api/v1/nodes/bad%20name/commands": http.StatusBadRequest,
	} {
		if ans := req(t, http.MethodPost, a.URL+path, "", `{"type":"REBOOT"}`); ans.code != want {
			t.Errorf("%s: %d %s, want %d", path, ans.code, ans.body, want)
		}
	}
	for path, want := range map[string]int{"/api/v1/commands/x": 400, "/api/v1/commands/999": 404, "/api/v1/commands/1": 200, "/api/v1/nodes/nope/rc": 404} {
		if ans := req(t, http.MethodGet, a.URL+path, "", nil); ans.code != want {
			t.Errorf("GET %s: %d, want %d", path, ans.code, want)
		}
	}
}

func TestPollWakesAndFailsLostCommands(t *testing.T) {
	waits := make(chan string, 64)
	a := start(t, rcbroker.WithPollWaits(rcbroker.Config{PollWait: 30 * time.Second}, func(hrn string) {
		select {
		case waits <- hrn:
		default:
		}
	}))
	e := enroll(t, a, "00:03:1d:0c:01:01")
	c := amclient.New(a.URL)
	ctx := context.Background()
	poll := func(query string) answer {
		return req(t, http.MethodGet, a.URL+"/api/v1/rc/poll?"+query, e.Secret, nil)
	}
	waited := func() int {
		n := 0
		for {
			select {
			case <-waits:
				n++
			default:
				return n
			}
		}
	}
	for _, q := range []string{"wait=soon", "running=1,x", "running=-1"} {
		if ans := poll(q); ans.code != http.StatusBadRequest {
			t.Errorf("poll ?%s: %d %s, want 400", q, ans.code, ans.body)
		}
	}
	if n := waited(); n != 0 {
		t.Errorf("refused polls waited %d times", n)
	}
	if ans := poll("wait=200ms"); ans.code != http.StatusNoContent {
		t.Errorf("empty poll: %d %s, want 204", ans.code, ans.body)
	}
	if n := waited(); n != 1 {
		t.Errorf("an empty poll waited %d times, want once", n)
	}
	// A command queued while a poll waits is handed out by that poll:
	// it is queued once the poll has looked and found nothing, and the
	// poll waits up to 30 s, so only a wake-up hands it out.
	got := make(chan answer, 1)
	go func() {
		rq, _ := http.NewRequest(http.MethodGet, a.URL+"/api/v1/rc/poll?wait=30s", nil)
		rq.Header.Set("Authorization", "Bearer "+e.Secret)
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			got <- answer{code: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, string(data), resp.Header}
	}()
	select {
	case hrn := <-waits:
		if hrn != "n1.sb8" {
			t.Fatalf("a poll of %s waits, want n1.sb8", hrn)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the poll did not start waiting within 60s")
	}
	if _, err := c.SendCommand(ctx, "n1.sb8", proto.CommandRequest{Type: proto.Execute, Command: "true"}); err != nil {
		t.Fatal(err)
	}
	var ans answer
	select {
	case ans = <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("the poll did not return within 60s")
	}
	if ans.code != http.StatusOK {
		t.Fatalf("poll: %d %s, want the command queued while it waited", ans.code, ans.body)
	}
	var env proto.Envelope
	if err := json.Unmarshal([]byte(ans.body), &env); err != nil {
		t.Fatalf("poll answer %q: %v", ans.body, err)
	}
	cmd, err := proto.Open(env, e.Secret)
	if err != nil || cmd.Type != proto.Execute || cmd.HRN != "n1.sb8" || cmd.Enrollment != e.Enrollment {
		t.Fatalf("command = %+v, %v", cmd, err)
	}
	if st, _ := c.Command(ctx, cmd.ID); st.State != proto.StateRunning {
		t.Errorf("a command handed out is %s, want running", st.State)
	}
	// The RC still runs it: kept. Then it does not: lost.
	poll(fmt.Sprintf("wait=0s&running=%d", cmd.ID))
	if st, _ := c.Command(ctx, cmd.ID); st.State != proto.StateRunning {
		t.Errorf("a command the RC runs is %s, want running", st.State)
	}
	poll("wait=0s")
	if st, _ := c.Command(ctx, cmd.ID); st.State != proto.StateFailed || !strings.Contains(st.Error, "lost") {
		t.Errorf("a command the RC forgot is %s %q, want failed: lost", st.State, st.Error)
	}
	if ans := req(t, http.MethodPost, fmt.Sprintf("%s/api/v1/rc/commands/%d/report", a.URL, cmd.ID), e.Secret, proto.Report{Seq: 1, State: proto.StateDone}); ans.code != http.StatusConflict {
		t.Errorf("report on a command that is over: %d %s, want 409", ans.code, ans.body)
	}
}

func TestSilentRCsCommandsFail(t *testing.T) {
	a := start(t, rcbroker.Config{PollWait: 100 * time.Millisecond, SilentAfter: 300 * time.Millisecond})
	e := enroll(t, a, "00:03:1d:0c:01:01")
	c := amclient.New(a.URL)
	ctx := context.Background()
	st, err := c.SendCommand(ctx, "n1.sb8", proto.CommandRequest{Type: proto.Execute, Command: "sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	req(t, http.MethodGet, a.URL+"/api/v1/rc/poll?wait=0s", e.Secret, nil) // takes it, then silence
	got, err := c.WaitCommand(ctx, st.ID, 20*time.Millisecond, nil)
	if err != nil || got.State != proto.StateFailed || !strings.Contains(got.Error, "stopped polling") {
		t.Errorf("command of a silent RC: %+v, %v", got, err)
	}
	if s, _ := c.RCStatus(ctx, "n1.sb8"); s.Online {
		t.Errorf("a silent RC is online: %+v", s)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// putTrailer uploads data to url with the checksum in a trailer, as
// orbit-rc sends it.
func putTrailer(t testing.TB, url string, data []byte, trailerSum string) answer {
	t.Helper()
	pr, pw := io.Pipe()
	rq, _ := http.NewRequest(http.MethodPut, url, pr)
	rq.ContentLength = -1
	rq.Header.Set("Authorization", "Bearer "+operatorToken)
	rq.Trailer = http.Header{proto.HeaderSHA256: nil}
	go func() {
		_, err := pw.Write(data) // fails only if the request ended early: do says why
		rq.Trailer.Set(proto.HeaderSHA256, trailerSum)
		pw.CloseWithError(err)
	}()
	return do(t, rq)
}

func TestDiskImageStore(t *testing.T) {
	a := start(t, rcbroker.Config{})
	u := a.URL + "/api/v1/disk-images/"
	img := zstdtest.Compress(t, bytes.Repeat([]byte("disk "), 100000))

	upload := func(name string, data []byte, trailerSum string) answer {
		return putTrailer(t, u+name, data, trailerSum)
	}
	if ans := upload("t1", img, sum(img)); ans.code != http.StatusCreated {
		t.Fatalf("upload with a trailer: %d %s", ans.code, ans.body)
	}
	if ans := upload("t1", img[:len(img)-10], sum(img)); ans.code != http.StatusBadRequest || !strings.Contains(ans.body, "checksum mismatch") {
		t.Errorf("short upload with the full sum in the trailer: %d %s", ans.code, ans.body)
	}
	get := req(t, http.MethodGet, u+"t1", operatorToken, nil)
	if get.code != 200 || get.body != string(img) || get.header.Get(proto.HeaderSHA256) != sum(img) || get.header.Get(proto.HeaderFormat) != "zstd" {
		t.Errorf("GET t1: %d, %d bytes, %v", get.code, len(get.body), get.header)
	}
	if r := req(t, http.MethodGet, u+"t1", operatorToken, nil, "Range", "bytes=4-9"); r.code != http.StatusPartialContent || r.body != string(img[4:10]) {
		t.Errorf("range: %d %q", r.code, r.body)
	}
	if r := req(t, http.MethodHead, u+"t1", operatorToken, nil); r.code != 200 || r.header.Get("Content-Length") != fmt.Sprint(len(img)) {
		t.Errorf("HEAD: %d %v", r.code, r.header)
	}
	// An operator drops a gzip image in by hand: its checksum is computed.
	gz := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := os.WriteFile(filepath.Join(a.Dir, "images", "byhand.gz"), gz, 0o644); err != nil {
		t.Fatal(err)
	}
	var list []proto.DiskImage
	if ans := req(t, http.MethodGet, a.URL+"/api/v1/disk-images", "", nil); json.Unmarshal([]byte(ans.body), &list) != nil {
		t.Errorf("list: %d %s", ans.code, ans.body)
	}
	if len(list) != 2 || list[0].Name != "byhand" || list[0].SHA256 != sum(gz) || list[0].Format != "gzip" || list[1].SHA256 != sum(img) {
		t.Errorf("list = %+v", list)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "images", "byhand.gz.sha256")); err != nil {
		t.Errorf("the computed checksum was not kept: %v", err)
	}
	// Replacing it with a zstd image leaves one file for the name.
	if ans := req(t, http.MethodPut, u+"byhand", operatorToken, img, proto.HeaderSHA256, sum(img)); ans.code != http.StatusCreated {
		t.Fatalf("replace: %d %s", ans.code, ans.body)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "images", "byhand.gz")); err == nil {
		t.Errorf("the gzip file of a name now stored as zstd is still there")
	}
	for _, name := range []string{"%2e%2e", "..%2fstate%2fnetboot.db", ".upload-x", "a..b"} {
		if r := req(t, http.MethodGet, u+name, operatorToken, nil); r.code == http.StatusOK {
			t.Errorf("GET %s: 200", name)
		}
		if r := req(t, http.MethodPut, u+name, operatorToken, img, proto.HeaderSHA256, sum(img)); r.code == http.StatusCreated {
			t.Errorf("PUT %s: 201", name)
		}
	}
	if r := req(t, http.MethodDelete, u+"t1", operatorToken, nil); r.code != http.StatusNoContent {
		t.Errorf("DELETE: %d %s", r.code, r.body)
	}
	if r := req(t, http.MethodGet, u+"t1", operatorToken, nil); r.code != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d", r.code)
	}
	entries, _ := os.ReadDir(filepath.Join(a.Dir, "images"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "byhand.zst byhand.zst.sha256" {
		t.Errorf("image directory: %v", names)
	}
}

func TestLeftoverUploadsRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "images", ".upload-x-123"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := rcbrokertest.Start(dir, rcbrokertest.Options{Inventory: inventoryYAML})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	if _, err := os.Stat(filepath.Join(dir, "images", ".upload-x-123")); err == nil {
		t.Errorf("a leftover upload survived the start")
	}
}

// A download in flight must not hold the appliance's shutdown (netbootd
// gives its HTTP server 5 s, then exits with the transfer still going).
func TestStopCutsStalledDownload(t *testing.T) {
	a := start(t, rcbroker.Config{})
	img := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, make([]byte, 256<<20)...)
	if ans := req(t, http.MethodPut, a.URL+"/api/v1/disk-images/big", operatorToken, img, proto.HeaderSHA256, sum(img)); ans.code != http.StatusCreated {
		t.Fatalf("upload: %d %s", ans.code, ans.body)
	}
	var conn net.Conn
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		conn = c
		return c, err
	}}}
	get, _ := http.NewRequest(http.MethodGet, a.URL+"/api/v1/disk-images/big", nil)
	get.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := client.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1)); err != nil { // then stall: the socket buffers fill
		t.Fatal(err)
	}
	// Stalled: the appliance's side of the connection holds bytes the
	// client's full window does not take.
	server, client0 := conn.RemoteAddr().String(), conn.LocalAddr().String()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		q, err := sendQueue(server, client0)
		if err != nil {
			t.Fatal(err)
		}
		if q > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the download did not stall within 30s")
		}
	}
	stopped(t, a)
	n, err := io.Copy(io.Discard, resp.Body)
	if n+1 >= int64(len(img)) || err == nil {
		t.Errorf("the stalled download went on after the stop: %d of %d bytes, then %v", n+1, len(img), err)
	}
}

// stopped stops a and fails the test if it hangs.
func stopped(t *testing.T, a *rcbrokertest.Appliance) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		a.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Stop hangs")
	}
}

// sendQueue is how many bytes the TCP socket from local to remote has sent
// and not had acknowledged: on loopback, bytes the receiver has no room
// for.
func sendQueue(local, remote string) (int64, error) {
	hexAddr := func(s string) (string, error) {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || !ap.Addr().Is4() {
			return "", fmt.Errorf("%s: want an IPv4 address and port", s)
		}
		ip := ap.Addr().As4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port()), nil
	}
	l, err := hexAddr(local)
	if err != nil {
		return 0, err
	}
	r, err := hexAddr(remote)
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == l && f[2] == r {
			tx, _, _ := strings.Cut(f[4], ":")
			return strconv.ParseInt(tx, 16, 64)
		}
	}
	return 0, fmt.Errorf("no TCP socket %s -> %s in /proc/net/tcp", local, remote)
}

func TestStopCutsStalledUpload(t *testing.T) {
	a := start(t, rcbroker.Config{})
	pr, pw := io.Pipe()
	defer pw.Close()
	rq, _ := http.NewRequest(http.MethodPut, a.URL+"/api/v1/disk-images/slow", pr)
	rq.Header.Set(proto.HeaderSHA256, strings.Repeat("0", 64))
	rq.Header.Set("Authorization", "Bearer "+operatorToken)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(rq)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	magic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if _, err := pw.Write(magic); err != nil { // then nothing more
		t.Fatal(err)
	}
	// Stalled: the appliance has written all it got and waits for more.
	dir := filepath.Join(a.Dir, "images")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ups, _ := filepath.Glob(filepath.Join(dir, ".upload-slow-*")); len(ups) == 1 {
			if fi, err := os.Stat(ups[0]); err == nil && fi.Size() == int64(len(magic)) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload did not reach the appliance within 30s")
		}
	}
	stopped(t, a)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left in the image directory: %v", entries)
	}
	select {
	case err := <-errc:
		t.Logf("the upload ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Errorf("the upload still goes on 60s after the stop")
	}
}

// TestDiskImageAccess: an RC reaches a disk image (and a chunked image's
// manifest) only with its bearer and while its node runs a LOAD_IMAGE
// (download) or SAVE_IMAGE (upload) of that image; an operator always.
func TestDiskImageAccess(t *testing.T) {
	a := start(t, rcbroker.Config{})
	u := a.URL + "/api/v1/disk-images/"
	img, digest := zstdtest.Chunked(t, bytes.Repeat([]byte("disk "), 100000), 0)
	img2 := zstdtest.Compress(t, bytes.Repeat([]byte("node "), 1000)) // what the RCs upload
	for _, name := range []string{"base", "other"} {
		if ans := req(t, http.MethodPut, u+name, operatorToken, img, proto.HeaderSHA256, digest); ans.code != http.StatusCreated {
			t.Fatalf("operator upload of %s: %d %s", name, ans.code, ans.body)
		}
	}
	e1, e2 := enroll(t, a, "00:03:1d:0c:01:01"), enroll(t, a, "00:03:1d:0c:01:02")
	ctx := context.Background()
	c := amclient.New(a.URL)
	// run queues a command for n1 and has its RC take it: it runs.
	run := func(req proto.CommandRequest) proto.CommandStatus {
		t.Helper()
		st, err := c.SendCommand(ctx, "n1.sb8", req)
		if err != nil {
			t.Fatal(err)
		}
		if ans := reqFrom(t, "", http.MethodGet, a.URL+"/api/v1/rc/poll?wait=0s", e1.Secret, nil); ans.code != http.StatusOK {
			t.Fatalf("poll: %d %s", ans.code, ans.body)
		}
		return st
	}
	finish := func(st proto.CommandStatus) {
		t.Helper()
		if ans := req(t, http.MethodPost, fmt.Sprintf("%s/api/v1/rc/commands/%d/report", a.URL, st.ID), e1.Secret, proto.Report{Seq: 1, State: proto.StateDone}); ans.code != http.StatusNoContent {
			t.Fatalf("report: %d %s", ans.code, ans.body)
		}
	}
	type check struct {
		method, name, bearer string
		want                 int
	}
	try := func(when string, checks ...check) {
		t.Helper()
		for _, ck := range checks {
			var body any
			var hdr []string
			if ck.method == http.MethodPut {
				body, hdr = img2, []string{proto.HeaderSHA256, sum(img2)}
			}
			if ans := req(t, ck.method, u+ck.name, ck.bearer, body, hdr...); ans.code != ck.want {
				t.Errorf("%s: %s %s with bearer %.8s: %d %s, want %d", when, ck.method, ck.name, ck.bearer, ans.code, ans.body, ck.want)
			}
		}
	}
	try("nothing runs",
		check{http.MethodGet, "base", "", http.StatusUnauthorized},
		check{http.MethodHead, "base", "", http.StatusUnauthorized},
		check{http.MethodPut, "base", "", http.StatusUnauthorized},
		check{http.MethodGet, "base", "not-a-secret", http.StatusUnauthorized},
		check{http.MethodGet, "base", e1.Secret, http.StatusForbidden},
		check{http.MethodHead, "base", e1.Secret, http.StatusForbidden},
		check{http.MethodPut, "base", e1.Secret, http.StatusForbidden},
		check{http.MethodGet, "base", operatorToken, http.StatusOK},
		check{http.MethodHead, "base", operatorToken, http.StatusOK},
		check{http.MethodGet, "base/manifest", "", http.StatusUnauthorized},
		check{http.MethodGet, "base/manifest", e1.Secret, http.StatusForbidden},
		check{http.MethodGet, "base/manifest", operatorToken, http.StatusOK},
	)
	if ans := req(t, http.MethodGet, a.URL+"/api/v1/disk-images", "", nil); ans.code != http.StatusOK {
		t.Errorf("list: %d %s", ans.code, ans.body)
	}
	load := run(proto.CommandRequest{Type: proto.LoadImage, Image: "base"})
	try("n1 loads base",
		check{http.MethodGet, "base", e1.Secret, http.StatusOK},
		check{http.MethodHead, "base", e1.Secret, http.StatusOK},
		check{http.MethodGet, "other", e1.Secret, http.StatusForbidden}, // not the image it loads
		check{http.MethodPut, "base", e1.Secret, http.StatusForbidden},  // a load is no save
		check{http.MethodGet, "base", e2.Secret, http.StatusForbidden},  // not n2's command
		check{http.MethodGet, "base/manifest", e1.Secret, http.StatusOK},
		check{http.MethodGet, "other/manifest", e1.Secret, http.StatusForbidden},
		check{http.MethodGet, "base/manifest", e2.Secret, http.StatusForbidden},
	)
	finish(load)
	try("n1's load is over",
		check{http.MethodGet, "base", e1.Secret, http.StatusForbidden},
		check{http.MethodGet, "base/manifest", e1.Secret, http.StatusForbidden},
	)

	save := run(proto.CommandRequest{Type: proto.SaveImage, Image: "saved"})
	try("n1 saves saved",
		check{http.MethodPut, "other", e1.Secret, http.StatusForbidden},
		check{http.MethodPut, "saved", e2.Secret, http.StatusForbidden},
		check{http.MethodGet, "saved", e1.Secret, http.StatusForbidden}, // a save is no load
		check{http.MethodGet, "saved/manifest", e1.Secret, http.StatusForbidden},
		check{http.MethodPut, "saved", e1.Secret, http.StatusCreated},
	)
	finish(save)
	try("n1's save is over", check{http.MethodPut, "saved", e1.Secret, http.StatusForbidden})
	// The refused uploads changed nothing: "other" is the operator's.
	if got := req(t, http.MethodGet, u+"other", operatorToken, nil); got.code != http.StatusOK || got.body != string(img) {
		t.Errorf("other after refused uploads: %d, %d bytes", got.code, len(got.body))
	}
}
