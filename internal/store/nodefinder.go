package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// NodeFinderMaxStale is how long a NodeFinder trusts its cache without
// checking the inventory version: an inventory change reaches the DHCP
// server within this time.
const NodeFinderMaxStale = time.Millisecond

// NodeFinder answers NodeByMAC as Store.NodeByMAC does, for the DHCP
// server, which looks up the MAC of every request: it caches the nodes it
// has found and drops the cache when the inventory changes (a trigger on
// nodes and testbeds bumps dhcp_inventory_version, which it reads at most
// once per NodeFinderMaxStale). Its queries run on a connection of its own
// with statements prepared once: preparing the join for each request, and
// opening connections beyond the pool's idle ones when requests come in
// parallel, cost more than the lookup itself. MACs not found are not
// cached. Close it when done.
type NodeFinder struct {
	mu      sync.Mutex
	conn    *sql.Conn
	byMAC   *sql.Stmt
	version *sql.Stmt
	cur     int64     // the version the cache holds
	checked time.Time // when cur was read
	cache   map[string]inventory.Node
	now     func() time.Time // time.Now; tests replace it
}

// NewNodeFinder opens a NodeFinder.
func (s *Store) NewNodeFinder(ctx context.Context) (*NodeFinder, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: node finder: %w", err)
	}
	f := &NodeFinder{conn: conn, cur: -1, cache: map[string]inventory.Node{}, now: time.Now}
	if f.byMAC, err = conn.PrepareContext(ctx, `SELECT `+nodeColumns+nodeFrom+`WHERE n.control_mac = ?`); err == nil {
		f.version, err = conn.PrepareContext(ctx, `SELECT v FROM dhcp_inventory_version`)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: node finder: %w", err)
	}
	return f, nil
}

// NodeByMAC returns the node whose control MAC is mac (lower-case, colons).
func (f *NodeFinder) NodeByMAC(ctx context.Context, mac string) (inventory.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.checked) >= NodeFinderMaxStale {
		var v int64
		if err := f.version.QueryRowContext(ctx).Scan(&v); err != nil {
			return inventory.Node{}, fmt.Errorf("store: inventory version: %w", err)
		}
		if v != f.cur {
			clear(f.cache)
			f.cur = v
		}
		f.checked = now
	}
	if n, ok := f.cache[mac]; ok {
		return n, nil
	}
	n, err := scanOne(f.byMAC.QueryRowContext(ctx, mac), scanNode, "node with control MAC "+mac)
	if err != nil {
		return inventory.Node{}, err
	}
	f.cache[mac] = n
	return n, nil
}

// Close releases the statements and the connection.
func (f *NodeFinder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range []*sql.Stmt{f.byMAC, f.version} {
		if st != nil {
			st.Close()
		}
	}
	return f.conn.Close()
}
