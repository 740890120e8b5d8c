package proto

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var key = strings.Repeat("ab", 32)

func TestSignOpen(t *testing.T) {
	c := Command{ID: 42, Enrollment: 7, HRN: "node1-1.sb8", Type: Execute, Command: "echo <hi> & 'bye'", IssuedAt: time.Unix(5, 0).UTC()}
	env, err := Sign(c, key)
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON and back, as on the wire.
	data, _ := json.Marshal(env)
	var wire Envelope
	if err := json.Unmarshal(data, &wire); err != nil {
		t.Fatal(err)
	}
	got, err := Open(wire, key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("(-sent +opened):\n%s", diff)
	}
	bad := []struct {
		name string
		env  Envelope
		key  string
	}{
		{"other key", wire, strings.Repeat("cd", 32)},
		{"no MAC", Envelope{Payload: wire.Payload}, key},
		{"MAC not hex", Envelope{Payload: wire.Payload, MAC: "zz"}, key},
		{"payload changed", Envelope{Payload: []byte(strings.Replace(string(wire.Payload), "42", "43", 1)), MAC: wire.MAC}, key},
	}
	for _, b := range bad {
		c, err := Open(b.env, b.key)
		if !errors.Is(err, ErrBadMAC) {
			t.Errorf("%s: %v, want ErrBadMAC", b.name, err)
		}
		if c.Type != "" || c.Command != "" {
			t.Errorf("%s: a refused command carries %+v", b.name, c)
		}
	}
	if c, _ := Open(bad[0].env, bad[0].key); c.ID != 42 {
		t.Errorf("a refused command's ID = %d, want 42 (to report the refusal)", c.ID)
	}
	if _, err := Sign(c, "not hex"); err == nil {
		t.Errorf("Sign with a non-hex secret succeeded")
	}
}

func TestFormatOf(t *testing.T) {
	for head, want := range map[string]string{
		"\x28\xb5\x2f\xfd\x00": FormatZstd, "\x1f\x8b\x08": FormatGzip, "\x1f": "", "": "", "BZh9": "", "\x28\xb5\x2f": "",
	} {
		if got := FormatOf([]byte(head)); got != want {
			t.Errorf("FormatOf(% x) = %q, want %q", head, got, want)
		}
	}
}
