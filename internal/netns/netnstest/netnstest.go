// Package netnstest makes the network namespaces a test builds its
// network in (internal/netns runs code in them), apart from netns so that
// the programs using netns do not link package testing.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/netns"
)

// Temp makes a network namespace for t, its loopback up, and deletes it
// when t ends; its name is prefix and random hex. The caller checks for
// root first (testenv.Root).
func Temp(t testing.TB, prefix string) string {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand)
	name := prefix + hex.EncodeToString(rnd[:])
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Error(err)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// IP runs ip(8) with args, failing t on an error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
