package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// RCEnrollment is a node's current Resource Controller enrollment: who it
// said it is, and the secret that authenticates it.
type RCEnrollment struct {
	ID         int64
	HRN        string
	Secret     string // hex
	BootID     string
	Image      string
	Hostname   string
	Info       proto.EnrollRequest // what the RC reported, as it reported it
	Firmware   string              // proto.FirmwareBIOS or FirmwareUEFI; "" unknown
	SecureBoot *bool               // nil unknown
	EnrolledAt time.Time
	LastSeen   time.Time
	// Down is REBOOT or POWEROFF once the RC has acknowledged one (done),
	// at DownAt; "" while it has not. An enrollment ends with its node's
	// next boot, so this holds until the RC enrolls again.
	Down   string
	DownAt time.Time
}

// RCCommand is a command for a node's RC and what became of it.
type RCCommand struct {
	proto.CommandStatus
	Enrollment  int64  // the enrollment it is for
	Timeout     string // EXECUTE
	ImageSHA256 string // LOAD_IMAGE: the image's checksum when queued
	ImageSize   int64  // LOAD_IMAGE: the image's size when queued
	ReportSeq   int64  // the last report applied
}

// RCCommandsPerNode bounds a node's command history: the oldest finished
// commands beyond it are dropped when a command is added.
const RCCommandsPerNode = 200

func secretHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// downFrom finds the enrollment's last acknowledged REBOOT or POWEROFF,
// whose type and end are the last two enrollment columns: derived from
// the commands, so that no write path can forget it
// (rc_commands_enrollment indexes the lookup).
const downFrom = ` FROM rc_commands c WHERE c.enrollment = rc_enrollments.id AND c.state = '` + proto.StateDone +
	`' AND c.type IN ('` + proto.Reboot + `', '` + proto.Poweroff + `') ORDER BY c.id DESC LIMIT 1)`

const enrollmentColumns = `id, hrn, secret, boot_id, image, hostname, info, enrolled_at, last_seen, firmware, secure_boot, ` +
	`(SELECT c.type` + downFrom + `, (SELECT c.finished_at` + downFrom

func scanEnrollment(r scanner) (RCEnrollment, error) {
	var e RCEnrollment
	var info string
	var at, seen int64
	var down sql.NullString
	var downAt sql.NullInt64
	var sb sql.NullBool
	if err := r.Scan(&e.ID, &e.HRN, &e.Secret, &e.BootID, &e.Image, &e.Hostname, &info, &at, &seen, &e.Firmware, &sb, &down, &downAt); err != nil {
		return e, err
	}
	if sb.Valid {
		e.SecureBoot = &sb.Bool
	}
	if down.Valid && downAt.Valid {
		e.Down, e.DownAt = down.String, time.Unix(0, downAt.Int64).UTC()
	}
	if err := json.Unmarshal([]byte(info), &e.Info); err != nil {
		return e, fmt.Errorf("enrollment %d info: %w", e.ID, err)
	}
	e.EnrolledAt, e.LastSeen = time.Unix(0, at).UTC(), time.Unix(0, seen).UTC()
	return e, nil
}

// PutRCEnrollment makes e the node's enrollment, replacing any earlier one,
// and returns it with its new ID. The commands of the earlier enrollment
// are settled in the same transaction: running ones have failed (the RC
// that ran them is gone); queued ones move to the new enrollment if the
// node did not reboot (same non-empty boot ID: only the RC restarted), and
// fail otherwise, since they were meant for a node that is no more. The
// events that record the enrollment on the node's timeline are written in
// the same transaction.
func (s *Store) PutRCEnrollment(ctx context.Context, e RCEnrollment, events ...Event) (RCEnrollment, error) {
	info, err := json.Marshal(e.Info)
	if err != nil {
		return e, fmt.Errorf("store: enrollment info: %w", err)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		prev, err := scanEnrollment(tx.QueryRowContext(ctx, `SELECT `+enrollmentColumns+` FROM rc_enrollments WHERE hrn = ?`, e.HRN))
		hadPrev := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: enrollment of %q: %w", e.HRN, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rc_enrollments WHERE hrn = ?`, e.HRN); err != nil {
			return fmt.Errorf("store: enroll %q: %w", e.HRN, err)
		}
		var sb sql.NullBool
		if e.SecureBoot != nil {
			sb = sql.NullBool{Bool: *e.SecureBoot, Valid: true}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO rc_enrollments(hrn, secret, secret_hash, boot_id, image, hostname, info, enrolled_at, last_seen, firmware, secure_boot)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.HRN, e.Secret, secretHash(e.Secret), e.BootID, e.Image, e.Hostname, string(info),
			e.EnrolledAt.UnixNano(), e.LastSeen.UnixNano(), e.Firmware, sb)
		if err != nil {
			return fmt.Errorf("store: enroll %q: %w", e.HRN, err)
		}
		if e.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: enroll %q: %w", e.HRN, err)
		}
		now := e.EnrolledAt.UnixNano()
		if _, err := tx.ExecContext(ctx, `UPDATE rc_commands SET state = ?, error = ?, updated_at = ?, finished_at = ?
			WHERE hrn = ? AND state = ?`, proto.StateFailed, "lost: the node's RC enrolled again while the command ran (it restarted or the node rebooted)",
			now, now, e.HRN, proto.StateRunning); err != nil {
			return fmt.Errorf("store: enroll %q: settle running commands: %w", e.HRN, err)
		}
		if hadPrev && prev.BootID != "" && prev.BootID == e.BootID {
			_, err = tx.ExecContext(ctx, `UPDATE rc_commands SET enrollment = ?, updated_at = ? WHERE hrn = ? AND state = ?`,
				e.ID, now, e.HRN, proto.StateQueued)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE rc_commands SET state = ?, error = ?, updated_at = ?, finished_at = ?
				WHERE hrn = ? AND state = ?`, proto.StateFailed, "not delivered: the node rebooted and its RC enrolled again before taking the command",
				now, now, e.HRN, proto.StateQueued)
		}
		if err != nil {
			return fmt.Errorf("store: enroll %q: settle queued commands: %w", e.HRN, err)
		}
		for _, ev := range events {
			if err := s.addEvent(ctx, tx, ev); err != nil {
				return fmt.Errorf("store: enroll %q: %w", e.HRN, err)
			}
		}
		return nil
	})
	if err == nil {
		s.notify(events)
	}
	return e, err
}

// RCEnrollment returns a node's current enrollment.
func (s *Store) RCEnrollment(ctx context.Context, hrn string) (RCEnrollment, error) {
	return scanOne(s.db.QueryRowContext(ctx, `SELECT `+enrollmentColumns+` FROM rc_enrollments WHERE hrn = ?`, hrn),
		scanEnrollment, fmt.Sprintf("enrollment of %q", hrn))
}

// RCEnrollmentBySecret returns the enrollment whose secret is secret (an
// RC's bearer token).
func (s *Store) RCEnrollmentBySecret(ctx context.Context, secret string) (RCEnrollment, error) {
	e, err := scanEnrollment(s.db.QueryRowContext(ctx, `SELECT `+enrollmentColumns+` FROM rc_enrollments WHERE secret_hash = ?`, secretHash(secret)))
	if err == nil && subtle.ConstantTimeCompare([]byte(e.Secret), []byte(secret)) != 1 {
		err = sql.ErrNoRows
	}
	if errors.Is(err, sql.ErrNoRows) {
		return RCEnrollment{}, fmt.Errorf("enrollment: %w", ErrNotFound)
	}
	if err != nil {
		return RCEnrollment{}, fmt.Errorf("store: enrollment by secret: %w", err)
	}
	return e, nil
}

// RCEnrollments lists every node's current enrollment, by hrn.
func (s *Store) RCEnrollments(ctx context.Context) ([]RCEnrollment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+enrollmentColumns+` FROM rc_enrollments ORDER BY hrn`)
	out, err := scanAll(rows, err, scanEnrollment)
	if err != nil {
		return nil, fmt.Errorf("store: enrollments: %w", err)
	}
	return out, nil
}

// TouchRCEnrollment records that the enrollment's RC was heard from at at.
func (s *Store) TouchRCEnrollment(ctx context.Context, id int64, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE rc_enrollments SET last_seen = max(last_seen, ?) WHERE id = ?`, at.UnixNano(), id); err != nil {
		return fmt.Errorf("store: touch enrollment %d: %w", id, err)
	}
	return nil
}

const commandColumns = `id, hrn, enrollment, type, command, args, timeout, image, disk, image_sha256, image_size,
	state, reply, exit_code, stdout, stderr, truncated, error, progress_done, progress_total, progress_written,
	progress_skipped, progress_fetched, multicast, sha256, report_seq, created_at, started_at, updated_at, finished_at`

func scanCommand(r scanner) (RCCommand, error) {
	var c RCCommand
	var args string
	var exit, started, finished sql.NullInt64
	var stdout, stderr []byte
	var created, updated int64
	err := r.Scan(&c.ID, &c.HRN, &c.Enrollment, &c.Type, &c.Command, &args, &c.Timeout, &c.Image, &c.Disk, &c.ImageSHA256, &c.ImageSize,
		&c.State, &c.Reply, &exit, &stdout, &stderr, &c.Truncated, &c.Error, &c.Progress.Done, &c.Progress.Total, &c.Progress.Written,
		&c.Progress.Skipped, &c.Progress.Fetched, &c.Multicast, &c.SHA256, &c.ReportSeq, &created, &started, &updated, &finished)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(args), &c.Args); err != nil {
		return c, fmt.Errorf("command %d args: %w", c.ID, err)
	}
	if exit.Valid {
		code := int(exit.Int64)
		c.ExitCode = &code
	}
	c.Stdout, c.Stderr = string(stdout), string(stderr)
	c.CreatedAt, c.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	c.StartedAt, c.FinishedAt = optTime(started), optTime(finished)
	return c, nil
}

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.Unix(0, v.Int64).UTC()
	return &t
}

// AddRCCommand queues a command (its State is set to queued) and returns
// it with its ID. The node's oldest finished commands beyond
// RCCommandsPerNode are dropped.
func (s *Store) AddRCCommand(ctx context.Context, c RCCommand) (RCCommand, error) {
	args, err := json.Marshal(c.Args)
	if err != nil {
		return c, fmt.Errorf("store: command args: %w", err)
	}
	if c.Args == nil {
		args = []byte("[]")
	}
	c.State = proto.StateQueued
	c.UpdatedAt = c.CreatedAt
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO rc_commands(hrn, enrollment, type, command, args, timeout, image, disk,
			image_sha256, image_size, multicast, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.HRN, c.Enrollment, c.Type, c.Command, string(args), c.Timeout, c.Image, c.Disk, c.ImageSHA256, c.ImageSize,
			c.Multicast, c.State, c.CreatedAt.UnixNano(), c.UpdatedAt.UnixNano())
		if err != nil {
			return fmt.Errorf("store: add command for %q: %w", c.HRN, err)
		}
		if c.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: add command for %q: %w", c.HRN, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rc_commands WHERE hrn = ? AND state IN (?, ?, ?) AND id <
			(SELECT id FROM rc_commands WHERE hrn = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
			c.HRN, proto.StateDone, proto.StateFailed, proto.StateRefused, c.HRN, RCCommandsPerNode-1); err != nil {
			return fmt.Errorf("store: trim commands of %q: %w", c.HRN, err)
		}
		return nil
	})
	return c, err
}

// RCCommand returns one command.
func (s *Store) RCCommand(ctx context.Context, id int64) (RCCommand, error) {
	return scanOne(s.db.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM rc_commands WHERE id = ?`, id),
		scanCommand, fmt.Sprintf("command %d", id))
}

// RCCommands lists a node's commands, newest first, at most limit.
func (s *Store) RCCommands(ctx context.Context, hrn string, limit int) ([]RCCommand, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+commandColumns+` FROM rc_commands WHERE hrn = ? ORDER BY id DESC LIMIT ?`, hrn, limit)
	out, err := scanAll(rows, err, scanCommand)
	if err != nil {
		return nil, fmt.Errorf("store: commands of %q: %w", hrn, err)
	}
	return out, nil
}

// TakeRCCommand hands out the enrollment's oldest queued command: it is
// running from now on. ErrNotFound if none is queued.
func (s *Store) TakeRCCommand(ctx context.Context, enrollment int64, at time.Time) (RCCommand, error) {
	var c RCCommand
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = scanCommand(tx.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM rc_commands
			WHERE enrollment = ? AND state = ? ORDER BY id LIMIT 1`, enrollment, proto.StateQueued))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("queued command of enrollment %d: %w", enrollment, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: take command: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE rc_commands SET state = ?, started_at = ?, updated_at = ? WHERE id = ?`,
			proto.StateRunning, at.UnixNano(), at.UnixNano(), c.ID); err != nil {
			return fmt.Errorf("store: take command %d: %w", c.ID, err)
		}
		c.State, c.StartedAt, c.UpdatedAt = proto.StateRunning, &at, at
		return nil
	})
	return c, err
}

// RunningRCCommand returns enrollment's running command of type typ that
// names image: what admits its RC to that disk image. ErrNotFound if none.
func (s *Store) RunningRCCommand(ctx context.Context, enrollment int64, typ, image string) (RCCommand, error) {
	return scanOne(s.db.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM rc_commands
		WHERE enrollment = ? AND state = ? AND type = ? AND image = ? ORDER BY id LIMIT 1`,
		enrollment, proto.StateRunning, typ, image), scanCommand, fmt.Sprintf("running %s of %q for enrollment %d", typ, image, enrollment))
}

// ReportRCCommand applies an RC's report on command id, which must be of
// enrollment (else ErrNotFound). A report whose Seq was applied already is
// a retry and changes nothing; one for a command that is over is
// ErrConflict. Output is appended up to maxOutput bytes per stream; the
// rest is dropped and the command marked truncated.
func (s *Store) ReportRCCommand(ctx context.Context, id, enrollment int64, r proto.Report, maxOutput int, at time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var state string
		var enr, seq int64
		var stdout, stderr []byte
		var truncated bool
		err := tx.QueryRowContext(ctx, `SELECT state, enrollment, report_seq, stdout, stderr, truncated FROM rc_commands WHERE id = ?`, id).
			Scan(&state, &enr, &seq, &stdout, &stderr, &truncated)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && enr != enrollment) {
			return fmt.Errorf("command %d of enrollment %d: %w", id, enrollment, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: report on command %d: %w", id, err)
		}
		if r.Seq <= seq {
			return nil
		}
		if state != proto.StateRunning {
			return fmt.Errorf("command %d is %s: %w", id, state, ErrConflict)
		}
		switch r.State {
		case "":
			r.State = state
		case proto.StateRunning, proto.StateDone, proto.StateFailed, proto.StateRefused:
		default:
			return fmt.Errorf("command %d: report state %q: %w", id, r.State, ErrInvalidReport)
		}
		stdout, t1 := appendBounded(stdout, r.Stdout, maxOutput)
		stderr, t2 := appendBounded(stderr, r.Stderr, maxOutput)
		var exit any
		if r.ExitCode != nil {
			exit = *r.ExitCode
		}
		var finished any
		if proto.Terminal(r.State) {
			finished = at.UnixNano()
		}
		q := `UPDATE rc_commands SET state = ?, stdout = ?, stderr = ?, truncated = ?, report_seq = ?, updated_at = ?,
			finished_at = coalesce(?, finished_at), exit_code = coalesce(?, exit_code)`
		args := []any{r.State, stdout, stderr, truncated || t1 || t2, r.Seq, at.UnixNano(), finished, exit}
		set := func(col string, v any) {
			q += ", " + col + " = ?"
			args = append(args, v)
		}
		if r.Reply != "" {
			set("reply", r.Reply)
		}
		if r.Error != "" {
			set("error", r.Error)
		}
		if r.SHA256 != "" {
			set("sha256", r.SHA256)
		}
		if p := r.Progress; p != nil {
			set("progress_done", p.Done)
			set("progress_total", p.Total)
			set("progress_written", p.Written)
			set("progress_skipped", p.Skipped)
			set("progress_fetched", p.Fetched)
		}
		if _, err := tx.ExecContext(ctx, q+` WHERE id = ?`, append(args, id)...); err != nil {
			return fmt.Errorf("store: report on command %d: %w", id, err)
		}
		return nil
	})
}

// ErrInvalidReport is returned for a report that makes no sense.
var ErrInvalidReport = errors.New("invalid report")

func appendBounded(b, more []byte, max int) ([]byte, bool) {
	if b == nil {
		b = []byte{}
	}
	if len(b)+len(more) <= max {
		return append(b, more...), false
	}
	return append(b, more[:max-min(len(b), max)]...), len(more) > 0
}

// FailLostRCCommands fails the enrollment's running commands other than
// keep (the ones its RC says it is running): they were lost on the way to
// the RC, or the RC restarted. It returns how many it failed.
func (s *Store) FailLostRCCommands(ctx context.Context, enrollment int64, keep []int64, at time.Time) (int64, error) {
	q := `UPDATE rc_commands SET state = ?, error = ?, updated_at = ?, finished_at = ? WHERE enrollment = ? AND state = ?`
	args := []any{proto.StateFailed, "lost: the RC is not running this command (lost on the way, or the RC restarted)",
		at.UnixNano(), at.UnixNano(), enrollment, proto.StateRunning}
	if len(keep) > 0 {
		q += ` AND id NOT IN (` + marks(len(keep)) + `)`
		for _, id := range keep {
			args = append(args, id)
		}
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("store: fail lost commands of enrollment %d: %w", enrollment, err)
	}
	return res.RowsAffected()
}

// FailSilentRCCommands fails the running commands of every enrollment not
// heard from since before: its RC went away mid-command (the node lost
// power or its network). It returns the commands it failed.
func (s *Store) FailSilentRCCommands(ctx context.Context, before, at time.Time) ([]int64, error) {
	var ids []int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT c.id FROM rc_commands c JOIN rc_enrollments e ON e.id = c.enrollment
			WHERE c.state = ? AND e.last_seen < ?`, proto.StateRunning, before.UnixNano())
		ids, err = scanAll(rows, err, scanInt64)
		if err != nil {
			return fmt.Errorf("store: silent commands: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		args := []any{proto.StateFailed, "lost: the RC stopped polling while the command ran (since " + before.UTC().Format(time.RFC3339) + ")",
			at.UnixNano(), at.UnixNano()}
		for _, id := range ids {
			args = append(args, id)
		}
		_, err = tx.ExecContext(ctx, `UPDATE rc_commands SET state = ?, error = ?, updated_at = ?, finished_at = ?
			WHERE id IN (`+marks(len(ids))+`)`, args...)
		if err != nil {
			return fmt.Errorf("store: fail silent commands: %w", err)
		}
		return nil
	})
	return ids, err
}

// ActiveRCCommands lists every node's commands that are queued or running,
// oldest first: the loads in progress, with their progress.
func (s *Store) ActiveRCCommands(ctx context.Context) ([]RCCommand, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+commandColumns+` FROM rc_commands WHERE state IN (?, ?) ORDER BY id`,
		proto.StateQueued, proto.StateRunning)
	out, err := scanAll(rows, err, scanCommand)
	if err != nil {
		return nil, fmt.Errorf("store: active commands: %w", err)
	}
	return out, nil
}
