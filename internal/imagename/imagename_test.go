package imagename

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPXE(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"orbit-2.0.0", true},
		{"lab_test.1", true},
		{"0a120102", true}, // pxelinux asks for upper-case hex only
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"default", false},
		{"0A120102", false},
		{"C", false},
		{"01-52-54-00-99-00-32", false},
		{"a:b", false},
		{"a/b", false},
		{".x", false},
		{"", false},
	} {
		err := CheckPXE(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadPXE)) {
			t.Errorf("CheckPXE(%.20q) = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidDisk(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"ubuntu-22.04", true},
		{"baseline:v2@lab+1", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"../etc", false},
		{"a..b", false},
		{"a/b", false},
		{"img.zst.sha256", false},
		{".upload-x", false},
		{"-x", false},
		{"", false},
	} {
		if got := ValidDisk(tc.name); got != tc.ok {
			t.Errorf("ValidDisk(%.20q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
