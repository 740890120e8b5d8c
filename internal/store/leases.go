package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
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
		pairs, err := scanAll(rows, err, func(r scanner) (p [2]int64, err error) {
			err = r.Scan(&p[0], &p[1])
			return p, err
		})
		if err != nil {
			return fmt.Errorf("store: offer lease: %w", err)
		}
		leased := map[int64]int64{}
		for _, p := range pairs {
			leased[p[0]] = p[1]
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
	ips, err := scanAll(rows, err, func(r scanner) (ip string, err error) {
		err = r.Scan(&ip)
		return ip, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: reservations: %w", err)
	}
	out := map[int64]bool{}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			if n := ip4num(a); n >= lo && n <= hi {
				out[n] = true
			}
		}
	}
	return out, nil
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
	return scanOne(s.db.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM dhcp_leases WHERE mac = ?`, mac), scanLease, "lease of "+mac)
}

// Leases lists every pool lease, expired ones too, by address.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+leaseColumns+` FROM dhcp_leases ORDER BY ip`)
	out, err := scanAll(rows, err, scanLease)
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	if out == nil {
		out = []Lease{}
	}
	return out, nil
}
