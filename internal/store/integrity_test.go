package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// TestIntegrityCheck: a sound database passes; one whose index pages were
// overwritten fails, with ErrCorrupt and SQLite's own words.
func TestIntegrityCheck(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []inventory.Node
	for i := range 300 {
		nodes = append(nodes, node(fmt.Sprintf("n%d.sb8", i), fmt.Sprintf("10.18.%d.%d", i/200, i%200+1), fmt.Sprintf("00:03:1d:0c:%02x:%02x", i/256, i%256)))
	}
	if err := s.Import(ctx, file("sb8", nodes...)); err != nil {
		t.Fatal(err)
	}
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatalf("a sound database: %v", err)
	}
	if err := s.Close(); err != nil { // checkpoints the WAL into the file
		t.Fatal(err)
	}

	path := filepath.Join(dir, "netboot.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(data) < 6*page {
		t.Fatalf("database of %d bytes: too small to corrupt a page past the schema", len(data))
	}
	// The last page (a table's or an index's, not the schema's) keeps its
	// header, with its cells garbled.
	off := len(data)/page*page - page
	copy(data[off+page/2:off+page], bytes.Repeat([]byte{0x5a}, page/2))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatalf("reopening a database with one garbled page: %v", err)
	}
	defer s.Close()
	err = s.IntegrityCheck(ctx)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a corrupt database: %v, want ErrCorrupt", err)
	}
	t.Logf("corrupt: %v", err)
}
