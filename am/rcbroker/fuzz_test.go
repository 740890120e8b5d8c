package rcbroker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/rc/proto"
)

// FuzzReport sends fuzzed bodies to POST /rc/commands/{id}/report, as an
// RC reports on a command it runs, to a broker on a real store (seeds: the
// reports orbit-rc sends for EXECUTE, LOAD_IMAGE and SAVE_IMAGE, and broken
// ones). Each input reports on a fresh running command. It checks:
//   - the answer is 204, 400 or 409, never a 500 or a panic;
//   - a refused report changes nothing of the command;
//   - an accepted one is what the body decodes to: its state (or the
//     command's, if it names none), its output appended, its reply, error
//     and checksum bounded, in valid UTF-8 when they were sent so;
//   - the command reads back over the API as JSON.
func FuzzReport(f *testing.F) {
	exit0, exit3 := 0, 3
	for _, r := range []proto.Report{
		{Seq: 1, State: proto.StateRunning, Stdout: []byte("Linux node1-1 6.1.0\n")},
		{Seq: 2, State: proto.StateDone, Reply: proto.ReplyOK, ExitCode: &exit0, Stderr: []byte("done\n")},
		{Seq: 1, State: proto.StateFailed, Reply: proto.ReplyError, ExitCode: &exit3, Error: "exit status 3"},
		{Seq: 1, State: proto.StateRunning, Progress: &proto.Progress{Done: 1 << 20, Total: 1 << 30, Written: 4 << 20}},
		{Seq: 3, State: proto.StateDone, Reply: proto.ReplyOK, SHA256: strings.Repeat("0123456789abcdef", 4),
			Progress: &proto.Progress{Done: 1 << 30, Total: 1 << 30, Written: 1 << 30}},
		{Seq: 1, State: proto.StateFailed, Error: "saving /dev/sda as saved: 507 Insufficient Storage: the appliance's disk is full; the stored image is unchanged"},
		{Seq: 1, State: proto.StateRefused, Reply: proto.ReplyError, Error: "disk /dev/sdz: not allowed"},
		{Seq: 1, State: proto.StateDone, Reply: proto.ReplyEnrolled},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`,
		`{"seq":0,"state":"done"}`,
		`{"seq":-1,"state":"failed"}`,
		`{"seq":1,"state":"bogus"}`,
		`{"seq":1,"state":"done","state":"running"}`,
		`{"seq":1e3}`,
		`{"seq":1,"stdout":"not base64"}`,
		`{"seq":1,"error":"\ud800\u00ff\u0000","reply":"` + strings.Repeat("é", 200) + `"}`,
		`{"seq":1,"progress":{"done":-5,"total":-1}}`,
		`{"seq":1,"exit_code":99999999999}`,
		`{"seq":1} {"seq":2}`,
		`{}}`,
		`{"seq":1,"reply":"\u0085\u009f","error":"\u0085"}`,
		`{"seq":1,"state":"done"}]`,
		`[]`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	a := start(f, rcbroker.Config{})
	e := enroll(f, a, "00:03:1d:0c:01:01")
	f.Fuzz(func(t *testing.T, body []byte) {
		id := runningCommand(t, a.URL, e.Secret)
		before := commandStatus(t, a.URL, id)
		ans := req(t, http.MethodPost, fmt.Sprintf("%s/api/v1/rc/commands/%d/report", a.URL, id), e.Secret, body)
		after := commandStatus(t, a.URL, id)
		switch ans.code {
		case http.StatusNoContent:
		case http.StatusBadRequest, http.StatusConflict:
			if !bytes.Equal(before.raw, after.raw) {
				t.Fatalf("report %q refused (%d %s), yet the command changed:\n%s\n%s", body, ans.code, ans.body, before.raw, after.raw)
			}
			return
		default:
			t.Fatalf("report %q: %d %s", body, ans.code, ans.body)
		}
		var r proto.Report
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("report %q accepted, yet it does not decode: %v", body, err)
		}
		got := after.CommandStatus
		if r.Seq <= 0 {
			// A retry of a report applied already: nothing changes.
			if !bytes.Equal(before.raw, after.raw) {
				t.Fatalf("report %q with seq %d changed the command:\n%s\n%s", body, r.Seq, before.raw, after.raw)
			}
			return
		}
		wantState := r.State
		if wantState == "" {
			wantState = before.State
		}
		if got.State != wantState {
			t.Fatalf("report %q: state %q, want %q", body, got.State, wantState)
		}
		// Output reads back as JSON text: byte for byte if it is UTF-8.
		if (utf8.Valid(r.Stdout) && got.Stdout != string(r.Stdout)) || (utf8.Valid(r.Stderr) && got.Stderr != string(r.Stderr)) {
			t.Fatalf("report %q: output %q %q, want %q %q", body, got.Stdout, got.Stderr, r.Stdout, r.Stderr)
		}
		for _, f := range []struct{ name, sent, stored string }{
			{"reply", r.Reply, got.Reply}, {"error", r.Error, got.Error}, {"sha256", r.SHA256, got.SHA256},
		} {
			if len(f.stored) > 4096+3 || (utf8.ValidString(f.sent) && !utf8.ValidString(f.stored)) {
				t.Fatalf("report %q: %s %q stored as %q", body, f.name, f.sent, f.stored)
			}
			if f.sent != "" && f.stored == "" && strings.TrimFunc(f.sent, unicode.IsControl) != "" {
				t.Fatalf("report %q: %s %q lost", body, f.name, f.sent)
			}
		}
		if r.ExitCode != nil && (got.ExitCode == nil || *got.ExitCode != *r.ExitCode) {
			t.Fatalf("report %q: exit code %v, want %d", body, got.ExitCode, *r.ExitCode)
		}
	})
}

// status is a command as GET /commands/{id} answers it, and its raw body.
type status struct {
	proto.CommandStatus
	raw []byte
}

func commandStatus(t *testing.T, url string, id int64) status {
	t.Helper()
	ans := req(t, http.MethodGet, fmt.Sprintf("%s/api/v1/commands/%d", url, id), operatorToken, nil)
	var s status
	if ans.code != http.StatusOK {
		t.Fatalf("command %d: %d %s", id, ans.code, ans.body)
	}
	if err := json.Unmarshal([]byte(ans.body), &s.CommandStatus); err != nil {
		t.Fatalf("command %d: %v: %s", id, err, ans.body)
	}
	s.raw = []byte(ans.body)
	return s
}

// runningCommand queues an EXECUTE on n1 and takes it as its RC would;
// the command taken before is reported lost (the poll names none running).
func runningCommand(t *testing.T, url, secret string) int64 {
	t.Helper()
	ans := req(t, http.MethodPost, url+"/api/v1/nodes/n1.sb8/commands", operatorToken, proto.CommandRequest{Type: proto.Execute, Command: "uname -a"})
	if ans.code != http.StatusAccepted {
		t.Fatalf("queue: %d %s", ans.code, ans.body)
	}
	ans = req(t, http.MethodGet, url+"/api/v1/rc/poll", secret, nil)
	var env proto.Envelope
	if ans.code != http.StatusOK || json.Unmarshal([]byte(ans.body), &env) != nil {
		t.Fatalf("poll: %d %s", ans.code, ans.body)
	}
	c, err := proto.Open(env, secret)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}
