package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// BootLink is one active pxelinux.cfg link: the node boots Image until
// ExpiresAt, the latest expiry of its outstanding references. It keeps the
// control IP as the text pxelink names files by; the AM answers with
// apiv1.BootLink.
type BootLink struct {
	HRN       string
	ControlIP string
	Hex       string
	Image     string
	SetAt     time.Time
	ExpiresAt time.Time
	Refs      int // OMF's per-node reference count
}

// linkChunk bounds the rows of one multi-row statement (SQLite caps bound
// variables); one statement per chunk instead of per link keeps a 400-node
// set from parsing 1200 statements.
const linkChunk = 500

// SetLinks records, in one transaction, a new reference for each link that
// expires lifetime after now. OMF counted one reference per set; a link
// lives until its last reference expires, so its expiry is the latest one.
func (s *Store) SetLinks(ctx context.Context, links []BootLink, now time.Time, lifetime time.Duration) error {
	exp := now.Add(lifetime).UnixNano()
	return s.tx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(links); start += linkChunk {
			chunk := links[start:min(start+linkChunk, len(links))]
			refs := make([]any, 0, 2*len(chunk))
			hexes := make([]any, 0, 2*len(chunk))
			rows := make([]any, 0, 6*len(chunk))
			for _, l := range chunk {
				refs = append(refs, l.HRN, exp)
				hexes = append(hexes, l.Hex)
				rows = append(rows, l.HRN, l.ControlIP, l.Hex, l.Image, now.UnixNano(), exp)
			}
			for _, l := range chunk {
				hexes = append(hexes, l.HRN)
			}
			n := len(chunk)
			if _, err := s.exec(ctx, tx, `INSERT INTO boot_link_refs(hrn, expires_at) VALUES `+values(n, 2), refs...); err != nil {
				return fmt.Errorf("store: set links: %w", err)
			}
			// A link's hex name is another node's only if IPs moved in the
			// inventory since; that node's stale row goes with its file.
			if _, err := s.exec(ctx, tx, `DELETE FROM boot_links WHERE hex IN (`+marks(n)+`)
				AND hrn NOT IN (`+marks(n)+`)`, hexes...); err != nil {
				return fmt.Errorf("store: set links: %w", err)
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO boot_links(hrn, control_ip, hex, image, set_at, expires_at)
				VALUES `+values(n, 6)+`
				ON CONFLICT(hrn) DO UPDATE SET control_ip = excluded.control_ip, hex = excluded.hex,
					image = excluded.image, set_at = excluded.set_at,
					expires_at = max(boot_links.expires_at, excluded.expires_at)`, rows...); err != nil {
				return fmt.Errorf("store: set links: %w", err)
			}
		}
		return nil
	})
}

// marks is n comma-separated placeholders.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// values is the VALUES list of a multi-row statement: rows groups of cols
// placeholders.
func values(rows, cols int) string {
	return strings.TrimSuffix(strings.Repeat("("+marks(cols)+"),", rows), ",")
}

// ClearLinks removes the links of these nodes and all their references.
func (s *Store) ClearLinks(ctx context.Context, hrns []string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(hrns); start += linkChunk {
			chunk := hrns[start:min(start+linkChunk, len(hrns))]
			args := make([]any, len(chunk))
			for i, h := range chunk {
				args[i] = h
			}
			for _, table := range []string{"boot_links", "boot_link_refs"} {
				if _, err := s.exec(ctx, tx, `DELETE FROM `+table+` WHERE hrn IN (`+marks(len(chunk))+`)`, args...); err != nil {
					return fmt.Errorf("store: clear links: %w", err)
				}
			}
		}
		return nil
	})
}

// LinkNames returns the hex names recorded for those of these nodes that
// have a link.
func (s *Store) LinkNames(ctx context.Context, hrns []string) (map[string]string, error) {
	out := map[string]string{}
	for start := 0; start < len(hrns); start += linkChunk {
		chunk := hrns[start:min(start+linkChunk, len(hrns))]
		args := make([]any, len(chunk))
		for i, h := range chunk {
			args[i] = h
		}
		rows, err := s.query(ctx, nil, `SELECT hrn, hex FROM boot_links WHERE hrn IN (`+marks(len(chunk))+`)`, args...)
		names, err := scanAll(rows, err, func(r scanner) (n [2]string, err error) {
			err = r.Scan(&n[0], &n[1])
			return n, err
		})
		if err != nil {
			return nil, fmt.Errorf("store: link names: %w", err)
		}
		for _, n := range names {
			out[n[0]] = n[1]
		}
	}
	return out, nil
}

// Links lists every active link, with references not yet expired at now.
func (s *Store) Links(ctx context.Context, now time.Time) ([]BootLink, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT l.hrn, l.control_ip, l.hex, l.image, l.set_at, l.expires_at,
		(SELECT count(*) FROM boot_link_refs r WHERE r.hrn = l.hrn AND r.expires_at > ?)
		FROM boot_links l ORDER BY l.hrn`, now.UnixNano())
	out, err := scanAll(rows, err, func(r scanner) (l BootLink, err error) {
		var set, exp int64
		err = r.Scan(&l.HRN, &l.ControlIP, &l.Hex, &l.Image, &set, &exp, &l.Refs)
		l.SetAt, l.ExpiresAt = time.Unix(0, set).UTC(), time.Unix(0, exp).UTC()
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: links: %w", err)
	}
	return out, nil
}

// ExpireLinks drops references expired at now and returns, removed, the
// links left with none.
func (s *Store) ExpireLinks(ctx context.Context, now time.Time) ([]BootLink, error) {
	var gone []BootLink
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM boot_link_refs WHERE expires_at <= ?`, now.UnixNano()); err != nil {
			return fmt.Errorf("store: expire: %w", err)
		}
		rows, err := s.query(ctx, tx, `DELETE FROM boot_links
			WHERE NOT EXISTS (SELECT 1 FROM boot_link_refs r WHERE r.hrn = boot_links.hrn)
			RETURNING hrn, control_ip, hex, image`)
		gone, err = scanAll(rows, err, func(r scanner) (l BootLink, err error) {
			err = r.Scan(&l.HRN, &l.ControlIP, &l.Hex, &l.Image)
			return l, err
		})
		if err != nil {
			return fmt.Errorf("store: expire: %w", err)
		}
		return nil
	})
	return gone, err
}

// LinkByHex returns the active link named hex (pxelinux's name for an
// IPv4 address), or ErrNotFound: none, or expired at now and not yet
// removed. The boot paths that have no file of their own (iPXE scripts,
// UEFI HTTP Boot URLs) ask it on each boot.
func (s *Store) LinkByHex(ctx context.Context, hex string, now time.Time) (BootLink, error) {
	var l BootLink
	var set, exp int64
	err := s.db.QueryRowContext(ctx, `SELECT hrn, control_ip, hex, image, set_at, expires_at
		FROM boot_links WHERE hex = ? AND expires_at > ?`, hex, now.UnixNano()).
		Scan(&l.HRN, &l.ControlIP, &l.Hex, &l.Image, &set, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return BootLink{}, fmt.Errorf("store: link %s: %w", hex, ErrNotFound)
	}
	if err != nil {
		return BootLink{}, fmt.Errorf("store: link %s: %w", hex, err)
	}
	l.SetAt, l.ExpiresAt = time.Unix(0, set).UTC(), time.Unix(0, exp).UTC()
	return l, nil
}
