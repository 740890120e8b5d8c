package webui_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// TestNetbootdStream: a real netbootd streams what its services commit (a
// boot file fetched over HTTP from node 1's address), after the snapshot
// of what they had committed before; and stops cleanly on SIGTERM with a
// stream open, which then ends.
func TestNetbootdStream(t *testing.T) {
	a := newAppliance(t)
	fetchBoot(t, a, "127.0.0.1", "pxelinux.0")
	var evs []apiv1.Event
	// The fetch is committed apart from its answer: wait for it.
	for deadline := time.Now().Add(30 * time.Second); len(evs) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the boot file's event never came")
		}
		r := a.Call(t, "GET", "/api/v1/nodes/"+node1+"/events", "", nil)
		if err := json.Unmarshal([]byte(r.Body), &evs); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := openStream(t, a.URL+"/api/v1/events/stream?recent=5", a.Token)
	if err != nil {
		t.Fatal(err)
	}
	first := next(t, stream)
	var snap []apiv1.Event
	if err := json.Unmarshal([]byte(first.data), &snap); first.name != "snapshot" || err != nil || len(snap) != 1 || snap[0] != evs[0] {
		t.Fatalf("snapshot %+v (%v), want %+v", first, err, evs)
	}
	fetchBoot(t, a, "127.0.0.1", "linux-orbit-2.0.0")
	live := next(t, stream)
	var e apiv1.Event
	if err := json.Unmarshal([]byte(live.data), &e); live.name != "event" || err != nil || e.HRN != node1 || e.Source != "http" || e.What != "linux-orbit-2.0.0" {
		t.Errorf("live: %+v (%v)", live, err)
	}
	if err := a.Stop(); err != nil {
		t.Errorf("netbootd with a stream open: %v\n%s", err, a.Log)
	}
	// Read to its end: the stream must end.
	for range stream {
	}
}
