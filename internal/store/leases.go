package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// ErrPoolExhausted is returned when a pool has no free address.
var ErrPoolExhausted = errors.New("pool exhausted")

// Lease states. An address is free when its lease has expired, whatever
// the state; a released lease remembers its MAC so that the client gets the
// same address back if nobody took it meanwhile.
const (
	LeaseOffered  = "offered"  // held for a client between OFFER and REQUEST
	LeaseBound    = "bound"    // ACKed
	LeaseReleased = "released" // the client gave it back (RELEASE)
	LeaseDeclined = "declined" // a client found it in use (DECLINE): held, no MAC
)

// Lease is a pool address leased to a MAC that is not in the inventory.
// Inventory nodes have reservations (their control_ip) and no lease.
type Lease struct {
	IP        netip.Addr `json:"ip"`
	MAC       string     `json:"mac,omitempty"` // "" while declined
	State     string     `json:"state"`
	ExpiresAt time.Time  `json:"expires_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// LeaseRequest asks for an address of a pool for one MAC (a DHCPDISCOVER).
type LeaseRequest struct {
	MAC         string       // lower-case, colons
	First, Last netip.Addr   // the pool, inclusive, IPv4
	Exclude     []netip.Addr // never handed out: server, router, network, broadcast
	Want        netip.Addr   // the client's preference (option 50), or zero
	Now         time.Time
	Hold        time.Duration // how long the offer holds the address
}

func ip4num(a netip.Addr) int64 {
	b := a.As4()
	return int64(binary.BigEndian.Uint32(b[:]))
}

func numip4(n int64) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return netip.AddrFrom4(b)
}

const leaseColumns = `ip, coalesce(mac, ''), state, expires_at, updated_at`

func scanLease(r scanner) (Lease, error) {
	var l Lease
	var ip, exp, upd int64
	if err := r.Scan(&ip, &l.MAC, &l.State, &exp, &upd); err != nil {
		return Lease{}, err
	}
	l.IP = numip4(ip)
	l.ExpiresAt = time.Unix(0, exp).UTC()
	l.UpdatedAt = time.Unix(0, upd).UTC()
	return l, nil
}

// OfferLease picks the address to offer r.MAC and holds it for r.Hold: the
// MAC's own lease if it is in the pool, else r.Want if it is free, else the
// lowest address never leased, else the one expired longest ago. An address
// that is an inventory node's control_ip is never offered. A bound lease
// that has not expired keeps its state and expiry.
func (s *Store) OfferLease(ctx context.Context, r LeaseRequest) (Lease, error) {
	if !r.First.Is4() || !r.Last.Is4() || r.Last.Less(r.First) {
		return Lease{}, fmt.Errorf("store: offer lease: bad pool %s-%s", r.First, r.Last)
	}
	lo, hi, now := ip4num(r.First), ip4num(r.Last), r.Now.UnixNano()
	excluded := map[int64]bool{}
	for _, a := range r.Exclude {
		if a.Is4() {
			excluded[ip4num(a)] = true
		}
	}
	var out Lease
	err := s.tx(ctx, func(tx *sql.Tx) error {
		reserved, err := reservedIn(ctx, tx, lo, hi)
		if err != nil {
			return err
		}
		usable := func(ip int64) bool { return ip >= lo && ip <= hi && !excluded[ip] && !reserved[ip] }

		// The MAC's own lease, if it is still usable.
		own, err := scanLease(tx.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM dhcp_leases WHERE mac = ?`, r.MAC))
		switch {
		case err == nil && usable(ip4num(own.IP)):
			state, exp := LeaseOffered, now+int64(r.Hold)
			if own.State == LeaseBound && own.ExpiresAt.UnixNano() > now {
				state, exp = LeaseBound, max(own.ExpiresAt.UnixNano(), exp)
			}
			return putLease(ctx, tx, &out, ip4num(own.IP), r.MAC, state, exp, now)
		case err == nil: // moved to another pool, or now reserved: forget it
			if _, err := tx.ExecContext(ctx, `DELETE FROM dhcp_leases WHERE mac = ?`, r.MAC); err != nil {
				return fmt.Errorf("store: offer lease: %w", err)
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: offer lease: %w", err)
		}

		// Every lease row in the pool: ip -> expiry.
		rows, err := tx.QueryContext(ctx, `SELECT ip, expires_at FROM dhcp_leases WHERE ip BETWEEN ? AND ?`, lo, hi)
		if err != nil {
			return fmt.Errorf("store: offer lease: %w", err)
		}
		leased := map[int64]int64{}
		for rows.Next() {
			var ip, exp int64
			if err := rows.Scan(&ip, &exp); err != nil {
				rows.Close()
				return fmt.Errorf("store: offer lease: %w", err)
			}
			leased[ip] = exp
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: offer lease: %w", err)
		}

		pick := int64(-1)
		if r.Want.Is4() {
			if w := ip4num(r.Want); usable(w) {
				if exp, ok := leased[w]; !ok || exp <= now {
					pick = w
				}
			}
		}
		if pick < 0 {
			oldest := int64(-1)
			for ip := lo; ip <= hi; ip++ {
				if !usable(ip) {
					continue
				}
				exp, ok := leased[ip]
				if !ok {
					pick = ip
					break
				}
				if exp <= now && (oldest < 0 || exp < leased[oldest]) {
					oldest = ip
				}
			}
			if pick < 0 {
				pick = oldest
			}
		}
		if pick < 0 {
			return fmt.Errorf("pool %s-%s for %s: %w", r.First, r.Last, r.MAC, ErrPoolExhausted)
		}
		return putLease(ctx, tx, &out, pick, r.MAC, LeaseOffered, now+int64(r.Hold), now)
	})
	return out, err
}

// reservedIn returns the inventory control IPs in [lo, hi].
func reservedIn(ctx context.Context, tx *sql.Tx, lo, hi int64) (map[int64]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT control_ip FROM nodes`)
	if err != nil {
		return nil, fmt.Errorf("store: reservations: %w", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("store: reservations: %w", err)
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			if n := ip4num(a); n >= lo && n <= hi {
				out[n] = true
			}
		}
	}
	return out, rows.Err()
}

// putLease writes the lease of ip, taking the row from whoever had it, and
// drops any other row of mac (a MAC holds one lease).
func putLease(ctx context.Context, tx *sql.Tx, out *Lease, ip int64, mac, state string, exp, now int64) error {
	if mac != "" {
		if _, err := tx.ExecContext(ctx, `DELETE FROM dhcp_leases WHERE mac = ? AND ip <> ?`, mac, ip); err != nil {
			return fmt.Errorf("store: lease %s: %w", numip4(ip), err)
		}
	}
	var macArg any
	if mac != "" {
		macArg = mac
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO dhcp_leases(ip, mac, state, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, state = excluded.state,
			expires_at = excluded.expires_at, updated_at = excluded.updated_at`, ip, macArg, state, exp, now)
	if err != nil {
		return fmt.Errorf("store: lease %s: %w", numip4(ip), err)
	}
	*out = Lease{IP: numip4(ip), MAC: mac, State: state, ExpiresAt: time.Unix(0, exp).UTC(), UpdatedAt: time.Unix(0, now).UTC()}
	return nil
}

// BindLease binds ip to mac until now+lifetime (a DHCPREQUEST). The caller
// has checked that ip is in the client's pool. ip must be free or already
// mac's, and no inventory node's control_ip; otherwise the answer is
// ErrConflict and the client gets a NAK.
func (s *Store) BindLease(ctx context.Context, mac string, ip netip.Addr, now time.Time, lifetime time.Duration) (Lease, error) {
	if !ip.Is4() {
		return Lease{}, fmt.Errorf("lease %s for %s: not IPv4: %w", ip, mac, ErrConflict)
	}
	var out Lease
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var holder string
		err := tx.QueryRowContext(ctx, `SELECT hrn FROM nodes WHERE control_ip = ?`, ip.String()).Scan(&holder)
		switch {
		case err == nil:
			return fmt.Errorf("lease %s for %s: reserved for node %q: %w", ip, mac, holder, ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: bind lease: %w", err)
		}
		cur, err := scanLease(tx.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM dhcp_leases WHERE ip = ?`, ip4num(ip)))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("store: bind lease: %w", err)
		case cur.MAC != mac && cur.ExpiresAt.After(now):
			return fmt.Errorf("lease %s for %s: held by %q (%s) until %s: %w", ip, mac, cur.MAC, cur.State, cur.ExpiresAt.Format(time.RFC3339), ErrConflict)
		}
		return putLease(ctx, tx, &out, ip4num(ip), mac, LeaseBound, now.Add(lifetime).UnixNano(), now.UnixNano())
	})
	return out, err
}

// ReleaseLease ends mac's lease of ip now (a DHCPRELEASE). A lease that is
// not mac's is left alone: a RELEASE is not authenticated.
func (s *Store) ReleaseLease(ctx context.Context, mac string, ip netip.Addr, now time.Time) error {
	if !ip.Is4() {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE dhcp_leases SET state = ?, expires_at = min(expires_at, ?), updated_at = ?
		WHERE ip = ? AND mac = ?`, LeaseReleased, now.UnixNano(), now.UnixNano(), ip4num(ip), mac)
	if err != nil {
		return fmt.Errorf("store: release lease %s: %w", ip, err)
	}
	return nil
}

// DeclineLease marks ip as in use by an unknown host (a DHCPDECLINE from the
// MAC that was offered it): nobody gets it until now+hold. A decline of an
// address that is not mac's is ignored.
func (s *Store) DeclineLease(ctx context.Context, mac string, ip netip.Addr, now time.Time, hold time.Duration) error {
	if !ip.Is4() {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE dhcp_leases SET mac = NULL, state = ?, expires_at = ?, updated_at = ?
		WHERE ip = ? AND mac = ?`, LeaseDeclined, now.Add(hold).UnixNano(), now.UnixNano(), ip4num(ip), mac)
	if err != nil {
		return fmt.Errorf("store: decline lease %s: %w", ip, err)
	}
	return nil
}

// LeaseByMAC returns mac's lease, expired or not.
func (s *Store) LeaseByMAC(ctx context.Context, mac string) (Lease, error) {
	l, err := scanLease(s.db.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM dhcp_leases WHERE mac = ?`, mac))
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, fmt.Errorf("lease of %s: %w", mac, ErrNotFound)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("store: lease of %s: %w", mac, err)
	}
	return l, nil
}

// Leases lists every pool lease, expired ones too, by address.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+leaseColumns+` FROM dhcp_leases ORDER BY ip`)
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	defer rows.Close()
	out := []Lease{}
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("store: leases: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

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
	if err != nil {
		return nil, fmt.Errorf("store: discovered: %w", err)
	}
	defer rows.Close()
	out := []Discovered{}
	for rows.Next() {
		var d Discovered
		var first, last int64
		if err := rows.Scan(&d.MAC, &first, &last, &d.Count, &d.LastIP, &d.VendorClass, &d.Relay); err != nil {
			return nil, fmt.Errorf("store: discovered: %w", err)
		}
		d.FirstSeen, d.LastSeen = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
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
	return s.tx(ctx, func(tx *sql.Tx) error {
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
	n, err := scanNode(f.byMAC.QueryRowContext(ctx, mac))
	if errors.Is(err, sql.ErrNoRows) {
		return inventory.Node{}, fmt.Errorf("node with control MAC %s: %w", mac, ErrNotFound)
	}
	if err != nil {
		return inventory.Node{}, fmt.Errorf("store: node with control MAC %s: %w", mac, err)
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
