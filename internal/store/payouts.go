package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Payouts: every found block's coinbase outputs, and for a PPLNS block the
// basis they were computed from (the ledger position the window ends at
// and its size), so that anyone holding the ledger can recompute them
// (docs/payouts.md).
const payoutSchema = `
CREATE TABLE IF NOT EXISTS payout_blocks (
	hash    BLOB    PRIMARY KEY,
	height  INTEGER NOT NULL,
	mode    TEXT    NOT NULL,
	cutoff  INTEGER NOT NULL,
	window  TEXT    NOT NULL,
	value   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payouts (
	hash    BLOB    NOT NULL,
	idx     INTEGER NOT NULL,
	script  BLOB    NOT NULL,
	amount  INTEGER NOT NULL,
	work    TEXT    NOT NULL,
	fee     INTEGER NOT NULL,
	label   TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (hash, idx)
);
CREATE INDEX IF NOT EXISTS payouts_script ON payouts(script);
`

// PayoutRecord is the ledger's record of what a found block pays
// (internal/ledger); Cutoff counts the store's shares (ScanRecentShares).
type PayoutRecord = ledger.PayoutRecord

// PayoutOutput is the ledger's paying output (internal/ledger).
type PayoutOutput = ledger.PayoutOutput

// RecordPayouts stores rec durably; recording a block again changes
// nothing.
func (s *Store) RecordPayouts(ctx context.Context, rec PayoutRecord) error {
	if s.isClosed() {
		return ErrClosed
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: record payouts of %s: %w", rec.Hash, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO payout_blocks (hash, height, mode, cutoff, window, value, rules) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (hash) DO NOTHING`, rec.Hash[:], rec.Height, rec.Mode, rec.Cutoff, rec.Window, rec.Value, rec.Rules)
	if err != nil {
		return fmt.Errorf("store: record payouts of %s: %w", rec.Hash, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // already recorded
	}
	for i, o := range rec.Outputs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO payouts (hash, idx, script, amount, work, fee, label) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			rec.Hash[:], i, o.Script, o.Amount, o.Work, o.Fee, o.Label); err != nil {
			return fmt.Errorf("store: record payout %d of %s: %w", i, rec.Hash, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: record payouts of %s: %w", rec.Hash, err)
	}
	return nil
}

// BlockPayouts returns the payout record of the found block hash, or ok
// false.
func (s *Store) BlockPayouts(ctx context.Context, hash chainmath.Hash) (rec PayoutRecord, ok bool, err error) {
	if s.isClosed() {
		return rec, false, ErrClosed
	}
	err = s.r.QueryRowContext(ctx, `SELECT height, mode, cutoff, window, value, rules FROM payout_blocks WHERE hash = ?`, hash[:]).
		Scan(&rec.Height, &rec.Mode, &rec.Cutoff, &rec.Window, &rec.Value, &rec.Rules)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("store: read payouts of %s: %w", hash, err)
	}
	rec.Hash = hash
	rows, err := s.r.QueryContext(ctx, `SELECT script, amount, work, fee, label FROM payouts WHERE hash = ? ORDER BY idx`, hash[:])
	if err != nil {
		return rec, false, fmt.Errorf("store: read payouts of %s: %w", hash, err)
	}
	defer rows.Close()
	for rows.Next() {
		var o PayoutOutput
		if err := rows.Scan(&o.Script, &o.Amount, &o.Work, &o.Fee, &o.Label); err != nil {
			return rec, false, fmt.Errorf("store: read payout of %s: %w", hash, err)
		}
		rec.Outputs = append(rec.Outputs, o)
	}
	if err := rows.Err(); err != nil {
		return rec, false, fmt.Errorf("store: read payouts of %s: %w", hash, err)
	}
	return rec, true, nil
}

// ScriptPayout is one block's payment to one output script
// (internal/ledger).
type ScriptPayout = ledger.ScriptPayout

// ScriptPayouts returns every found block's payment to script or to a
// miner with payout label label (when not empty), oldest first, with the
// block's state: only FoundAccepted ones were paid.
func (s *Store) ScriptPayouts(ctx context.Context, script []byte, label string) ([]ScriptPayout, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	rows, err := s.r.QueryContext(ctx, `SELECT b.height, p.hash, SUM(p.amount), COALESCE(f.state, '')
		FROM payouts p JOIN payout_blocks b ON b.hash = p.hash LEFT JOIN found_blocks f ON f.hash = p.hash
		WHERE p.fee = 0 AND (p.script = ? OR (? <> '' AND p.label = ?)) GROUP BY p.hash ORDER BY b.height, p.hash`, script, label, label)
	if err != nil {
		return nil, fmt.Errorf("store: query payouts to %x: %w", script, err)
	}
	defer rows.Close()
	var out []ScriptPayout
	for rows.Next() {
		var p ScriptPayout
		var h []byte
		if err := rows.Scan(&p.Height, &h, &p.Amount, &p.State); err != nil {
			return nil, fmt.Errorf("store: read payout to %x: %w", script, err)
		}
		copy(p.Hash[:], h)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read payouts to %x: %w", script, err)
	}
	return out, nil
}

// ScanRecentShares walks the ledger from the newest share to the oldest,
// calling fn with each share's worker and difficulty until fn returns
// false or the ledger is exhausted. It returns the cutoff: the number of
// shares in the ledger snapshot it walked (the newest share is share
// number cutoff, counting from 1 in the order Shares returns them), so
// that the same walk can be repeated later on Shares()[:cutoff].
func (s *Store) ScanRecentShares(ctx context.Context, fn func(worker string, difficulty float64) bool) (cutoff int64, err error) {
	return s.scanNewest(ctx, func(sh *Share) bool { return fn(sh.Worker, sh.Difficulty) })
}

// scanNewest walks one snapshot of the ledger from the newest share to
// the oldest, calling fn with each share (only Time, Worker and
// Difficulty are set for the rows of the legacy table) until fn returns
// false or the ledger is exhausted; it returns the snapshot's share
// count (ScanRecentShares). Segments are read and decoded one at a time,
// so a walk that stops early reads only the segments it reached.
func (s *Store) scanNewest(ctx context.Context, fn func(sh *Share) bool) (cutoff int64, err error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("store: scan recent shares: %w", err)
	}
	defer tx.Rollback()
	var legacy int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM shares`).Scan(&legacy); err != nil {
		return 0, fmt.Errorf("store: scan recent shares: %w", err)
	}
	var top sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT seq_end FROM share_segments ORDER BY id DESC LIMIT 1`).Scan(&top); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: scan recent shares: %w", err)
	}
	cutoff = legacy
	if top.Valid {
		cutoff = top.Int64
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, count, data FROM share_segments ORDER BY id DESC`)
	if err != nil {
		return 0, fmt.Errorf("store: scan recent shares: %w", err)
	}
	defer rows.Close()
	var buf []Share
	for rows.Next() {
		var id, count int64
		var data []byte
		if err := rows.Scan(&id, &count, &data); err != nil {
			return 0, fmt.Errorf("store: read share segment: %w", err)
		}
		var n int
		buf, n, err = decodeSegment(buf[:0], data, "")
		if err != nil {
			return 0, fmt.Errorf("store: share segment %d: %w", id, err)
		}
		if int64(n) != count {
			return 0, fmt.Errorf("store: share segment %d holds %d shares, its count says %d", id, n, count)
		}
		for i := len(buf) - 1; i >= 0; i-- {
			if !fn(&buf[i]) {
				return cutoff, nil
			}
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: read share segments: %w", err)
	}
	rows.Close()
	lrows, err := tx.QueryContext(ctx, `SELECT time, worker, difficulty FROM shares ORDER BY id DESC`)
	if err != nil {
		return 0, fmt.Errorf("store: scan recent shares: %w", err)
	}
	defer lrows.Close()
	for lrows.Next() {
		var sh Share
		var tm int64
		if err := lrows.Scan(&tm, &sh.Worker, &sh.Difficulty); err != nil {
			return 0, fmt.Errorf("store: read share: %w", err)
		}
		sh.Time = time.Unix(0, tm)
		if !fn(&sh) {
			return cutoff, nil
		}
	}
	if err := lrows.Err(); err != nil {
		return 0, fmt.Errorf("store: read shares: %w", err)
	}
	return cutoff, nil
}

// WindowShares calls fn with each share numbered at most cutoff (the
// numbering of ScanRecentShares: the ledger's shares counted from 1),
// from the newest to the oldest, until fn returns false: the shares a
// PPLNS block's window was taken from (payout.WriteWindow). Only Time,
// Worker and Difficulty are set for the rows of the legacy table.
func (s *Store) WindowShares(ctx context.Context, cutoff int64, fn func(id int64, sh *Share) bool) error {
	if s.isClosed() {
		return ErrClosed
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("store: window shares up to %d: %w", cutoff, err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, count, seq_end, data FROM share_segments WHERE seq_end - count < ? ORDER BY id DESC`, cutoff)
	if err != nil {
		return fmt.Errorf("store: window shares up to %d: %w", cutoff, err)
	}
	defer rows.Close()
	var buf []Share
	for rows.Next() {
		var id, count, end int64
		var data []byte
		if err := rows.Scan(&id, &count, &end, &data); err != nil {
			return fmt.Errorf("store: read share segment: %w", err)
		}
		var n int
		buf, n, err = decodeSegment(buf[:0], data, "")
		if err != nil {
			return fmt.Errorf("store: share segment %d: %w", id, err)
		}
		if int64(n) != count {
			return fmt.Errorf("store: share segment %d holds %d shares, its count says %d", id, n, count)
		}
		for i := len(buf) - 1; i >= 0; i-- {
			pos := end - int64(len(buf)-1-i)
			if pos > cutoff {
				continue
			}
			if !fn(pos, &buf[i]) {
				return nil
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read share segments: %w", err)
	}
	rows.Close()
	var pos int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM shares`).Scan(&pos); err != nil {
		return fmt.Errorf("store: window shares up to %d: %w", cutoff, err)
	}
	lrows, err := tx.QueryContext(ctx, `SELECT time, worker, difficulty FROM shares ORDER BY id DESC`)
	if err != nil {
		return fmt.Errorf("store: window shares up to %d: %w", cutoff, err)
	}
	defer lrows.Close()
	for ; lrows.Next(); pos-- {
		if pos > cutoff {
			continue
		}
		var sh Share
		var tm int64
		if err := lrows.Scan(&tm, &sh.Worker, &sh.Difficulty); err != nil {
			return fmt.Errorf("store: read share: %w", err)
		}
		sh.Time = time.Unix(0, tm)
		if !fn(pos, &sh) {
			return nil
		}
	}
	if err := lrows.Err(); err != nil {
		return fmt.Errorf("store: read shares: %w", err)
	}
	return nil
}

// migratePayoutRules gives payout_blocks its rules column (the PPLNS
// rules a block was paid under; empty for blocks recorded before it).
func migratePayoutRules(w *sql.DB) error {
	var has int
	if err := w.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('payout_blocks') WHERE name = 'rules'`).Scan(&has); err != nil {
		return err
	}
	if has == 0 {
		if _, err := w.Exec(`ALTER TABLE payout_blocks ADD COLUMN rules TEXT NOT NULL DEFAULT ''`); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			return err
		}
	}
	return nil
}

// migrateSeqEnd gives share_segments its seq_end column (the number of
// ledger shares up to and including the segment) and fills it in for
// segments written before it existed; it returns the ledger's share count.
func migrateSeqEnd(w *sql.DB) (int64, error) {
	var has int
	if err := w.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('share_segments') WHERE name = 'seq_end'`).Scan(&has); err != nil {
		return 0, err
	}
	if has == 0 {
		if _, err := w.Exec(`ALTER TABLE share_segments ADD COLUMN seq_end INTEGER`); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			return 0, err
		}
	}
	if _, err := w.Exec(`UPDATE share_segments SET seq_end = c.cum
		FROM (SELECT id, (SELECT COUNT(*) FROM shares) + SUM(count) OVER (ORDER BY id) AS cum FROM share_segments) AS c
		WHERE share_segments.id = c.id AND share_segments.seq_end IS NULL`); err != nil {
		return 0, err
	}
	var total int64
	if err := w.QueryRow(`SELECT COALESCE((SELECT seq_end FROM share_segments ORDER BY id DESC LIMIT 1), (SELECT COUNT(*) FROM shares))`).Scan(&total); err != nil {
		return 0, err
	}
	return total, nil
}
