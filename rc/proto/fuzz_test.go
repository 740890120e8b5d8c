package proto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// wire sends e as the broker answers a poll (JSON) and decodes it as the RC
// does; the envelope must arrive byte for byte.
func wire(t *testing.T, e Envelope) Envelope {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("marshal envelope: %v", err)
	}
	var got Envelope
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&got); err != nil {
		t.Fatalf("decode envelope %s: %v", data, err)
	}
	if !bytes.Equal(got.Payload, e.Payload) || got.MAC != e.MAC {
		t.Fatalf("the envelope changed on the wire: %q %q -> %q %q", e.Payload, e.MAC, got.Payload, got.MAC)
	}
	return got
}

// seedCommands are commands as the broker signs them, one per type.
func seedCommands() []Command {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.UTC)
	return []Command{
		{ID: 1, Enrollment: 7, HRN: "node1-1.sb8.orbit-lab.org", Type: Execute, Command: "uname -a; echo 'done' >&2", Timeout: "30s", IssuedAt: at},
		{ID: 2, Enrollment: 7, HRN: "node1-1.sb8.orbit-lab.org", Type: Execute, Args: []string{"/bin/dd", "if=/dev/zero", "of=/dev/null", "count=1"}, IssuedAt: at},
		{ID: 3, Enrollment: 7, HRN: "node1-1.sb8.orbit-lab.org", Type: Enroll, Image: "orbit-2.0.0", IssuedAt: at},
		{ID: 4, Enrollment: 7, HRN: "node1-1.sb8.orbit-lab.org", Type: LoadImage, Image: "baseline.ndz", Disk: "/dev/sda",
			SHA256: strings.Repeat("0123456789abcdef", 4), Size: 1 << 30, IssuedAt: at},
		{ID: 5, Enrollment: 7, HRN: "node1-1.sb8.orbit-lab.org", Type: SaveImage, Image: "saved", Disk: "/dev/vda", IssuedAt: at},
		{ID: 6, Enrollment: 7, HRN: "node1-1.sb8.orbit-lab.org", Type: Reboot, IssuedAt: at},
		{ID: 1<<63 - 1, Enrollment: 1<<63 - 1, HRN: "n", Type: Poweroff},
	}
}

// FuzzOpen feeds the RC's side of the wire: a command payload and MAC as a
// poll answer carries them. With signed set the MAC is made with the key, so
// that the fuzzer explores the decoding of authentic payloads; without it
// the MAC is the fuzzer's. Properties: a signed envelope crosses JSON
// unchanged;
// nothing opens without a MAC made with the key, and a refusal carries the
// command's ID and nothing else; an authentic payload opens exactly when it
// decodes as a Command, to what it decodes to, and opening is the inverse of
// signing (sign what was opened, open it: the same command).
func FuzzOpen(f *testing.F) {
	for _, c := range seedCommands() {
		env, err := Sign(c, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env.Payload, env.MAC, false)
		f.Add(env.Payload, env.MAC, true)
		f.Add(env.Payload, strings.ToUpper(env.MAC), false)
	}
	for _, p := range []string{
		`{"id":1}`,
		`{"id":1,"id":2,"type":"REBOOT","TYPE":"EXECUTE","Command":"reboot"}`,
		`{"id":"1"}`,
		`{"id":1e3,"enrollment":-1}`,
		`{"id":99999999999999999999}`,
		`{"id":1,"args":null,"issued_at":"2026-13-01T00:00:00Z"}`,
		`{"id":1,"issued_at":"2026-01-01T00:00:00+23:59"}`,
		`{"id":1,"command":"\ud800\u0000\"","hrn":"\xff"}`,
		`{"id":1} {"id":2}`,
		`[1]`,
		`null`,
		`not json`,
		``,
	} {
		f.Add([]byte(p), strings.Repeat("0", 64), false)
		f.Add([]byte(p), "", true)
	}
	secret, _ := hex.DecodeString(key)
	f.Fuzz(func(t *testing.T, payload []byte, sum string, signed bool) {
		truth := hex.EncodeToString(mac(secret, payload))
		if signed {
			sum = truth
		}
		// The MAC is the RC's view of it; only one the broker made (hex)
		// must cross JSON unchanged.
		env := Envelope{Payload: payload, MAC: sum}
		if signed {
			env = wire(t, env)
		}
		c, err := Open(env, key)
		if !strings.EqualFold(sum, truth) {
			var id struct {
				ID int64 `json:"id"`
			}
			_ = json.Unmarshal(payload, &id)
			if !errors.Is(err, ErrBadMAC) {
				t.Fatalf("opened without the key (%v): %q %q", err, payload, sum)
			}
			if diff := cmp.Diff(Command{ID: id.ID}, c); diff != "" {
				t.Fatalf("a refused command carries more than its ID (-want +got):\n%s", diff)
			}
			return
		}
		var want Command
		if derr := json.Unmarshal(payload, &want); derr != nil {
			if err == nil || errors.Is(err, ErrBadMAC) || !cmp.Equal(c, Command{}) {
				t.Fatalf("Open(%q) = %+v, %v; want a decoding error and no command (%v)", payload, c, err, derr)
			}
			return
		}
		if err != nil {
			t.Fatalf("Open(%q): %v, yet it decodes", payload, err)
		}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Fatalf("Open(%q) is not the payload (-decoded +opened):\n%s", payload, diff)
		}
		roundTrip(t, c) // the opened command signs again
	})
}

// roundTrip signs c, passes the envelope through JSON as the wire does and
// opens it again: c must come out unchanged. It returns the envelope.
func roundTrip(t *testing.T, c Command) Envelope {
	t.Helper()
	env, err := Sign(c, key)
	if err != nil {
		t.Fatalf("Sign(%+v): %v", c, err)
	}
	got, err := Open(wire(t, env), key)
	if err != nil {
		t.Fatalf("Open(Sign(%+v)): %v", c, err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatalf("open(sign(c)) != c (-c +opened):\n%s", diff)
	}
	return env
}

// FuzzSignOpen: a command the broker signs reaches the RC unchanged through
// the wire, and any change of one payload byte, or another key, makes the
// RC refuse it. Commands come from the operator's JSON, so their strings
// are valid UTF-8 (JSON could not carry anything else exactly).
func FuzzSignOpen(f *testing.F) {
	for _, c := range seedCommands() {
		f.Add(c.ID, c.Enrollment, c.HRN, c.Type, c.Command, strings.Join(c.Args, "\x00"), c.Timeout, c.Image, c.Disk, c.SHA256, c.Size, c.IssuedAt.UnixNano(), uint(0), byte(1))
	}
	f.Add(int64(-1), int64(0), "", "", "<script>&'\"\\\u2028", "a\x00\x00b", "", "\t\n", "", "", int64(-5), int64(-1<<63), uint(1000), byte(0x80))
	f.Fuzz(func(t *testing.T, id, enrollment int64, hrn, typ, command, args, timeout, image, disk, sha string, size, issued int64, at uint, flip byte) {
		c := Command{ID: id, Enrollment: enrollment, HRN: hrn, Type: typ, Command: command, Timeout: timeout,
			Image: image, Disk: disk, SHA256: sha, Size: size, IssuedAt: time.Unix(0, issued).UTC()}
		if args != "" {
			c.Args = strings.Split(args, "\x00")
		}
		for _, s := range []string{hrn, typ, command, args, timeout, image, disk, sha} {
			if !utf8.ValidString(s) {
				t.Skip("not valid UTF-8: no operator's JSON request yields it")
			}
		}
		env := roundTrip(t, c)
		if _, err := Open(env, strings.Repeat("cd", 32)); !errors.Is(err, ErrBadMAC) {
			t.Fatalf("opened with another key: %v", err)
		}
		if flip != 0 {
			bad := bytes.Clone(env.Payload)
			bad[at%uint(len(bad))] ^= flip
			if _, err := Open(Envelope{Payload: bad, MAC: env.MAC}, key); !errors.Is(err, ErrBadMAC) {
				t.Fatalf("a payload with byte %d changed opened: %v\n%q", at%uint(len(bad)), err, bad)
			}
		}
	})
}
