package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// BootLink is one active pxelinux.cfg link: the node boots Image until
// ExpiresAt, the latest expiry of its outstanding references.
type BootLink struct {
	HRN       string    `json:"hrn"`
	ControlIP string    `json:"ip"`
	Hex       string    `json:"hex"`
	Image     string    `json:"image"`
	SetAt     time.Time `json:"set_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Refs      int       `json:"refs"` // OMF's per-node reference count
}

// SetLinks records, in one transaction, a new reference for each link that
// expires lifetime after now. OMF counted one reference per set; a link
// lives until its last reference expires, so its expiry is the latest one.
func (s *Store) SetLinks(ctx context.Context, links []BootLink, now time.Time, lifetime time.Duration) error {
	exp := now.Add(lifetime).UnixNano()
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, l := range links {
			if _, err := tx.ExecContext(ctx, `INSERT INTO boot_link_refs(hrn, expires_at) VALUES (?, ?)`, l.HRN, exp); err != nil {
				return fmt.Errorf("store: set link %s: %w", l.HRN, err)
			}
			// A node's hex name can only change if its IP changed in the
			// inventory; the old name's row goes so the hex stays unique.
			if _, err := tx.ExecContext(ctx, `DELETE FROM boot_links WHERE hex = ? AND hrn <> ?`, l.Hex, l.HRN); err != nil {
				return fmt.Errorf("store: set link %s: %w", l.HRN, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO boot_links(hrn, control_ip, hex, image, set_at, expires_at)
				VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT(hrn) DO UPDATE SET control_ip = excluded.control_ip, hex = excluded.hex,
					image = excluded.image, set_at = excluded.set_at,
					expires_at = max(boot_links.expires_at, excluded.expires_at)`,
				l.HRN, l.ControlIP, l.Hex, l.Image, now.UnixNano(), exp)
			if err != nil {
				return fmt.Errorf("store: set link %s: %w", l.HRN, err)
			}
		}
		return nil
	})
}

// ClearLinks removes the links of these nodes and all their references.
func (s *Store) ClearLinks(ctx context.Context, hrns []string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, h := range hrns {
			if _, err := tx.ExecContext(ctx, `DELETE FROM boot_links WHERE hrn = ?`, h); err != nil {
				return fmt.Errorf("store: clear link %s: %w", h, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM boot_link_refs WHERE hrn = ?`, h); err != nil {
				return fmt.Errorf("store: clear link %s: %w", h, err)
			}
		}
		return nil
	})
}

// Links lists every active link, with references not yet expired at now.
func (s *Store) Links(ctx context.Context, now time.Time) ([]BootLink, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT l.hrn, l.control_ip, l.hex, l.image, l.set_at, l.expires_at,
		(SELECT count(*) FROM boot_link_refs r WHERE r.hrn = l.hrn AND r.expires_at > ?)
		FROM boot_links l ORDER BY l.hrn`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("store: links: %w", err)
	}
	defer rows.Close()
	var out []BootLink
	for rows.Next() {
		var l BootLink
		var set, exp int64
		if err := rows.Scan(&l.HRN, &l.ControlIP, &l.Hex, &l.Image, &set, &exp, &l.Refs); err != nil {
			return nil, fmt.Errorf("store: links: %w", err)
		}
		l.SetAt, l.ExpiresAt = time.Unix(0, set).UTC(), time.Unix(0, exp).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

// ExpireLinks drops references expired at now and returns, removed, the
// links left with none.
func (s *Store) ExpireLinks(ctx context.Context, now time.Time) ([]BootLink, error) {
	var gone []BootLink
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM boot_link_refs WHERE expires_at <= ?`, now.UnixNano()); err != nil {
			return fmt.Errorf("store: expire: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `DELETE FROM boot_links
			WHERE NOT EXISTS (SELECT 1 FROM boot_link_refs r WHERE r.hrn = boot_links.hrn)
			RETURNING hrn, control_ip, hex, image`)
		if err != nil {
			return fmt.Errorf("store: expire: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var l BootLink
			if err := rows.Scan(&l.HRN, &l.ControlIP, &l.Hex, &l.Image); err != nil {
				return fmt.Errorf("store: expire: %w", err)
			}
			gone = append(gone, l)
		}
		return rows.Err()
	})
	return gone, err
}
