package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// AuditEntry is one recorded mutation; the row is the API's wire shape.
type AuditEntry = apiv1.AuditEntry

// AuditQuery selects audit entries: those at or after Since (the zero
// time: all), about Node when it is set, the newest Limit of them.
type AuditQuery struct {
	Since time.Time
	Node  string
	Limit int
}

// MaxAuditLimit bounds one answer; a Limit of 0 or above it means this.
const MaxAuditLimit = 10000

// AddAudit records one entry.
func (s *Store) AddAudit(ctx context.Context, e AuditEntry) error {
	return s.AddAudits(ctx, []AuditEntry{e})
}

// AddAudits records entries in one transaction: requests answered at once
// share one commit (see am's audit).
func (s *Store) AddAudits(ctx context.Context, entries []AuditEntry) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, e := range entries {
			_, err := s.exec(ctx, tx, `INSERT INTO audit(at, who, role, addr, method, route, target, status, detail)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				e.At.UnixNano(), e.Who, e.Role, e.Addr, e.Method, e.Route, e.Target, e.Status, e.Detail)
			if err != nil {
				return fmt.Errorf("store: add audit entry: %w", err)
			}
		}
		return nil
	})
}

// Audit returns the entries q selects, oldest first. A node matches an
// entry whose target is that node or an OMF node set naming it.
func (s *Store) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 || limit > MaxAuditLimit {
		limit = MaxAuditLimit
	}
	var since int64
	if !q.Since.IsZero() {
		since = q.Since.UnixNano()
	}
	rows, err := s.query(ctx, nil, `SELECT id, at, who, role, addr, method, route, target, status, detail FROM
		(SELECT * FROM audit WHERE at >= ?1 AND (?2 = '' OR target = ?2 OR instr(',' || target || ',', ',' || ?2 || ',') > 0)
		 ORDER BY id DESC LIMIT ?3) ORDER BY id`, since, q.Node, limit)
	out, err := scanAll(rows, err, func(r scanner) (e AuditEntry, err error) {
		var at int64
		err = r.Scan(&e.ID, &at, &e.Who, &e.Role, &e.Addr, &e.Method, &e.Route, &e.Target, &e.Status, &e.Detail)
		e.At = time.Unix(0, at).UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit: %w", err)
	}
	if out == nil {
		out = []AuditEntry{} // the API answers [] when nothing matches
	}
	return out, nil
}

// PruneAudit deletes the entries older than before and says how many.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM audit WHERE at < ?`, before.UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune audit: %w", err)
	}
	return n, nil
}
