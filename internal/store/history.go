package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// Worker history: table worker_minutes holds one row per worker and
// minute with the accepted shares (and their work) and the rejected
// ones. The writer adds a batch's rows in the transaction of its share
// segment, so the rollup is durable exactly when its shares are; rejects
// (CountReject) ride along with the next commit. Rows older than the
// retention (SetHistoryRetention) are deleted by the writer, at most
// every pruneEvery.

const historySchema = `
CREATE TABLE IF NOT EXISTS worker_minutes (
	worker   TEXT    NOT NULL,
	minute   INTEGER NOT NULL,
	account  TEXT    NOT NULL,
	accepted INTEGER NOT NULL,
	rejected INTEGER NOT NULL,
	work     REAL    NOT NULL,
	last     INTEGER NOT NULL,
	PRIMARY KEY (worker, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS worker_minutes_minute ON worker_minutes(minute);
CREATE INDEX IF NOT EXISTS worker_minutes_account ON worker_minutes(account, minute);
`

// upsertMinute adds one rollup row to the table.
const upsertMinute = `INSERT INTO worker_minutes (worker, minute, account, accepted, rejected, work, last)
	VALUES (?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (worker, minute) DO UPDATE SET
		accepted = accepted + excluded.accepted,
		rejected = rejected + excluded.rejected,
		work = work + excluded.work,
		last = max(last, excluded.last)`

// pruneEvery is how often the writer deletes rollup rows past the
// retention, at most.
const pruneEvery = 10 * time.Minute

// SetHistoryRetention sets how long per-minute worker rollups are kept
// (ledger.DefaultHistoryRetention until called); it must be at least
// ledger.MinHistoryRetention.
func (s *Store) SetHistoryRetention(d time.Duration) error {
	if d < ledger.MinHistoryRetention {
		return fmt.Errorf("store: worker history retention %v: must be at least %v", d, ledger.MinHistoryRetention)
	}
	s.retention.Store(int64(d))
	return nil
}

func (s *Store) historyRetention() time.Duration { return time.Duration(s.retention.Load()) }

// hasHistoryTable reports whether w's database already has the rollup
// table (a database without it gets its shares of the retention span
// rolled up once at Open: backfillHistory).
func hasHistoryTable(w *sql.DB) (bool, error) {
	var n int
	err := w.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'worker_minutes'`).Scan(&n)
	return n > 0, err
}

// backfillHistory rolls up the shares of the last retention span of a
// ledger written before the rollup table existed, in one transaction.
func (s *Store) backfillHistory() error {
	since := time.Now().Add(-s.historyRetention())
	stop := since.Add(-timeSkew)
	var r ledger.Rollup
	if _, err := s.scanNewest(context.Background(), func(sh *Share) bool {
		if sh.Time.Before(since) {
			return !sh.Time.Before(stop)
		}
		r.Share(sh)
		return true
	}); err != nil {
		return fmt.Errorf("roll up the worker history: %w", err)
	}
	if r.Len() == 0 {
		return nil
	}
	tx, err := s.w.Begin()
	if err != nil {
		return fmt.Errorf("roll up the worker history: %w", err)
	}
	defer tx.Rollback()
	if err := addMinutes(tx.Stmt(s.insMinute), r.Rows()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("roll up the worker history: %w", err)
	}
	return nil
}

// addMinutes adds rows to worker_minutes through the prepared upsert.
func addMinutes(st *sql.Stmt, rows []ledger.WorkerMinute) error {
	for _, m := range rows {
		var last int64
		if !m.Last.IsZero() {
			last = m.Last.UnixNano()
		}
		if _, err := st.Exec(m.Worker, m.Minute.Unix(), ledger.AccountOf(m.Worker), m.Accepted, m.Rejected, m.Work, last); err != nil {
			return fmt.Errorf("store: add the minute %s of worker %q to the history: %w", m.Minute.Format(time.RFC3339), m.Worker, err)
		}
	}
	return nil
}

// CountReject counts one share of worker refused at at into the worker
// history. It never blocks: the count waits in memory and is written
// with the writer's next commit (at once when no shares are waiting).
// A count not yet written when the process dies is lost; a refused
// share is never durable anywhere else either.
func (s *Store) CountReject(worker string, at time.Time) {
	if worker == "" {
		return
	}
	s.rejMu.Lock()
	s.rejects.Reject(worker, at, 1)
	s.rejMu.Unlock()
	if !s.wakePending.CompareAndSwap(false, true) {
		return // a wake-up is already queued: a flood of rejects costs one
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	select {
	case s.reqs <- shareReq{wake: true}:
	default:
		// A full queue: a commit is coming anyway and takes the count.
		s.wakePending.Store(false)
	}
}

// takeRejects moves the waiting reject counts into r.
func (s *Store) takeRejects(r *ledger.Rollup) {
	s.wakePending.Store(false)
	s.rejMu.Lock()
	defer s.rejMu.Unlock()
	for _, m := range s.rejects.Rows() {
		r.Reject(m.Worker, m.Minute, m.Rejected)
	}
	s.rejects.Reset()
}

// putBackRejects returns the reject counts of a failed commit to the
// waiting ones.
func (s *Store) putBackRejects(r *ledger.Rollup) {
	s.rejMu.Lock()
	defer s.rejMu.Unlock()
	for _, m := range r.Rows() {
		if m.Rejected > 0 {
			s.rejects.Reject(m.Worker, m.Minute, m.Rejected)
		}
	}
}

// pruneHistory deletes the rollup rows past the retention, at most once
// per pruneEvery; the writer calls it between commits.
func (s *Store) pruneHistory(now time.Time) {
	if now.Sub(s.pruned) < pruneEvery {
		return
	}
	s.pruned = now
	cut := ledger.Minute(now.Add(-s.historyRetention())).Unix()
	// A failed delete leaves old rows for the next attempt: nothing
	// reads past the retention, so they cost only space.
	s.w.Exec(`DELETE FROM worker_minutes WHERE minute < ?`, cut)
}

// WorkerMinutes returns the per-minute rollups of worker ("" for every
// worker) from the minute holding since on, by minute then worker.
func (s *Store) WorkerMinutes(ctx context.Context, worker string, since time.Time) ([]ledger.WorkerMinute, error) {
	q := `SELECT worker, minute, accepted, rejected, work, last FROM worker_minutes WHERE minute >= ?`
	args := []any{ledger.Minute(since).Unix()}
	if worker != "" {
		q += ` AND worker = ?`
		args = append(args, worker)
	}
	return s.readMinutes(ctx, q+` ORDER BY minute, worker`, worker, args...)
}

// AccountMinutes returns the per-minute rollups of every worker of
// account (ledger.AccountOf) summed per minute, from the minute holding
// since on, oldest first; Worker is the account.
func (s *Store) AccountMinutes(ctx context.Context, account string, since time.Time) ([]ledger.WorkerMinute, error) {
	return s.readMinutes(ctx, `SELECT account, minute, SUM(accepted), SUM(rejected), SUM(work), MAX(last) FROM worker_minutes
		WHERE account = ? AND minute >= ? GROUP BY minute ORDER BY minute`, account, account, ledger.Minute(since).Unix())
}

func (s *Store) readMinutes(ctx context.Context, q, name string, args ...any) ([]ledger.WorkerMinute, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: read the worker history of %q: %w", name, err)
	}
	defer rows.Close()
	var out []ledger.WorkerMinute
	for rows.Next() {
		var (
			m            ledger.WorkerMinute
			minute, last int64
		)
		if err := rows.Scan(&m.Worker, &minute, &m.Accepted, &m.Rejected, &m.Work, &last); err != nil {
			return nil, fmt.Errorf("store: read the worker history of %q: %w", name, err)
		}
		m.Minute = time.Unix(minute, 0).UTC()
		if last != 0 {
			m.Last = time.Unix(0, last)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read the worker history of %q: %w", name, err)
	}
	return out, nil
}

// workerStatsFromHistory is WorkerStats for a since on a minute
// boundary: the rollup rows from its minute on hold exactly the shares
// at or after it.
func (s *Store) workerStatsFromHistory(ctx context.Context, since time.Time) ([]ledger.WorkerStat, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	rows, err := s.r.QueryContext(ctx, `SELECT worker, SUM(accepted), SUM(work), MAX(last) FROM worker_minutes
		WHERE minute >= ? AND accepted > 0 GROUP BY worker ORDER BY worker`, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("store: workers since %s: %w", since.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := []ledger.WorkerStat{}
	for rows.Next() {
		var (
			w    ledger.WorkerStat
			last int64
		)
		if err := rows.Scan(&w.Worker, &w.Shares, &w.Work, &last); err != nil {
			return nil, fmt.Errorf("store: workers since %s: %w", since.Format(time.RFC3339), err)
		}
		w.Last = time.Unix(0, last)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: workers since %s: %w", since.Format(time.RFC3339), err)
	}
	return out, nil
}
