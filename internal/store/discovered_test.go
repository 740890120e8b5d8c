package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDiscovered(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.Import(ctx, file("sb8", node("a.sb8", "10.0.0.11", "00:00:00:00:00:aa"))); err != nil {
		t.Fatal(err)
	}
	err := s.RecordDiscovered(ctx, []Sighting{
		{MAC: "52:54:00:00:00:01", First: t0, Last: t0.Add(time.Second), Count: 2, VendorClass: "PXEClient:Arch:00000:UNDI:002001"},
		{MAC: "00:00:00:00:00:aa", First: t0, Last: t0, Count: 1}, // in the inventory: never listed
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.RecordDiscovered(ctx, []Sighting{
		{MAC: "52:54:00:00:00:01", First: t0.Add(time.Minute), Last: t0.Add(time.Minute), Count: 3, IP: "10.0.0.10", Relay: "10.19.0.1"},
		{MAC: "52:54:00:00:00:02", First: t0.Add(time.Second), Last: t0.Add(time.Second), Count: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Discovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Discovered{
		{MAC: "52:54:00:00:00:01", FirstSeen: t0, LastSeen: t0.Add(time.Minute), Count: 5, LastIP: "10.0.0.10",
			VendorClass: "PXEClient:Arch:00000:UNDI:002001", Relay: "10.19.0.1"},
		{MAC: "52:54:00:00:00:02", FirstSeen: t0.Add(time.Second), LastSeen: t0.Add(time.Second), Count: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discovered (-want +got):\n%s", diff)
	}
}

func TestDiscoveredIsBounded(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var batch []Sighting
	for i := range DiscoveredMax + 5 {
		at := t0.Add(time.Duration(i) * time.Second)
		batch = append(batch, Sighting{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), First: at, Last: at, Count: 1})
	}
	if err := s.RecordDiscovered(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.Discovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != DiscoveredMax {
		t.Fatalf("%d rows, want %d", len(got), DiscoveredMax)
	}
	if got[len(got)-1].MAC != "02:00:00:00:00:05" {
		t.Errorf("oldest kept = %s, want the 6th seen", got[len(got)-1].MAC)
	}
}
