package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// netns makes a network namespace for this test and deletes it afterwards.
func netns(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	return name
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDHCPEndToEnd runs netbootd with DHCP on in a server namespace, and
// busybox udhcpc in a client namespace over a veth: the node's reserved
// address and boot file come back, the exchange is on its timeline, and an
// unknown MAC gets nothing but shows up in nbctl nodes discovered.
func TestDHCPEndToEnd(t *testing.T) {
	testenv.Root(t, "network namespaces")
	testenv.Programs(t, "make test installs them", "ip", "busybox")
	srv, cli := vethLab(t, "nbt", "00:03:1d:0c:01:02")

	a := apptest.New(t, apptest.Options{Netns: srv, Images: []string{"orbit-2.0.0"}, Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02" }
`, Extra: apptest.DHCP{Interface: "nbs0", Server: netip.MustParseAddr("10.18.0.1"), Subnet: netip.MustParsePrefix("10.18.0.0/16")}.YAML()})
	a.Start()

	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip router=$router siaddr=$siaddr boot_file=$boot_file hostname=$hostname\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A lease comes within a minute (20 tries, 3 s apart) or not at all;
	// a client that must get none tries for 3 s, and the server is then
	// asked whether it saw it.
	udhcpc := func(tries, every string) (string, error) {
		out, err := exec.Command("ip", "netns", "exec", cli, "busybox", "udhcpc", "-i", "nbc0", "-f", "-q", "-n", "-t", tries, "-T", every, "-s", script).CombinedOutput()
		return string(out), err
	}
	out, err := udhcpc("20", "3")
	want := "lease ip=10.18.1.2 router=10.18.0.1 siaddr=10.18.0.1 boot_file=pxelinux.0 hostname=node1-2"
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("known node: udhcpc %v:\n%s\nwant %q\nnetbootd:\n%s", err, out, want, a.Log)
	}
	events, _ := a.Nbctl("nodes", "events", "node1-2.sb8.orbit-lab.org")
	if !strings.Contains(events, "DHCPOFFER") || !strings.Contains(events, "DHCPACK") {
		t.Errorf("timeline lacks the exchange:\n%s", events)
	}

	sh(t, "ip", "-n", cli, "link", "set", "nbc0", "address", "02:00:00:00:00:99")
	if out, err := udhcpc("3", "1"); err == nil || strings.Contains(out, "lease ip=") {
		t.Errorf("unknown MAC got an answer: %v\n%s", err, out)
	}
	// Sightings are written behind the server's back: wait for it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		disc, err := a.Nbctl("nodes", "discovered")
		if err == nil && strings.Contains(disc, "02:00:00:00:00:99") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbctl nodes discovered: %v\n%s", err, disc)
		}
	}
}

// vethLab makes a server and a client namespace (names prefix-<random>-s,
// -c) joined by a veth: the server's end nbs0 is 10.18.0.1/16, the
// client's end nbc0 has MAC mac and no address. Both go when t ends.
func vethLab(t *testing.T, prefix, mac string) (srv, cli string) {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := prefix + "-" + hex.EncodeToString(rnd[:])
	srv, cli = netns(t, id+"-s"), netns(t, id+"-c")
	sh(t, "ip", "link", "add", "nbs0", "netns", srv, "type", "veth", "peer", "name", "nbc0", "netns", cli)
	sh(t, "ip", "-n", srv, "addr", "add", "10.18.0.1/16", "dev", "nbs0")
	sh(t, "ip", "-n", srv, "link", "set", "nbs0", "up")
	sh(t, "ip", "-n", srv, "link", "set", "lo", "up")
	sh(t, "ip", "-n", cli, "link", "set", "nbc0", "address", mac)
	sh(t, "ip", "-n", cli, "link", "set", "nbc0", "up")
	return srv, cli
}
