package imaging

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// restarting is an appliance that does not answer its next down calls of
// each kind it wraps (connection refused, as while netbootd restarts), or
// answers them with cut (the connection closed after the request went).
type restarting struct {
	*fakeAM
	down map[string]int // call -> how many more fail
	cut  bool
}

func (r *restarting) fail(call string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down[call] == 0 {
		return nil
	}
	r.down[call]--
	if r.cut {
		return fmt.Errorf("amclient: %s: %w", call, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("amclient: %s: %w", call, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
}

func (r *restarting) RCStatus(ctx context.Context, hrn string) (proto.RCStatus, error) {
	if err := r.fail("RCStatus"); err != nil {
		return proto.RCStatus{}, err
	}
	return r.fakeAM.RCStatus(ctx, hrn)
}

func (r *restarting) ClearBoot(ctx context.Context, hrn string) error {
	if err := r.fail("ClearBoot"); err != nil {
		return err
	}
	return r.fakeAM.ClearBoot(ctx, hrn)
}

func (r *restarting) SendCommand(ctx context.Context, hrn string, req proto.CommandRequest) (proto.CommandStatus, error) {
	if err := r.fail("SendCommand"); err != nil {
		return proto.CommandStatus{}, err
	}
	return r.fakeAM.SendCommand(ctx, hrn, req)
}

// TestApplianceRestart: calls refused while the appliance restarts are
// sent again and the load goes through, leaving no link; a command whose
// request was cut is not sent twice (the node fails, its link cleared).
func TestApplianceRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cut     bool
		wantErr bool
	}{
		{"refused", false, false},
		{"cut", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode)
			am := &restarting{fakeAM: f, cut: tc.cut, down: map[string]int{"RCStatus": 3, "ClearBoot": 3, "SendCommand": 1}}
			res, err := Run(context.Background(), am, Job{Op: Load, Nodes: []string{aNode}, Image: "baseline", Poll: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if got := res[0].Err != nil; got != tc.wantErr {
				t.Errorf("node error %v, want one: %v", res[0].Err, tc.wantErr)
			}
			if len(f.links) != 0 {
				t.Errorf("links left set: %v", f.links)
			}
			sent := 0
			for _, c := range f.cmds {
				if c.Type == proto.Enroll {
					sent++
				}
			}
			if sent > 1 {
				t.Errorf("ENROLL sent %d times", sent)
			}
		})
	}
}
