// Package testenv is what a test does when this machine lacks something it
// needs (root, a program, network namespaces, QEMU, a kernel): it skips
// with a one-line reason, except under CI=true, where the capability is
// part of the build's contract and its absence fails the test: a CI run
// that silently skipped the namespace or QEMU tests would pass while
// testing nothing of them.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run under CI=true.
func CI() bool { return os.Getenv("CI") == "true" }

// Missing ends t for want of a capability: a skip saying why, or under
// CI=true a failure.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("CI=true and this machine lacks a capability the test needs: %s", reason)
	}
	t.Skip(reason)
}

// Root ends t (see Missing) unless it runs as root; why says what for.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (%s)", why)
	}
}

// Programs ends t (see Missing) unless every program is on PATH; hint
// says where they come from, e.g. "Debian: iproute2; make test installs it".
func Programs(t testing.TB, hint string, programs ...string) {
	t.Helper()
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		Missing(t, "needs %s (%s)", strings.Join(missing, ", "), hint)
	}
}
