package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// DiscoveredMax bounds the discovered table: the MACs seen longest ago go
// first, so that a flood of made-up MACs cannot grow the database without end.
const DiscoveredMax = 10000

// Sighting is what the DHCP server saw of one unknown MAC since its last
// report: Count requests between First and Last.
type Sighting struct {
	MAC         string
	First, Last time.Time
	Count       int
	IP          string // the pool address offered or acked, or ""
	VendorClass string // option 60 of the last request, or ""
	Relay       string // giaddr of the last request, or "" when direct
}

// Discovered is a MAC that asked for an address and is not in the
// inventory, with its addresses as the DHCP server recorded them (text);
// the AM answers with apiv1.Discovered.
type Discovered struct {
	MAC         string
	FirstSeen   time.Time
	LastSeen    time.Time
	Count       int64  // DHCP requests seen
	LastIP      string // last pool address offered or acked
	VendorClass string // option 60, e.g. PXEClient:Arch:00000:UNDI:002001
	Relay       string // relay (giaddr) it came through
}

// RecordDiscovered merges sightings into the discovered table in one
// transaction and keeps the table within DiscoveredMax rows.
func (s *Store) RecordDiscovered(ctx context.Context, sightings []Sighting) error {
	if len(sightings) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, v := range sightings {
			_, err := tx.ExecContext(ctx, `INSERT INTO dhcp_discovered(mac, first_seen, last_seen, count, last_ip, vendor_class, relay)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(mac) DO UPDATE SET
					first_seen = min(first_seen, excluded.first_seen),
					last_seen = max(last_seen, excluded.last_seen),
					count = count + excluded.count,
					last_ip = CASE WHEN excluded.last_ip <> '' THEN excluded.last_ip ELSE last_ip END,
					vendor_class = CASE WHEN excluded.vendor_class <> '' THEN excluded.vendor_class ELSE vendor_class END,
					relay = excluded.relay`,
				v.MAC, v.First.UnixNano(), v.Last.UnixNano(), v.Count, v.IP, v.VendorClass, v.Relay)
			if err != nil {
				return fmt.Errorf("store: discovered %s: %w", v.MAC, err)
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM dhcp_discovered WHERE mac IN
			(SELECT mac FROM dhcp_discovered ORDER BY last_seen DESC LIMIT -1 OFFSET ?)`, DiscoveredMax)
		if err != nil {
			return fmt.Errorf("store: trim discovered: %w", err)
		}
		return nil
	})
}

// Discovered lists the MACs seen by the DHCP server that are not (or no
// longer) in the inventory, most recently seen first.
func (s *Store) Discovered(ctx context.Context) ([]Discovered, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT mac, first_seen, last_seen, count, last_ip, vendor_class, relay
		FROM dhcp_discovered WHERE mac NOT IN (SELECT control_mac FROM nodes) ORDER BY last_seen DESC, mac`)
	out, err := scanAll(rows, err, func(r scanner) (d Discovered, err error) {
		var first, last int64
		err = r.Scan(&d.MAC, &first, &last, &d.Count, &d.LastIP, &d.VendorClass, &d.Relay)
		d.FirstSeen, d.LastSeen = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: discovered: %w", err)
	}
	if out == nil {
		out = []Discovered{}
	}
	return out, nil
}
