package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
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
	err := s.tx(ctx, func(tx *sql.Tx) error { return s.addEvent(ctx, tx, e) })
	if err == nil {
		s.notify([]Event{e})
	}
	return err
}

// addEvent is AddEvent inside tx; the caller notifies once it commits.
func (s *Store) addEvent(ctx context.Context, tx *sql.Tx, e Event) error {
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
}

// ObserveEvents adds fn to the functions called with every event once it
// is committed (by AddEvent or AddEvents), in the adding goroutine: fn must
// be quick and must not call the store. Observers are added before the
// services start (netbootd's metrics follow the boots this way).
func (s *Store) ObserveEvents(fn func(Event)) {
	s.observerMu.Lock()
	defer s.observerMu.Unlock()
	s.observers = append(s.observers, fn)
}

// notify hands committed events to the observers, their times in UTC as
// the store gives them back when read (a watcher that has read some and
// hears of others tells them apart by time).
func (s *Store) notify(events []Event) {
	s.observerMu.RLock()
	obs := s.observers
	s.observerMu.RUnlock()
	for _, fn := range obs {
		for _, e := range events {
			e.At = e.At.UTC()
			fn(e)
		}
	}
}

// Events returns a node's timeline, oldest first.
func (s *Store) Events(ctx context.Context, hrn string) ([]Event, error) {
	return s.EventsAfter(ctx, hrn, 0)
}

// EventsAfter returns a node's events newer than the event with id after,
// oldest first: a cursor for a client that follows the timeline. After 0
// is the whole timeline (its newest EventsPerNode); otherwise at most
// EventsPerNode events follow the cursor, the oldest of them, so that the
// client asks again from the last it got and misses none.
func (s *Store) EventsAfter(ctx context.Context, hrn string, after int64) ([]Event, error) {
	q := `SELECT id, hrn, at, source, what, detail FROM
		(SELECT * FROM events WHERE hrn = ? ORDER BY id DESC LIMIT ?) ORDER BY id`
	args := []any{hrn, EventsPerNode}
	if after > 0 {
		q = `SELECT id, hrn, at, source, what, detail FROM events WHERE hrn = ? AND id > ? ORDER BY id LIMIT ?`
		args = []any{hrn, after, EventsPerNode}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	out, err := scanAll(rows, err, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	if out == nil {
		out = []Event{} // the API answers [] for a node with no events
	}
	return out, nil
}

// AddEvents appends events in one transaction, like AddEvent does one by
// one. The DHCP server writes its boot events in batches through it, so
// that a rack booting at once costs one commit instead of one per packet.
//
// Rows go in with multi-row INSERTs. Trimming a timeline costs as much as
// inserting into it, so a node is trimmed in about one batch in trimEvery,
// and always when the batch brings it trimEvery events or more: its
// timeline may hold a few more than EventsPerNode rows between trims, and
// Events returns the newest EventsPerNode as always.
func (s *Store) AddEvents(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var full *sql.Stmt // eventRowsPerInsert rows
		for rest := events; len(rest) > 0; {
			n := min(len(rest), eventRowsPerInsert)
			var st *sql.Stmt
			var err error
			switch {
			case n == eventRowsPerInsert && full != nil:
				st = full
			default:
				st, err = tx.PrepareContext(ctx, insertEventsSQL(n))
				if err != nil {
					return fmt.Errorf("store: add events: %w", err)
				}
				if n == eventRowsPerInsert {
					full = st
					defer full.Close()
				} else {
					defer st.Close()
				}
			}
			args := make([]any, 0, 5*n)
			for _, e := range rest[:n] {
				args = append(args, e.HRN, e.At.UnixNano(), e.Source, e.What, e.Detail)
			}
			if _, err := st.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("store: add events: %w", err)
			}
			rest = rest[n:]
		}
		perNode := map[string]int{}
		for _, e := range events {
			perNode[e.HRN]++
		}
		var trim *sql.Stmt
		for hrn, n := range perNode {
			if n < trimEvery && rand.IntN(trimEvery) != 0 {
				continue
			}
			if trim == nil {
				var err error
				trim, err = tx.PrepareContext(ctx, `DELETE FROM events WHERE hrn = ? AND id <
					(SELECT id FROM events WHERE hrn = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`)
				if err != nil {
					return fmt.Errorf("store: trim events: %w", err)
				}
				defer trim.Close()
			}
			if _, err := trim.ExecContext(ctx, hrn, hrn, EventsPerNode-1); err != nil {
				return fmt.Errorf("store: trim events: %w", err)
			}
		}
		return nil
	})
	if err == nil {
		s.notify(events)
	}
	return err
}

const (
	eventRowsPerInsert = 32
	trimEvery          = 8
)

func insertEventsSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO events(hrn, at, source, what, detail) VALUES `)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?, ?, ?, ?, ?)`)
	}
	return b.String()
}

// RecentEvents returns the newest perNode events of every node, oldest
// first within a node: what a view of the whole grid starts from (the
// web view derives each node's state from its latest events) in one query
// instead of one per node.
func (s *Store) RecentEvents(ctx context.Context, perNode int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, hrn, at, source, what, detail FROM
		(SELECT *, ROW_NUMBER() OVER (PARTITION BY hrn ORDER BY id DESC) AS rn FROM events)
		WHERE rn <= ? ORDER BY hrn, id`, perNode)
	out, err := scanAll(rows, err, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("store: recent events: %w", err)
	}
	return out, nil
}

// scanEvent reads a row of id, hrn, at, source, what, detail.
func scanEvent(r scanner) (e Event, err error) {
	var at int64
	err = r.Scan(&e.ID, &e.HRN, &at, &e.Source, &e.What, &e.Detail)
	e.At = time.Unix(0, at).UTC()
	return e, err
}
