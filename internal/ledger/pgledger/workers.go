package pgledger

import (
	"context"
	"fmt"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// WorkerStats returns, sorted by worker, every worker with a share whose
// time is at or after since: how many shares, the work they prove, and
// the newest share's time. Every front-end's shares count: it is the
// cluster's per-worker view, read where the ledger writers store them
// (the BRIN index on time keeps a recent span cheap to read).
//
// A since on a minute boundary within the worker history's retention is
// read from the per-minute rollups instead (history.go).
func (l *Ledger) WorkerStats(ctx context.Context, since time.Time) ([]ledger.WorkerStat, error) {
	if since.Equal(since.Truncate(time.Minute)) && time.Since(since) < time.Duration(l.hist.retention.Load()) {
		return l.workerStatsFromHistory(ctx, since)
	}
	rows, err := l.pool.Query(ctx, `SELECT worker, count(*), sum(difficulty), max(time) FROM shares
		WHERE time >= $1 GROUP BY worker ORDER BY worker`, since)
	if err != nil {
		return nil, fmt.Errorf("pgledger: workers since %s in %s: %w", since.Format(time.RFC3339Nano), l.url, err)
	}
	defer rows.Close()
	var out []ledger.WorkerStat
	for rows.Next() {
		var w ledger.WorkerStat
		if err := rows.Scan(&w.Worker, &w.Shares, &w.Work, &w.Last); err != nil {
			return nil, fmt.Errorf("pgledger: reading workers since %s: %w", since.Format(time.RFC3339Nano), err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: reading workers since %s: %w", since.Format(time.RFC3339Nano), err)
	}
	return out, nil
}
