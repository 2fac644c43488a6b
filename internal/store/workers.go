package store

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// timeSkew is how far the ledger's order may stray from its shares'
// times: shares are stored in the order they reach the writer, a few
// milliseconds at most after the time each was accepted, so a walk from
// the newest share that has passed a share older than since by timeSkew
// has passed every share at or after since.
const timeSkew = time.Minute

// WorkerStats returns, sorted by worker, every worker with a share whose
// time is at or after since: how many shares, the work they prove (the
// sum of their difficulties) and the newest share's time. It walks the
// ledger from the newest share back (scanNewest) and stops at the first
// share older than since by timeSkew, so its cost is decoding the shares
// of the span (plus up to timeSkew more), not the whole ledger; a span
// longer than the ledger reads all of it.
//
// A since on a minute boundary within the worker history's retention is
// read from the per-minute rollups instead (history.go): one row per
// worker and minute, whatever the share rate.
func (s *Store) WorkerStats(ctx context.Context, since time.Time) ([]ledger.WorkerStat, error) {
	if since.Equal(since.Truncate(time.Minute)) && time.Since(since) < s.historyRetention() {
		return s.workerStatsFromHistory(ctx, since)
	}
	return s.workerStatsScan(ctx, since)
}

// workerStatsScan is WorkerStats read from the shares themselves.
func (s *Store) workerStatsScan(ctx context.Context, since time.Time) ([]ledger.WorkerStat, error) {
	stop := since.Add(-timeSkew)
	by := map[string]*ledger.WorkerStat{}
	if _, err := s.scanNewest(ctx, func(sh *Share) bool {
		if sh.Time.Before(since) {
			return !sh.Time.Before(stop)
		}
		w := by[sh.Worker]
		if w == nil {
			w = &ledger.WorkerStat{Worker: sh.Worker}
			by[sh.Worker] = w
		}
		w.Shares++
		w.Work += sh.Difficulty
		if sh.Time.After(w.Last) {
			w.Last = sh.Time
		}
		return true
	}); err != nil {
		return nil, err
	}
	out := make([]ledger.WorkerStat, 0, len(by))
	for _, w := range by {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b ledger.WorkerStat) int { return strings.Compare(a.Worker, b.Worker) })
	return out, nil
}
