package imagename

import (
	"errors"
	"strings"
	"testing"
)

// TestRules: one table for both kinds, so that where they differ shows.
func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pxe, disk bool
	}{
		{"orbit-2.0.0", true, true},
		{"lab_test.1", true, true},
		{"0a120102", true, true}, // pxelinux asks for upper-case hex only
		{"baseline:v2@lab+1", false, true},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), false, true},
		{strings.Repeat("a", 128), false, true},
		{strings.Repeat("a", 129), false, false},
		{"default", false, true},
		{"0A120102", false, true},
		{"C", false, true},
		{"01-52-54-00-99-00-32", false, true},
		{"a..b", true, false},
		{"img.zst.sha256", true, false},
		{"../etc", false, false},
		{"a/b", false, false},
		{".upload-x", false, false},
		{"-x", false, false},
		{"", false, false},
	} {
		err := CheckPXE(tc.name)
		if (err == nil) != tc.pxe || (err != nil && !errors.Is(err, ErrBadPXE)) {
			t.Errorf("CheckPXE(%.20q) = %v; want ok=%v", tc.name, err, tc.pxe)
		}
		if got := ValidDisk(tc.name); got != tc.disk {
			t.Errorf("ValidDisk(%.20q) = %v, want %v", tc.name, got, tc.disk)
		}
	}
}
