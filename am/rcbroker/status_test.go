package rcbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/rc/proto"
)

// TestRCStateAfterPowerCommands: an RC that acknowledges REBOOT or
// POWEROFF is shown rebooting or powered-off at once, though it was heard
// from a moment ago, until it enrolls again; one that is heard from a
// poll's wait after acknowledging did not go down.
func TestRCStateAfterPowerCommands(t *testing.T) {
	const pollWait = 2500 * time.Millisecond
	wait := 2 * pollWait // the broker's online window: PollWait + min(PollWait, 5s)
	a := start(t, rcbroker.Config{PollWait: pollWait})
	c := amclient.New(a.URL)
	ctx := context.Background()
	const mac, hrn = "00:03:1d:0c:01:01", "n1.sb8"

	// command queues cmd for the node's RC, has the RC take it and report
	// state; it returns the command as the appliance holds it.
	command := func(t *testing.T, e proto.EnrollResponse, typ, state string) proto.CommandStatus {
		t.Helper()
		st, err := c.SendCommand(ctx, hrn, proto.CommandRequest{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		ans := req(t, http.MethodGet, a.URL+"/api/v1/rc/poll?wait=0s", e.Secret, nil)
		var env proto.Envelope
		if ans.code != http.StatusOK || json.Unmarshal([]byte(ans.body), &env) != nil {
			t.Fatalf("poll: %d %s, want the %s", ans.code, ans.body, typ)
		}
		report := proto.Report{Seq: 1, State: state, Reply: proto.ReplyOK}
		if ans := req(t, http.MethodPost, fmt.Sprintf("%s/api/v1/rc/commands/%d/report", a.URL, st.ID), e.Secret, report); ans.code != http.StatusNoContent {
			t.Fatalf("report: %d %s", ans.code, ans.body)
		}
		if st, err = c.Command(ctx, st.ID); err != nil || st.State != state {
			t.Fatalf("command %+v, %v: want %s", st, err, state)
		}
		return st
	}
	tests := []struct {
		name string
		typ  string
		// state is what the RC reports; then, after, what happens next.
		state string
		after func(t *testing.T, e proto.EnrollResponse, cmd proto.CommandStatus)
		want  string
	}{
		{"REBOOT acknowledged", proto.Reboot, proto.StateDone, nil, proto.RCRebooting},
		{"POWEROFF acknowledged", proto.Poweroff, proto.StateDone, nil, proto.RCPoweredOff},
		{"REBOOT failed: it stays up", proto.Reboot, proto.StateFailed, nil, proto.RCOnline},
		{"rebooted and enrolled again", proto.Reboot, proto.StateDone, func(t *testing.T, _ proto.EnrollResponse, _ proto.CommandStatus) {
			enroll(t, a, mac)
		}, proto.RCOnline},
		{"heard from a poll's wait after the REBOOT: it stayed up", proto.Reboot, proto.StateDone, func(t *testing.T, e proto.EnrollResponse, cmd proto.CommandStatus) {
			// The appliance's clock, not a sleep, says when the wait has passed.
			for deadline := time.Now().Add(time.Minute); !time.Now().After(cmd.FinishedAt.Add(wait)); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a minute went by")
				}
			}
			req(t, http.MethodGet, a.URL+"/api/v1/rc/poll?wait=0s", e.Secret, nil)
		}, proto.RCOnline},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := enroll(t, a, mac)
			if s, err := c.RCStatus(ctx, hrn); err != nil || s.State != proto.RCOnline || !s.Online {
				t.Fatalf("enrolled RC: %+v, %v; want online", s, err)
			}
			cmd := command(t, e, tc.typ, tc.state)
			if tc.after != nil {
				tc.after(t, e, cmd)
			}
			s, err := c.RCStatus(ctx, hrn)
			if err != nil || s.State != tc.want || s.Online != (tc.want == proto.RCOnline) {
				t.Errorf("rc status: %+v, %v; want %s", s, err, tc.want)
			}
			all, err := c.RCs(ctx)
			if err != nil || len(all) != 1 || all[0].State != s.State {
				t.Errorf("GET /rc: %+v, %v; want %s", all, err, s.State)
			}
		})
	}
	if s, err := c.RCStatus(ctx, "n2.sb8"); err != nil || s.State != proto.RCNotEnrolled || s.Online {
		t.Errorf("a node that never enrolled: %+v, %v", s, err)
	}
}

// TestRCStates: the metrics' count of enrolled RCs by state has every
// state, at 0 before any enrollment, and an RC that enrolled online.
func TestRCStates(t *testing.T) {
	a := start(t, rcbroker.Config{})
	ctx := context.Background()
	zero := map[string]float64{proto.RCOnline: 0, proto.RCOffline: 0, proto.RCRebooting: 0, proto.RCPoweredOff: 0}
	got, err := a.Broker().RCStates(ctx)
	if err != nil || !maps.Equal(got, zero) {
		t.Fatalf("RCStates before enrollment = %v, %v; want %v", got, err, zero)
	}
	enroll(t, a, "00:03:1d:0c:01:01")
	want := maps.Clone(zero)
	want[proto.RCOnline] = 1
	if got, err := a.Broker().RCStates(ctx); err != nil || !maps.Equal(got, want) {
		t.Errorf("RCStates after an enrollment = %v, %v; want %v", got, err, want)
	}
}
