package rc_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/rc/proto"
)

// TestRCRunsACommandOnce: a command delivered twice (the answer to a poll
// lost, and the appliance hands it out again) runs once. The RC takes its
// polls' answers in order, so by the time a later command has ended the
// second delivery has been dealt with.
func TestRCRunsACommandOnce(t *testing.T) {
	f, srv := newFakeAM(t)
	dir, logs := runRC(t, srv.URL, nil)
	count := filepath.Join(dir, "count")
	sign := func(c proto.Command) proto.Envelope {
		env, err := proto.Sign(c, f.secrets[0])
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	once := sign(proto.Command{ID: 1, Enrollment: fakeEnrollment, HRN: "n1", Type: proto.Execute, Command: "echo ran >> " + count})
	f.send(once)
	f.send(once)
	f.send(sign(proto.Command{ID: 2, Enrollment: fakeEnrollment, HRN: "n1", Type: proto.Execute, Command: "true"}))
	if rep, _ := f.final(1); rep.State != proto.StateDone {
		t.Fatalf("command 1: %+v, want done", rep)
	}
	if rep, _ := f.final(2); rep.State != proto.StateDone {
		t.Fatalf("command 2: %+v, want done", rep)
	}
	if !strings.Contains(logs.String(), "command received twice; ignored") {
		t.Errorf("the second delivery of command 1 was not recognised:\n%s", logs)
	}
	if b, err := os.ReadFile(count); err != nil || string(b) != "ran\n" {
		t.Errorf("command 1's output file: %q, %v; want it run once", b, err)
	}
}
