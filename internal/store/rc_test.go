package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/rc/proto"
)

func enrollTest(t *testing.T, s *Store, hrn, secret, boot string, at time.Time) RCEnrollment {
	t.Helper()
	e, err := s.PutRCEnrollment(context.Background(), RCEnrollment{
		HRN: hrn, Secret: secret, BootID: boot, Image: "orbit-2.0.0", Hostname: "node1-1",
		Info:       proto.EnrollRequest{MACs: []string{"00:03:1d:0c:01:01"}, Disks: []proto.Disk{{Name: "sda", Path: "/dev/sda", Size: 1 << 30}}},
		EnrolledAt: at, LastSeen: at,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// twoRCs is a fresh store with two nodes' RCs enrolled at at: e, whose
// commands a test follows, and other, whose must not mix with them.
func twoRCs(t *testing.T, at time.Time) (s *Store, e, other RCEnrollment) {
	t.Helper()
	s = openTest(t)
	return s, enrollTest(t, s, "node1-1.sb8", "aa11", "boot-1", at), enrollTest(t, s, "node1-2.sb8", "bb22", "boot-1", at)
}

func queue(t *testing.T, s *Store, e RCEnrollment, typ string) RCCommand {
	t.Helper()
	c, err := s.AddRCCommand(context.Background(), RCCommand{
		CommandStatus: proto.CommandStatus{HRN: e.HRN, Type: typ, Command: "echo hi", CreatedAt: time.Unix(100, 0).UTC()},
		Enrollment:    e.ID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRCEnrollmentReplacedAndFoundBySecret(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	at := time.Unix(1000, 0).UTC()
	e1 := enrollTest(t, s, "node1-1.sb8", "aa11", "boot-1", at)
	got, err := s.RCEnrollmentBySecret(ctx, "aa11")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e1, got); diff != "" {
		t.Errorf("by secret (-want +got):\n%s", diff)
	}
	if _, err := s.RCEnrollmentBySecret(ctx, "aa12"); !errors.Is(err, ErrNotFound) {
		t.Errorf("wrong secret: %v, want ErrNotFound", err)
	}
	e2 := enrollTest(t, s, "node1-1.sb8", "bb22", "boot-2", at.Add(time.Minute))
	if e2.ID == e1.ID {
		t.Errorf("a new enrollment reused id %d", e1.ID)
	}
	if _, err := s.RCEnrollmentBySecret(ctx, "aa11"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the replaced enrollment's secret still works: %v", err)
	}
	cur, err := s.RCEnrollment(ctx, "node1-1.sb8")
	if err != nil || cur.ID != e2.ID || cur.Info.Disks[0].Size != 1<<30 {
		t.Errorf("current enrollment = %+v, %v; want id %d with its info", cur, err, e2.ID)
	}
	if err := s.TouchRCEnrollment(ctx, e2.ID, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	all, err := s.RCEnrollments(ctx)
	if err != nil || len(all) != 1 || !all[0].LastSeen.Equal(at.Add(time.Hour)) {
		t.Errorf("enrollments = %+v, %v", all, err)
	}
}

func TestRCReenrollSettlesCommands(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	at := time.Unix(1000, 0).UTC()
	e1 := enrollTest(t, s, "n1", "aa01", "boot-1", at)
	running := queue(t, s, e1, proto.Execute)
	if _, err := s.TakeRCCommand(ctx, e1.ID, at); err != nil {
		t.Fatal(err)
	}
	queued := queue(t, s, e1, proto.Execute)

	// The RC restarted (same boot): the running command is lost, the
	// queued one waits for the new enrollment.
	e2 := enrollTest(t, s, "n1", "aa02", "boot-1", at.Add(time.Second))
	if c, _ := s.RCCommand(ctx, running.ID); c.State != proto.StateFailed || !strings.Contains(c.Error, "lost") {
		t.Errorf("running command after an RC restart: %s %q, want failed (lost)", c.State, c.Error)
	}
	c, err := s.TakeRCCommand(ctx, e2.ID, at.Add(2*time.Second))
	if err != nil || c.ID != queued.ID {
		t.Fatalf("take for the new enrollment = %d, %v; want %d", c.ID, err, queued.ID)
	}

	// The node rebooted: what was queued for it fails.
	q2 := queue(t, s, e2, proto.Reboot)
	enrollTest(t, s, "n1", "aa03", "boot-2", at.Add(time.Minute))
	if c, _ := s.RCCommand(ctx, q2.ID); c.State != proto.StateFailed || !strings.Contains(c.Error, "rebooted") {
		t.Errorf("queued command after a reboot: %s %q, want failed", c.State, c.Error)
	}
}

func TestRCReports(t *testing.T) {
	ctx := context.Background()
	at := time.Unix(1000, 0).UTC()
	s, e, other := twoRCs(t, at)
	c := queue(t, s, e, proto.Execute)
	if _, err := s.TakeRCCommand(ctx, e.ID, at); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeRCCommand(ctx, e.ID, at); !errors.Is(err, ErrNotFound) {
		t.Errorf("second take: %v, want ErrNotFound", err)
	}
	const max = 8
	report := func(r proto.Report) error { return s.ReportRCCommand(ctx, c.ID, e.ID, r, max, at.Add(time.Second)) }
	steps := []struct {
		r    proto.Report
		want error
	}{
		{proto.Report{Seq: 1, State: proto.StateRunning, Stdout: []byte("ab")}, nil},
		{proto.Report{Seq: 1, State: proto.StateRunning, Stdout: []byte("ab")}, nil}, // a retry: ignored
		{proto.Report{Seq: 2, Stdout: []byte("cdefghij"), Stderr: []byte("x\x00\xff"), Progress: &proto.Progress{Done: 5, Total: 10, Written: 2, Skipped: 3, Fetched: 1}}, nil},
		{proto.Report{Seq: 3, State: "bogus"}, ErrInvalidReport},
		{proto.Report{Seq: 3, State: proto.StateDone, Reply: proto.ReplyError, ExitCode: ptr(3)}, nil},
		{proto.Report{Seq: 4, State: proto.StateRunning}, ErrConflict}, // over
		{proto.Report{Seq: 3, State: proto.StateDone}, nil},            // a retry of the last: fine
	}
	for i, st := range steps {
		if err := report(st.r); !errors.Is(err, st.want) {
			t.Errorf("step %d: %v, want %v", i, err, st.want)
		}
	}
	if err := s.ReportRCCommand(ctx, c.ID, other.ID, proto.Report{Seq: 9}, max, at); !errors.Is(err, ErrNotFound) {
		t.Errorf("a report from another enrollment: %v, want ErrNotFound", err)
	}
	got, err := s.RCCommand(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stdout != "abcdefgh" || got.Stderr != "x\x00\xff" || !got.Truncated || got.State != proto.StateDone ||
		got.ExitCode == nil || *got.ExitCode != 3 || got.FinishedAt == nil || got.ReportSeq != 3 ||
		got.Progress != (proto.Progress{Done: 5, Total: 10, Written: 2, Skipped: 3, Fetched: 1}) {
		t.Errorf("after the reports: %+v", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRCLostAndSilentCommands(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	at := time.Unix(1000, 0).UTC()
	e := enrollTest(t, s, "n1", "aa01", "b", at)
	var ids []int64
	for range 3 {
		queue(t, s, e, proto.Execute)
		c, err := s.TakeRCCommand(ctx, e.ID, at)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	n, err := s.FailLostRCCommands(ctx, e.ID, ids[1:], at)
	if err != nil || n != 1 {
		t.Fatalf("lost = %d, %v; want 1", n, err)
	}
	if c, _ := s.RCCommand(ctx, ids[0]); c.State != proto.StateFailed {
		t.Errorf("command %d not named by the RC is %s, want failed", ids[0], c.State)
	}
	if got, err := s.FailSilentRCCommands(ctx, at, at); err != nil || len(got) != 0 {
		t.Errorf("silent before last_seen = %v, %v; want none", got, err)
	}
	got, err := s.FailSilentRCCommands(ctx, at.Add(time.Minute), at.Add(time.Minute))
	if err != nil || !cmp.Equal(got, ids[1:]) {
		t.Errorf("silent = %v, %v; want %v", got, err, ids[1:])
	}
}

func TestRCCommandsBoundedAndKeptOverReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openDir(t, dir)
	e := enrollTest(t, s, "n1", "aa01", "b", time.Unix(1000, 0))
	for range RCCommandsPerNode + 20 {
		c := queue(t, s, e, proto.Enroll)
		if _, err := s.TakeRCCommand(ctx, e.ID, time.Unix(1001, 0)); err != nil {
			t.Fatal(err)
		}
		if err := s.ReportRCCommand(ctx, c.ID, e.ID, proto.Report{Seq: 1, State: proto.StateDone}, 10, time.Unix(1002, 0)); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen(t, s, dir)
	if _, err := s.RCEnrollmentBySecret(ctx, "aa01"); err != nil {
		t.Errorf("enrollment lost over a reopen: %v", err)
	}
	cmds, err := s.RCCommands(ctx, "n1", 1000)
	if err != nil || len(cmds) != RCCommandsPerNode {
		t.Errorf("commands kept = %d, %v; want %d", len(cmds), err, RCCommandsPerNode)
	}
}

// TestRCEnrollmentFirmware: how the node booted is kept with its
// enrollment, over a reopen, and an RC that did not say is unknown, not
// BIOS or Secure Boot off.
func TestRCEnrollmentFirmware(t *testing.T) {
	on, off := true, false
	tests := []struct {
		name     string
		firmware string
		sb       *bool
	}{
		{"unknown (an older RC)", "", nil},
		{"bios", proto.FirmwareBIOS, &off},
		{"uefi, secure boot unknown", proto.FirmwareUEFI, nil},
		{"uefi, secure boot off", proto.FirmwareUEFI, &off},
		{"uefi, secure boot on", proto.FirmwareUEFI, &on},
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := openDir(t, dir)
	at := time.Unix(1000, 0).UTC()
	for i, tt := range tests {
		e, err := s.PutRCEnrollment(ctx, RCEnrollment{
			HRN: "node1-" + string(rune('1'+i)) + ".sb8", Secret: "aa1" + string(rune('1'+i)), Image: "orbit-2.0.0",
			Firmware: tt.firmware, SecureBoot: tt.sb, EnrolledAt: at, LastSeen: at,
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got, err := s.RCEnrollment(ctx, e.HRN); err != nil || !cmp.Equal(e, got) {
			t.Errorf("%s: read back %+v, %v; want %+v", tt.name, got, err, e)
		}
	}
	s = reopen(t, s, dir)
	all, err := s.RCEnrollments(ctx)
	if err != nil || len(all) != len(tests) {
		t.Fatalf("enrollments = %+v, %v", all, err)
	}
	for i, tt := range tests {
		if got := all[i]; got.Firmware != tt.firmware || !cmp.Equal(got.SecureBoot, tt.sb) {
			t.Errorf("%s: after reopen firmware %q secure boot %v; want %q %v", tt.name, got.Firmware, fmtBool(got.SecureBoot), tt.firmware, fmtBool(tt.sb))
		}
	}
}

func fmtBool(b *bool) string {
	if b == nil {
		return "unknown"
	}
	return strconv.FormatBool(*b)
}

// TestRunningRCCommand: only a running command of the enrollment, of the
// type and naming the image, is found: what admits an RC to a disk image.
func TestRunningRCCommand(t *testing.T) {
	ctx := context.Background()
	at := time.Unix(1000, 0)
	s, e, other := twoRCs(t, at)
	add := func(en RCEnrollment, typ, image string) RCCommand {
		t.Helper()
		c, err := s.AddRCCommand(ctx, RCCommand{CommandStatus: proto.CommandStatus{HRN: en.HRN, Type: typ, Image: image, CreatedAt: at}, Enrollment: en.ID})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	load := add(e, proto.LoadImage, "base")
	add(other, proto.SaveImage, "saved")
	found := func(en RCEnrollment, typ, image string) bool {
		t.Helper()
		_, err := s.RunningRCCommand(ctx, en.ID, typ, image)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if found(e, proto.LoadImage, "base") {
		t.Errorf("a queued LOAD_IMAGE counts as running")
	}
	for _, en := range []RCEnrollment{e, other} { // each RC takes its command
		if _, err := s.TakeRCCommand(ctx, en.ID, at); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		en         RCEnrollment
		typ, image string
		want       bool
	}{
		{"its running load", e, proto.LoadImage, "base", true},
		{"another image", e, proto.LoadImage, "other", false},
		{"a save of it", e, proto.SaveImage, "base", false},
		{"another RC's", other, proto.LoadImage, "base", false},
		{"the other RC's save", other, proto.SaveImage, "saved", true},
	} {
		if got := found(tc.en, tc.typ, tc.image); got != tc.want {
			t.Errorf("%s: found %v, want %v", tc.name, got, tc.want)
		}
	}
	if err := s.ReportRCCommand(ctx, load.ID, e.ID, proto.Report{Seq: 1, State: proto.StateDone}, 1<<20, at); err != nil {
		t.Fatal(err)
	}
	if found(e, proto.LoadImage, "base") {
		t.Errorf("a finished LOAD_IMAGE still counts as running")
	}
}

// TestEnrollmentEvent: the enrollment and its timeline event are written
// together, observed once committed, and neither when the write fails.
func TestEnrollmentEvent(t *testing.T) {
	s := openTest(t)
	var seen []Event
	s.ObserveEvents(func(e Event) { seen = append(seen, e) })
	at := time.Unix(1000, 0).UTC()
	ev := Event{HRN: "node1-1.sb8", At: at, Source: "rc", What: "enrolled", Detail: "orbit-2.0.0"}
	e := RCEnrollment{HRN: "node1-1.sb8", Secret: "aa11", BootID: "b1", EnrolledAt: at, LastSeen: at}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.PutRCEnrollment(canceled, e, ev); err == nil {
		t.Fatal("enrollment with a canceled context: no error")
	}
	if _, err := s.RCEnrollment(context.Background(), e.HRN); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed enrollment: %v, want ErrNotFound", err)
	}
	if evs, _ := s.Events(context.Background(), e.HRN); len(evs) != 0 || len(seen) != 0 {
		t.Errorf("failed enrollment left events %v, observed %v", evs, seen)
	}

	if _, err := s.PutRCEnrollment(context.Background(), e, ev); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(context.Background(), e.HRN)
	if err != nil || len(evs) != 1 || evs[0].What != "enrolled" || evs[0].Detail != "orbit-2.0.0" {
		t.Errorf("timeline after enrolling: %+v, %v", evs, err)
	}
	if len(seen) != 1 || seen[0].What != "enrolled" {
		t.Errorf("observed %+v, want the enrollment once", seen)
	}
}
