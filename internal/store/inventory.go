package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/inventory"
)

// ErrAmbiguous is returned when a host name matches nodes in several
// testbeds; its message names them.
var ErrAmbiguous = errors.New("ambiguous")

const nodeColumns = `n.hrn, t.domain, n.hostname, n.control_ip, n.control_mac, n.cmc_ip, n.x, n.y, n.z, n.disk, n.pxe_image, n.bootfile, n.power`
const nodeFrom = ` FROM nodes n JOIN testbeds t ON t.id = n.testbed_id `

func scanNode(r scanner) (inventory.Node, error) {
	var n inventory.Node
	err := r.Scan(&n.HRN, &n.Domain, &n.Hostname, &n.ControlIP, &n.ControlMAC, &n.CmcIP, &n.X, &n.Y, &n.Z, &n.Disk, &n.PXEImage, &n.Bootfile, &n.Power)
	return n, err
}

func (s *Store) queryNodes(ctx context.Context, where string, args ...any) ([]inventory.Node, error) {
	rows, err := s.query(ctx, nil, `SELECT `+nodeColumns+nodeFrom+where+` ORDER BY t.domain, n.hrn`, args...)
	out, err := scanAll(rows, err, scanNode)
	if err != nil {
		return nil, fmt.Errorf("store: nodes: %w", err)
	}
	return out, nil
}

func (s *Store) oneNode(ctx context.Context, what, where string, args ...any) (inventory.Node, error) {
	return scanOne(s.queryRow(ctx, `SELECT `+nodeColumns+nodeFrom+where, args...), scanNode, "node "+what)
}

// Nodes lists the nodes of one testbed, or of all when domain is "".
func (s *Store) Nodes(ctx context.Context, domain string) ([]inventory.Node, error) {
	if domain == "" {
		return s.queryNodes(ctx, "")
	}
	return s.queryNodes(ctx, `WHERE t.domain = ?`, domain)
}

// NodeCount counts all nodes.
func (s *Store) NodeCount(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM nodes`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count nodes: %w", err)
	}
	return n, nil
}

// Node returns the node with this hrn.
func (s *Store) Node(ctx context.Context, hrn string) (inventory.Node, error) {
	return s.oneNode(ctx, fmt.Sprintf("%q", hrn), `WHERE n.hrn = ?`, hrn)
}

// NodeByIP returns the node whose control IP is ip.
func (s *Store) NodeByIP(ctx context.Context, ip string) (inventory.Node, error) {
	return s.oneNode(ctx, "with control IP "+ip, `WHERE n.control_ip = ?`, ip)
}

// NodeByMAC returns the node whose control MAC is mac (lower-case, colons).
func (s *Store) NodeByMAC(ctx context.Context, mac string) (inventory.Node, error) {
	return s.oneNode(ctx, "with control MAC "+mac, `WHERE n.control_mac = ?`, mac)
}

// LookupNode finds a node by hrn or by hostname, within domain unless domain
// is "". A hostname shared by nodes of several testbeds is ErrAmbiguous.
func (s *Store) LookupNode(ctx context.Context, domain, name string) (inventory.Node, error) {
	nodes, missing, err := s.LookupNodes(ctx, domain, []string{name})
	switch {
	case err != nil:
		return inventory.Node{}, err
	case len(missing) > 0 && domain != "":
		return inventory.Node{}, fmt.Errorf("node %q in domain %q: %w", name, domain, ErrNotFound)
	case len(missing) > 0:
		return inventory.Node{}, fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	return nodes[0], nil
}

// lookupChunk bounds the names of one query (SQLite caps bound variables).
const lookupChunk = 1000

// LookupNodes resolves many names at once, as LookupNode does one: it
// returns the nodes found, in the order of names, and the names not found.
// One query per thousand names, since an EC names a whole grid at once.
func (s *Store) LookupNodes(ctx context.Context, domain string, names []string) (found []inventory.Node, missing []string, err error) {
	byHRN := map[string]inventory.Node{}
	byHost := map[string][]inventory.Node{}
	for start := 0; start < len(names); start += lookupChunk {
		chunk := names[start:min(start+lookupChunk, len(names))]
		in := marks(len(chunk))
		args := make([]any, 0, 2*len(chunk)+1)
		for _, n := range chunk {
			args = append(args, n)
		}
		args = append(args, args...)
		where := `WHERE (n.hrn IN (` + in + `) OR n.hostname IN (` + in + `))`
		if domain != "" {
			where += ` AND t.domain = ?`
			args = append(args, domain)
		}
		nodes, err := s.queryNodes(ctx, where, args...)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range nodes {
			if _, dup := byHRN[n.HRN]; dup { // found by another chunk too
				continue
			}
			byHRN[n.HRN] = n
			if n.Hostname != "" {
				byHost[n.Hostname] = append(byHost[n.Hostname], n)
			}
		}
	}
	for _, name := range names {
		if n, ok := byHRN[name]; ok { // an exact hrn wins over a hostname
			found = append(found, n)
			continue
		}
		switch hs := byHost[name]; len(hs) {
		case 0:
			missing = append(missing, name)
		case 1:
			found = append(found, hs[0])
		default:
			// The candidates are named, so that the caller can pick one.
			names := make([]string, len(hs))
			for i, n := range hs {
				names[i] = fmt.Sprintf("%s (domain %s)", n.HRN, n.Domain)
			}
			return nil, nil, fmt.Errorf("node %q: host name of %d nodes: %s: name the hrn or the domain: %w", name, len(hs), strings.Join(names, ", "), ErrAmbiguous)
		}
	}
	return found, missing, nil
}

// Testbed is one domain and how many nodes it has: the row is the API's
// wire shape.
type Testbed = apiv1.Testbed

// Testbeds lists every testbed.
func (s *Store) Testbeds(ctx context.Context) ([]Testbed, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.domain, count(n.hrn) FROM testbeds t LEFT JOIN nodes n ON n.testbed_id = t.id GROUP BY t.id ORDER BY t.domain`)
	out, err := scanAll(rows, err, func(r scanner) (t Testbed, err error) {
		err = r.Scan(&t.Domain, &t.Nodes)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: testbeds: %w", err)
	}
	return out, nil
}

// Images lists the PXE images known to the inventory.
func (s *Store) Images(ctx context.Context) ([]inventory.Image, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, description FROM images ORDER BY name`)
	out, err := scanAll(rows, err, func(r scanner) (i inventory.Image, err error) {
		err = r.Scan(&i.Name, &i.Description)
		return i, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: images: %w", err)
	}
	return out, nil
}

// PutImage adds or updates a PXE image.
func (s *Store) PutImage(ctx context.Context, img inventory.Image) error {
	if !inventory.ValidName(img.Name) {
		return fmt.Errorf("%w: image name %q", inventory.ErrInvalid, img.Name)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO images(name, description) VALUES (?, ?)
		ON CONFLICT(name) DO UPDATE SET description = excluded.description`, img.Name, img.Description)
	if err != nil {
		return fmt.Errorf("store: put image %q: %w", img.Name, err)
	}
	return nil
}

// Import merges a document into the inventory in one transaction: nodes are
// added or replaced by hrn. Any malformed entry, or a control IP or MAC that
// would be shared by two nodes afterwards, rejects the whole document with
// every offending entry named.
func (s *Store) Import(ctx context.Context, f inventory.File) error {
	f, problems := f.Check()
	return s.tx(ctx, func(tx *sql.Tx) error {
		incoming := map[string]bool{}
		for _, tb := range f.Testbeds {
			for _, n := range tb.Nodes {
				incoming[n.HRN] = true
			}
		}
		kept, err := conflictsWithKept(ctx, tx, f, incoming)
		if err != nil {
			return err
		}
		if problems = append(problems, kept...); len(problems) > 0 {
			return &inventory.Error{Problems: problems}
		}
		for _, img := range f.Images {
			if _, err := tx.ExecContext(ctx, `INSERT INTO images(name, description) VALUES (?, ?)
				ON CONFLICT(name) DO UPDATE SET description = excluded.description`, img.Name, img.Description); err != nil {
				return fmt.Errorf("store: import image %q: %w", img.Name, err)
			}
		}
		// Replaced nodes go first, so that two nodes swapping addresses never
		// collide halfway through.
		for hrn := range incoming {
			if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE hrn = ?`, hrn); err != nil {
				return fmt.Errorf("store: import: %w", err)
			}
		}
		for _, tb := range f.Testbeds {
			id, err := testbedID(ctx, tx, tb.Domain)
			if err != nil {
				return err
			}
			for _, n := range tb.Nodes {
				if err := insertNode(ctx, tx, id, n); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// conflictsWithKept finds the file's nodes whose IP or MAC is held by a
// node already in the database that the file does not replace.
func conflictsWithKept(ctx context.Context, tx *sql.Tx, f inventory.File, incoming map[string]bool) ([]error, error) {
	rows, err := tx.QueryContext(ctx, `SELECT hrn, control_ip, control_mac FROM nodes`)
	held, err := scanAll(rows, err, func(r scanner) (n [3]string, err error) {
		err = r.Scan(&n[0], &n[1], &n[2])
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: import: %w", err)
	}
	kept := map[string]string{} // ip or mac -> hrn
	for _, n := range held {
		hrn, ip, mac := n[0], n[1], n[2]
		if !incoming[hrn] {
			kept["control_ip "+ip] = hrn
			kept["control_mac "+mac] = hrn
		}
	}
	var problems []error
	for _, tb := range f.Testbeds {
		for _, n := range tb.Nodes {
			for _, key := range []string{"control_ip " + n.ControlIP, "control_mac " + n.ControlMAC} {
				if other, ok := kept[key]; ok {
					problems = append(problems, fmt.Errorf("testbed %s: node %q: duplicate %s (already used by node %q in the inventory)", tb.Domain, n.HRN, key, other))
				}
			}
		}
	}
	return problems, nil
}

func testbedID(ctx context.Context, tx *sql.Tx, domain string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO testbeds(domain) VALUES (?)
		ON CONFLICT(domain) DO UPDATE SET domain = excluded.domain RETURNING id`, domain).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: testbed %q: %w", domain, err)
	}
	return id, nil
}

func insertNode(ctx context.Context, tx *sql.Tx, testbed int64, n inventory.Node) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO nodes(hrn, testbed_id, hostname, control_ip, control_mac, cmc_ip, x, y, z, disk, pxe_image, bootfile, power)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		n.HRN, testbed, n.Hostname, n.ControlIP, n.ControlMAC, n.CmcIP, n.X, n.Y, n.Z, n.Disk, n.PXEImage, n.Bootfile, n.Power)
	if err != nil {
		return fmt.Errorf("store: node %q: %w", n.HRN, err)
	}
	return nil
}

// Export returns the whole inventory as a document that Import accepts.
func (s *Store) Export(ctx context.Context) (inventory.File, error) {
	var f inventory.File
	imgs, err := s.Images(ctx)
	if err != nil {
		return f, err
	}
	f.Images = imgs
	tbs, err := s.Testbeds(ctx)
	if err != nil {
		return f, err
	}
	nodes, err := s.Nodes(ctx, "")
	if err != nil {
		return f, err
	}
	byDomain := map[string][]inventory.Node{}
	for _, n := range nodes {
		byDomain[n.Domain] = append(byDomain[n.Domain], n)
	}
	for _, tb := range tbs {
		f.Testbeds = append(f.Testbeds, inventory.Testbed{Domain: tb.Domain, Nodes: byDomain[tb.Domain]})
	}
	return f, nil
}

// PutNode adds or replaces one node (its testbed is created if new). It
// reports whether the node is new. An IP or MAC held by another node is
// ErrConflict.
func (s *Store) PutNode(ctx context.Context, n inventory.Node) (created bool, err error) {
	n, err = inventory.Normalize(n)
	if err != nil {
		return false, err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var other string
		err := tx.QueryRowContext(ctx, `SELECT hrn FROM nodes WHERE hrn <> ? AND (control_ip = ? OR control_mac = ?)`,
			n.HRN, n.ControlIP, n.ControlMAC).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("node %q: control IP %s or MAC %s already used by node %q: %w", n.HRN, n.ControlIP, n.ControlMAC, other, ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: put node: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE hrn = ?`, n.HRN)
		if err != nil {
			return fmt.Errorf("store: put node: %w", err)
		}
		replaced, _ := res.RowsAffected()
		created = replaced == 0
		id, err := testbedID(ctx, tx, n.Domain)
		if err != nil {
			return err
		}
		return insertNode(ctx, tx, id, n)
	})
	return created, err
}

// DeleteNode removes a node and its timeline.
func (s *Store) DeleteNode(ctx context.Context, hrn string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE hrn = ?`, hrn)
		if err != nil {
			return fmt.Errorf("store: delete node: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("node %q: %w", hrn, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE hrn = ?`, hrn); err != nil {
			return fmt.Errorf("store: delete node: %w", err)
		}
		return nil
	})
}

// SyncResult says what SyncInventory changed. Removed and Readdressed hold
// the nodes as they were, for their boot links: a link is made for a
// control IP.
type SyncResult struct {
	Added, Changed []string
	Removed        []inventory.Node
	Readdressed    []inventory.Node // changed, and their control IP with them
	Unchanged      int
}

// SyncInventory makes the inventory what the document says, in one
// transaction: its nodes are added or replaced by hrn, the nodes it does
// not name are deleted with their timelines (as DeleteNode does), and so
// are testbeds left without nodes that it does not name. Its images are
// added or updated; other images stay (nbctl image build registers them).
// A node the document leaves as it is is not written at all. A malformed
// entry, or an hrn, IP or MAC used twice, rejects the whole document with
// every offending entry named.
func (s *Store) SyncInventory(ctx context.Context, f inventory.File) (SyncResult, error) {
	var res SyncResult
	f, problems := f.Check()
	if len(problems) > 0 {
		return res, &inventory.Error{Problems: problems}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res = SyncResult{}
		rows, err := tx.QueryContext(ctx, `SELECT `+nodeColumns+nodeFrom)
		held, err := scanAll(rows, err, scanNode)
		if err != nil {
			return fmt.Errorf("store: sync inventory: %w", err)
		}
		old := make(map[string]inventory.Node, len(held))
		for _, n := range held {
			old[n.HRN] = n
		}
		var write []inventory.Node // added and changed, inserted once the old rows are gone
		gone := []string{}         // removed and changed: deleted first, so that swapped addresses never collide
		keep := map[string]bool{}
		for _, tb := range f.Testbeds {
			for _, n := range tb.Nodes {
				keep[n.HRN] = true
				was, ok := old[n.HRN]
				switch {
				case !ok:
					res.Added = append(res.Added, n.HRN)
				case was == n:
					res.Unchanged++
					continue
				default:
					res.Changed = append(res.Changed, n.HRN)
					if was.ControlIP != n.ControlIP {
						res.Readdressed = append(res.Readdressed, was)
					}
					gone = append(gone, n.HRN)
				}
				write = append(write, n)
			}
		}
		for _, n := range held {
			if !keep[n.HRN] {
				res.Removed = append(res.Removed, n)
				gone = append(gone, n.HRN)
				if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE hrn = ?`, n.HRN); err != nil {
					return fmt.Errorf("store: sync inventory: %w", err)
				}
			}
		}
		for _, hrn := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE hrn = ?`, hrn); err != nil {
				return fmt.Errorf("store: sync inventory: %w", err)
			}
		}
		for _, img := range f.Images {
			if _, err := tx.ExecContext(ctx, `INSERT INTO images(name, description) VALUES (?, ?)
				ON CONFLICT(name) DO UPDATE SET description = excluded.description`, img.Name, img.Description); err != nil {
				return fmt.Errorf("store: sync image %q: %w", img.Name, err)
			}
		}
		ids := map[string]int64{}
		domains := []any{}
		for _, tb := range f.Testbeds {
			id, err := testbedID(ctx, tx, tb.Domain)
			if err != nil {
				return err
			}
			ids[tb.Domain] = id
			domains = append(domains, tb.Domain)
		}
		for _, n := range write {
			if err := insertNode(ctx, tx, ids[n.Domain], n); err != nil {
				return err
			}
		}
		q := `DELETE FROM testbeds WHERE id NOT IN (SELECT testbed_id FROM nodes)`
		if len(domains) > 0 {
			q += ` AND domain NOT IN (` + marks(len(domains)) + `)`
		}
		if _, err := tx.ExecContext(ctx, q, domains...); err != nil {
			return fmt.Errorf("store: sync inventory: testbeds: %w", err)
		}
		return nil
	})
	if err != nil {
		return SyncResult{}, err
	}
	return res, nil
}
