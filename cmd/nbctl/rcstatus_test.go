package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/rc"
	"github.com/orbit-lab/netboot/rc/proto"
)

// TestRCStatusAfterReboot: against netbootd, `nbctl rc status` says a
// node whose RC acknowledged REBOOT is rebooting at once (its poll is
// still open, so it would pass for online for a poll's wait), and online
// again once the node's next RC enrolls.
func TestRCStatusAfterReboot(t *testing.T) {
	const hrn, mac = "node1-1.sb8", "00:03:1d:0c:01:01"
	a := apptest.New(t, apptest.Options{Inventory: "testbeds:\n  - domain: sb8\n    nodes:\n" +
		"      - { hrn: " + hrn + ", hostname: node1-1, control_ip: 127.0.0.11, control_mac: \"" + mac + "\" }\n"})
	a.Start()
	c := amclient.New(a.URL).WithToken(a.Token)
	ctx := t.Context()
	dir := t.TempDir()
	// boot starts the node's RC; each boot has a boot ID of its own.
	boot := func(id string, rebooted chan<- struct{}) *testenv.Served {
		bootID := filepath.Join(dir, "boot_id-"+id)
		testenv.WriteFile(t, bootID, id+"\n")
		cfg := rc.Config{AM: a.URL, MACs: []string{mac}, Hostname: "node1-1", ImageName: "orbit-2.0.0", HTTP: apptest.ClientFrom("127.0.0.11"),
			ImageFile: filepath.Join(dir, "none"), BootIDFile: bootID, PollWait: 20 * time.Second,
			Reboot: func(context.Context) error { close(rebooted); return nil }}
		return testenv.Serve(t, "rc.Run", 30*time.Second, func(ctx context.Context) error { return rc.Run(ctx, cfg) })
	}
	// state waits until rc status of the node (nbctl's row) says want.
	state := func(want string) {
		t.Helper()
		var out string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out = nbctlOK(ctx, t, a, "rc", "status")
			if apptest.HasLine(out, hrn, " "+want+" ") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("rc status never said %s:\n%s", want, out)
			}
		}
	}

	rebooted := make(chan struct{})
	first := boot("b1", rebooted)
	state(proto.RCOnline)
	st, err := c.SendCommand(ctx, hrn, proto.CommandRequest{Type: proto.Reboot})
	if err != nil {
		t.Fatal(err)
	}
	if st, err = c.WaitCommand(ctx, st.ID, 20*time.Millisecond, nil); err != nil || st.State != proto.StateDone {
		t.Fatalf("REBOOT: %+v, %v", st, err)
	}
	<-rebooted
	// No wait: the acknowledgement itself makes it so.
	if out := nbctlOK(ctx, t, a, "rc", "status"); !apptest.HasLine(out, hrn, " rebooting ") {
		t.Errorf("rc status right after REBOOT:\n%s", out)
	}
	if out := nbctlOK(ctx, t, a, "rc", "status", hrn); !strings.HasPrefix(out, hrn+": rebooting, enrollment") {
		t.Errorf("rc status %s right after REBOOT:\n%s", hrn, out)
	}
	first.Stop() // the node went down
	boot("b2", make(chan struct{}))
	state(proto.RCOnline)
}
