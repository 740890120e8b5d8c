package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissing runs a test that lacks a capability in a child test process,
// with and without CI=true, and checks that it skips or fails as told.
func TestMissing(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		Missing(t, "needs a unicorn")
		t.Fatal("Missing returned")
	}
	for _, tc := range []struct {
		ci       string
		wantErr  bool
		wantText string
	}{
		{ci: "", wantErr: false, wantText: "--- SKIP: TestMissing"},
		{ci: "false", wantErr: false, wantText: "--- SKIP: TestMissing"},
		{ci: "true", wantErr: true, wantText: "--- FAIL: TestMissing"},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissing$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+tc.ci)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.wantErr || !strings.Contains(string(out), tc.wantText) || !strings.Contains(string(out), "needs a unicorn") {
				t.Errorf("child: %v, want error %v and %q with the reason:\n%s", err, tc.wantErr, tc.wantText, out)
			}
		})
	}
}

func TestPrograms(t *testing.T) {
	t.Setenv("CI", "")
	t.Run("present", func(t *testing.T) {
		Programs(t, "sh is everywhere", "sh")
	})
	skipped := false
	t.Run("absent", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Programs(t, "nowhere", "sh", "nbt-no-such-program")
	})
	if !skipped {
		t.Error("Programs did not skip for a program that is not on PATH")
	}
}
