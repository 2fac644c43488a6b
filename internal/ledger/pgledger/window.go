package pgledger

import (
	"context"
	"fmt"
)

// scanPage is how many shares ScanRecentShares reads per query.
const scanPage = 4096

// ScanRecentShares calls fn with the worker and difficulty of each stored
// share from the newest (highest id) to the oldest until fn returns false
// or the ledger is exhausted, and returns the id of the newest share it
// walked (0 for an empty ledger): what a PPLNS window needs
// (coordinator.PayoutLedger; docs/payouts.md). It reads in pages of
// scanPage shares. An identity is not a commit order, so a share with a
// lower id can still appear after the walk; see docs/payouts.md.
func (l *Ledger) ScanRecentShares(ctx context.Context, fn func(worker string, difficulty float64) bool) (cutoff int64, err error) {
	below := int64(-1) // no bound on the first page
	for {
		rows, err := l.pool.Query(ctx, `SELECT id, worker, difficulty FROM shares
			WHERE ($1::bigint < 0 OR id < $1) ORDER BY id DESC LIMIT $2`, below, scanPage)
		if err != nil {
			return 0, fmt.Errorf("pgledger: reading recent shares in %s: %w", l.url, err)
		}
		n := 0
		stop := false
		for rows.Next() {
			var (
				id int64
				w  string
				d  float64
			)
			if err := rows.Scan(&id, &w, &d); err != nil {
				rows.Close()
				return 0, fmt.Errorf("pgledger: reading recent shares: %w", err)
			}
			n++
			if cutoff == 0 {
				cutoff = id
			}
			below = id
			if !fn(w, d) {
				stop = true
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("pgledger: reading recent shares in %s: %w", l.url, err)
		}
		if stop || n < scanPage {
			return cutoff, nil
		}
	}
}
