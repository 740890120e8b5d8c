// Package store is netbootd's one database: the inventory, boot links, and
// node timelines, in SQLite (modernc.org/sqlite, no cgo). Services share
// state only through it; each declares the few methods it needs.
//
// It is the layer between the leaf packages (internal/inventory, rc/proto),
// which are all it imports of the module, and the services above it.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when the named row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a write would break a uniqueness rule.
var ErrConflict = errors.New("conflict")

// Store is an open database.
type Store struct {
	db *sql.DB

	// stmts caches prepared statements by their text: parsing SQL was a
	// third of netbootd's CPU per boot-link call. Texts that vary with a
	// batch's size stop being cached once maxStmts is reached.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt

	observerMu sync.RWMutex
	observers  []func(Event) // see ObserveEvents
}

const (
	maxStmts = 256
	// maxConns keeps connections open: a new SQLite connection parses the
	// whole schema, and database/sql keeps only 2 idle by default.
	maxConns = 16
)

// migrations are applied in order; the index+1 is the schema version. Never
// edit a released step: add a new one.
var migrations = []string{
	// 1: the OMF inventory model, boot links with their references, timelines.
	`CREATE TABLE testbeds (
		id     INTEGER PRIMARY KEY,
		domain TEXT NOT NULL UNIQUE
	);
	CREATE TABLE images (
		name        TEXT PRIMARY KEY,
		description TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE nodes (
		hrn         TEXT PRIMARY KEY,
		testbed_id  INTEGER NOT NULL REFERENCES testbeds(id),
		hostname    TEXT NOT NULL DEFAULT '',
		control_ip  TEXT NOT NULL UNIQUE,
		control_mac TEXT NOT NULL UNIQUE,
		cmc_ip      TEXT NOT NULL DEFAULT '',
		x           INTEGER NOT NULL DEFAULT 0,
		y           INTEGER NOT NULL DEFAULT 0,
		z           INTEGER NOT NULL DEFAULT 0,
		disk        TEXT NOT NULL DEFAULT '/dev/sda',
		pxe_image   TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX nodes_hostname ON nodes(hostname);
	CREATE TABLE boot_links (
		hrn        TEXT PRIMARY KEY,
		control_ip TEXT NOT NULL,
		hex        TEXT NOT NULL,
		image      TEXT NOT NULL,
		set_at     INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE INDEX boot_links_hex ON boot_links(hex);
	CREATE TABLE boot_link_refs (
		id         INTEGER PRIMARY KEY,
		hrn        TEXT NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE INDEX boot_link_refs_expiry ON boot_link_refs(expires_at);
	CREATE INDEX boot_link_refs_hrn ON boot_link_refs(hrn);
	CREATE TABLE events (
		id     INTEGER PRIMARY KEY,
		hrn    TEXT NOT NULL,
		at     INTEGER NOT NULL,
		source TEXT NOT NULL,
		what   TEXT NOT NULL,
		detail TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX events_hrn ON events(hrn, id);`,
	// 2: DHCP pool leases of MACs not in the inventory, and those MACs.
	`CREATE TABLE dhcp_leases (
		ip         INTEGER PRIMARY KEY,  -- IPv4 address as a 32-bit number
		mac        TEXT UNIQUE,          -- NULL while declined
		state      TEXT NOT NULL,        -- offered, bound, released, declined
		expires_at INTEGER NOT NULL,     -- unix ns; free after this
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE dhcp_discovered (
		mac          TEXT PRIMARY KEY,
		first_seen   INTEGER NOT NULL,
		last_seen    INTEGER NOT NULL,
		count        INTEGER NOT NULL,
		last_ip      TEXT NOT NULL DEFAULT '',
		vendor_class TEXT NOT NULL DEFAULT '',
		relay        TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX dhcp_discovered_last_seen ON dhcp_discovered(last_seen);
	-- Bumped by every change of nodes or testbeds: the DHCP server caches
	-- inventory lookups and checks this one row instead (NodeFinder).
	CREATE TABLE dhcp_inventory_version (v INTEGER NOT NULL);
	INSERT INTO dhcp_inventory_version(v) VALUES (0);
	CREATE TRIGGER dhcp_nodes_insert AFTER INSERT ON nodes BEGIN UPDATE dhcp_inventory_version SET v = v + 1; END;
	CREATE TRIGGER dhcp_nodes_update AFTER UPDATE ON nodes BEGIN UPDATE dhcp_inventory_version SET v = v + 1; END;
	CREATE TRIGGER dhcp_nodes_delete AFTER DELETE ON nodes BEGIN UPDATE dhcp_inventory_version SET v = v + 1; END;
	CREATE TRIGGER dhcp_testbeds_update AFTER UPDATE ON testbeds BEGIN UPDATE dhcp_inventory_version SET v = v + 1; END;
	CREATE TRIGGER dhcp_testbeds_delete AFTER DELETE ON testbeds BEGIN UPDATE dhcp_inventory_version SET v = v + 1; END;`,
	// 3: Resource Controllers: each node's current enrollment and the
	// commands sent to it (see rc.go). AUTOINCREMENT: an id is never reused,
	// so a command or secret of an old enrollment can never match a new one.
	`CREATE TABLE rc_enrollments (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		hrn         TEXT NOT NULL UNIQUE,     -- one current enrollment per node
		secret      TEXT NOT NULL,            -- hex: bearer token and command HMAC key
		secret_hash TEXT NOT NULL UNIQUE,     -- hex sha256(secret): finds a bearer's enrollment
		boot_id     TEXT NOT NULL DEFAULT '',
		image       TEXT NOT NULL DEFAULT '',
		hostname    TEXT NOT NULL DEFAULT '',
		info        TEXT NOT NULL DEFAULT '{}', -- JSON: MACs, addresses, kernel, disks, version
		enrolled_at INTEGER NOT NULL,         -- unix ns
		last_seen   INTEGER NOT NULL          -- unix ns of the last enroll, poll or report
	);
	CREATE TABLE rc_commands (
		id               INTEGER PRIMARY KEY AUTOINCREMENT,
		hrn              TEXT NOT NULL,
		enrollment       INTEGER NOT NULL,    -- rc_enrollments.id it is for
		type             TEXT NOT NULL,       -- EXECUTE, ENROLL, LOAD_IMAGE, ...
		command          TEXT NOT NULL DEFAULT '',
		args             TEXT NOT NULL DEFAULT '[]',  -- JSON array
		timeout          TEXT NOT NULL DEFAULT '',
		image            TEXT NOT NULL DEFAULT '',
		disk             TEXT NOT NULL DEFAULT '',
		image_sha256     TEXT NOT NULL DEFAULT '',    -- LOAD_IMAGE: expected, when queued
		image_size       INTEGER NOT NULL DEFAULT 0,
		state            TEXT NOT NULL,       -- queued, running, done, failed, refused
		reply            TEXT NOT NULL DEFAULT '',
		exit_code        INTEGER,
		stdout           BLOB NOT NULL DEFAULT x'',
		stderr           BLOB NOT NULL DEFAULT x'',
		truncated        INTEGER NOT NULL DEFAULT 0,
		error            TEXT NOT NULL DEFAULT '',
		progress_done    INTEGER NOT NULL DEFAULT 0,
		progress_total   INTEGER NOT NULL DEFAULT 0,
		progress_written INTEGER NOT NULL DEFAULT 0,
		sha256           TEXT NOT NULL DEFAULT '',    -- as verified by the RC
		report_seq       INTEGER NOT NULL DEFAULT 0,  -- last report applied
		created_at       INTEGER NOT NULL,
		started_at       INTEGER,
		updated_at       INTEGER NOT NULL,
		finished_at      INTEGER
	);
	CREATE INDEX rc_commands_node ON rc_commands(hrn, id);
	CREATE INDEX rc_commands_enrollment ON rc_commands(enrollment, state, id);`,
	// 4: a per-node boot file that wins over dhcp.bootfile and bootfile_efi.
	`ALTER TABLE nodes ADD COLUMN bootfile TEXT NOT NULL DEFAULT '';`,
	// 5: the node's power driver (cmc service).
	`ALTER TABLE nodes ADD COLUMN power TEXT NOT NULL DEFAULT '';`,
	// 6: how an enrolled node booted: firmware bios or uefi ('' unknown),
	// Secure Boot 1 or 0 (NULL unknown).
	`ALTER TABLE rc_enrollments ADD COLUMN firmware TEXT NOT NULL DEFAULT '';
	ALTER TABLE rc_enrollments ADD COLUMN secure_boot INTEGER;`,
	// 7: api_tokens: the operator API's tokens, kept as hashes (tokens.go).
	`CREATE TABLE api_tokens (
		name       TEXT PRIMARY KEY,
		role       TEXT NOT NULL,            -- viewer, operator, admin
		hash       TEXT NOT NULL UNIQUE,     -- hex sha256 of the token
		created_at INTEGER NOT NULL,         -- unix ns
		expires_at INTEGER,                  -- unix ns; NULL never
		revoked_at INTEGER                   -- unix ns; NULL while valid
	);`,
	// 8 (audit): every mutation of the API and the OMF services, refused
	// ones included (see audit.go).
	`CREATE TABLE audit (
		id     INTEGER PRIMARY KEY,
		at     INTEGER NOT NULL,            -- unix ns
		who    TEXT NOT NULL,               -- token name, else source address
		role   TEXT NOT NULL DEFAULT '',
		addr   TEXT NOT NULL,               -- source address
		method TEXT NOT NULL,
		route  TEXT NOT NULL,               -- gin's route pattern
		target TEXT NOT NULL DEFAULT '',    -- HRN, image or token name, OMF node set
		status INTEGER NOT NULL,
		detail TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_at ON audit(at);`,
	// 9 (imaging): a chunked LOAD_IMAGE's bytes skipped (the disk held
	// them) and fetched; multicast 1 when the caller loads the image onto
	// several nodes and asked for one multicast session.
	`ALTER TABLE rc_commands ADD COLUMN progress_skipped INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE rc_commands ADD COLUMN progress_fetched INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE rc_commands ADD COLUMN multicast INTEGER NOT NULL DEFAULT 0;`,
}

// Open opens (creating if needed) the database in dir and brings its schema
// up to date.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: state dir: %w", err)
	}
	path := filepath.Join(dir, "netboot.db")
	q := url.Values{}
	// WAL lets readers run beside the writer; NORMAL sync is durable against
	// a crash of netbootd (reconcile repairs links after a power loss);
	// immediate transactions take the write lock up front instead of failing
	// to upgrade a read lock under contention.
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s := &Store{db: db, stmts: map[string]*sql.Stmt{}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = map[string]*sql.Stmt{}
	s.stmtMu.Unlock()
	return s.db.Close()
}

// IntegrityCheck runs SQLite's PRAGMA integrity_check: nil if it says
// ok, else an error wrapping ErrCorrupt with every problem it lists.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return corrupt(err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return corrupt(err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return corrupt(err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("store: integrity check: %w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}

// ErrCorrupt is a database that fails SQLite's integrity check.
var ErrCorrupt = errors.New("database corrupt")

// corrupt is the integrity check's error err: ErrCorrupt too when SQLite
// could not even read the pages it checks (SQLITE_CORRUPT, SQLITE_NOTADB).
func corrupt(err error) error {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		if c := coded.Code() & 0xff; c == 11 || c == 26 {
			return fmt.Errorf("store: integrity check: %w: %w", ErrCorrupt, err)
		}
	}
	return fmt.Errorf("store: integrity check: %w", err)
}

// prepared returns the cached statement for query, preparing it on first
// use; nil when the cache is full or preparing failed (the caller then runs
// the text as it is, and meets the error there).
func (s *Store) prepared(ctx context.Context, query string) *sql.Stmt {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st
	}
	if len(s.stmts) >= maxStmts {
		return nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	s.stmts[query] = st
	return st
}

// exec runs a statement in tx, prepared once.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.prepared(ctx, query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// query runs a query in tx, or outside any transaction if tx is nil,
// prepared once.
func (s *Store) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st := s.prepared(ctx, query)
	switch {
	case st != nil && tx != nil:
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	case st != nil:
		return st.QueryContext(ctx, args...)
	case tx != nil:
		return tx.QueryContext(ctx, query, args...)
	}
	return s.db.QueryContext(ctx, query, args...)
}

// queryRow is query for one row.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.prepared(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}

func (s *Store) migrate(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		case err != nil:
			return fmt.Errorf("migrate: read version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("migrate: database schema %d is newer than this netbootd (%d)", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migrate to %d: %w", i+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	})
}

// scanner is a row being read: *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// scanAll reads every row a query returned with scan, and closes them: the
// package's one row loop. rows and err are the query's results, so that a
// call reads scanAll(s.query(...), scanX). No rows is a nil slice.
func scanAll[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// scanOne reads the one row a lookup returned; what names the lookup in
// its errors, and no row is ErrNotFound.
func scanOne[T any](row *sql.Row, scan func(scanner) (T, error), what string) (T, error) {
	v, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		var zero T
		return zero, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("store: %s: %w", what, err)
	}
	return v, nil
}

// scanInt64 reads a row of one integer.
func scanInt64(r scanner) (v int64, err error) {
	err = r.Scan(&v)
	return v, err
}

// tx runs fn in one transaction, committed only if fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
