package pgledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Worker history: table worker_minutes, one row per worker and minute
// (Unix seconds of its start): the accepted shares stored, their work
// and the newest one's time. Record adds the shares it inserts in the
// statement that inserts them (a redelivered share is not inserted, so
// not counted twice). Rejected shares are not carried by the cluster's
// share log, so rejected stays 0 here (docs/ledger.md).

// upsertMinutes rolls the rows of the CTE ins (worker, time, difficulty
// of the shares just inserted) into worker_minutes.
const upsertMinutes = `INSERT INTO worker_minutes (worker, minute, account, accepted, rejected, work, last)
		SELECT worker, (floor(extract(epoch FROM time) / 60) * 60)::bigint AS m, split_part(worker, '.', 1),
			count(*), 0, sum(difficulty), max(time)
		FROM ins GROUP BY worker, m
		ON CONFLICT (worker, minute) DO UPDATE SET
			accepted = worker_minutes.accepted + excluded.accepted,
			work = worker_minutes.work + excluded.work,
			last = greatest(worker_minutes.last, excluded.last)`

// pruneEvery is how often Record deletes rollup rows past the
// retention, at most.
const pruneEvery = 10 * time.Minute

type history struct {
	retention atomic.Int64 // nanoseconds
	mu        sync.Mutex   // guards pruned
	pruned    time.Time
}

// SetHistoryRetention sets how long the worker history is kept
// (ledger.DefaultHistoryRetention until called); at least
// ledger.MinHistoryRetention.
func (l *Ledger) SetHistoryRetention(d time.Duration) error {
	if d < ledger.MinHistoryRetention {
		return fmt.Errorf("pgledger: worker history retention %v: must be at least %v", d, ledger.MinHistoryRetention)
	}
	l.hist.retention.Store(int64(d))
	return nil
}

// pruneHistory deletes the rows past the retention, at most once per
// pruneEvery (across the ledger's callers). A failed delete is tried
// again next time: nothing reads past the retention.
func (l *Ledger) pruneHistory(ctx context.Context) {
	now := time.Now()
	l.hist.mu.Lock()
	if now.Sub(l.hist.pruned) < pruneEvery {
		l.hist.mu.Unlock()
		return
	}
	l.hist.pruned = now
	l.hist.mu.Unlock()
	cut := ledger.Minute(now.Add(-time.Duration(l.hist.retention.Load()))).Unix()
	l.pool.Exec(ctx, `DELETE FROM worker_minutes WHERE minute < $1`, cut)
}

// WorkerMinutes returns the per-minute rollups of worker ("" for every
// worker) from the minute holding since on, by minute then worker.
func (l *Ledger) WorkerMinutes(ctx context.Context, worker string, since time.Time) ([]ledger.WorkerMinute, error) {
	q := `SELECT worker, minute, accepted, rejected, work, last FROM worker_minutes WHERE minute >= $1`
	args := []any{ledger.Minute(since).Unix()}
	if worker != "" {
		q += ` AND worker = $2`
		args = append(args, worker)
	}
	return l.readMinutes(ctx, q+` ORDER BY minute, worker`, worker, args...)
}

// AccountMinutes returns the per-minute rollups of every worker of
// account (ledger.AccountOf) summed per minute, from the minute holding
// since on, oldest first; Worker is the account.
func (l *Ledger) AccountMinutes(ctx context.Context, account string, since time.Time) ([]ledger.WorkerMinute, error) {
	return l.readMinutes(ctx, `SELECT account, minute, sum(accepted)::bigint, sum(rejected)::bigint, sum(work), max(last)
		FROM worker_minutes WHERE account = $1 AND minute >= $2 GROUP BY account, minute ORDER BY minute`,
		account, account, ledger.Minute(since).Unix())
}

func (l *Ledger) readMinutes(ctx context.Context, q, name string, args ...any) ([]ledger.WorkerMinute, error) {
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgledger: reading the worker history of %q in %s: %w", name, l.url, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledger.WorkerMinute, error) {
		var (
			m      ledger.WorkerMinute
			minute int64
			last   *time.Time
		)
		err := r.Scan(&m.Worker, &minute, &m.Accepted, &m.Rejected, &m.Work, &last)
		m.Minute = time.Unix(minute, 0).UTC()
		if last != nil {
			m.Last = *last
		}
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgledger: reading the worker history of %q in %s: %w", name, l.url, err)
	}
	return out, nil
}

// workerStatsFromHistory is WorkerStats for a since on a minute
// boundary: the rollup rows from its minute on hold exactly the shares
// at or after it.
func (l *Ledger) workerStatsFromHistory(ctx context.Context, since time.Time) ([]ledger.WorkerStat, error) {
	rows, err := l.pool.Query(ctx, `SELECT worker, sum(accepted)::bigint, sum(work), max(last) FROM worker_minutes
		WHERE minute >= $1 AND accepted > 0 GROUP BY worker ORDER BY worker`, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("pgledger: workers since %s in %s: %w", since.Format(time.RFC3339), l.url, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledger.WorkerStat, error) {
		var w ledger.WorkerStat
		err := r.Scan(&w.Worker, &w.Shares, &w.Work, &w.Last)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgledger: reading workers since %s in %s: %w", since.Format(time.RFC3339), l.url, err)
	}
	return out, nil
}
