package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// Event is one step on a node's boot timeline, written by every service.
// The row is exactly the API's wire shape, so it is that type: no
// conversion at the AM's edge.
type Event = apiv1.Event

// EventsPerNode bounds a node's timeline: older events are dropped.
const EventsPerNode = 500

// AddEvent appends an event to its node's timeline, dropping the oldest
// beyond EventsPerNode.
func (s *Store) AddEvent(ctx context.Context, e Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO events(hrn, at, source, what, detail) VALUES (?, ?, ?, ?, ?)`,
			e.HRN, e.At.UnixNano(), e.Source, e.What, e.Detail)
		if err != nil {
			return fmt.Errorf("store: add event: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM events WHERE hrn = ? AND id <
			(SELECT id FROM events WHERE hrn = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, e.HRN, e.HRN, EventsPerNode-1); err != nil {
			return fmt.Errorf("store: trim events: %w", err)
		}
		return nil
	})
}

// Events returns a node's timeline, oldest first.
func (s *Store) Events(ctx context.Context, hrn string) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, hrn, at, source, what, detail FROM
		(SELECT * FROM events WHERE hrn = ? ORDER BY id DESC LIMIT ?) ORDER BY id`, hrn, EventsPerNode)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.ID, &e.HRN, &at, &e.Source, &e.What, &e.Detail); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
