package modroot_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/orbit-lab/netboot/internal/modroot"
	"github.com/orbit-lab/netboot/internal/testenv"
)

func TestFrom(t *testing.T) {
	tree := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		testenv.WriteFile(t, filepath.Join(tree, rel), text)
	}
	write("src/go.mod", "module "+modroot.Module+"\n\ngo 1.26\n")
	write("src/cmd/x/main.go", "package main\n")
	write("src/testdata/other/go.mod", "module example.com/other\n")
	write("elsewhere/go.mod", "module example.com/elsewhere\n")
	src := filepath.Join(tree, "src")
	for _, tc := range []struct {
		dir     string
		want    string
		wantErr error
	}{
		{src, src, nil},
		{filepath.Join(src, "cmd/x"), src, nil},
		{filepath.Join(src, "testdata/other"), src, nil},
		{filepath.Join(tree, "elsewhere"), "", modroot.ErrNotFound},
	} {
		got, err := modroot.From(tc.dir)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("From(%s) = %q, %v; want %q, %v", tc.dir, got, err, tc.want, tc.wantErr)
		}
	}
	// This test runs inside the tree.
	if root, err := modroot.Find(); err != nil || root == "" {
		t.Errorf("Find() = %q, %v", root, err)
	}
}
