package pgledger

import (
	"context"
	"fmt"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// scanPage is how many shares ScanRecentShares reads per query.
const scanPage = 4096

// ScanRecentShares calls fn with the worker and difficulty of each stored
// share from the newest (highest id) to the oldest until fn returns false
// or the ledger is exhausted, and returns the id of the newest share it
// walked (0 for an empty ledger): what a PPLNS window needs
// (payout.Ledger; docs/payouts.md). It reads in pages of
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

// WindowShares calls fn with each stored share whose id is at most
// cutoff, from the newest (highest id) to the oldest, until fn returns
// false: the shares a PPLNS block's window was taken from
// (payout.WriteWindow). Time, Worker, Difficulty and Hash are set. It
// reads in pages of scanPage shares.
func (l *Ledger) WindowShares(ctx context.Context, cutoff int64, fn func(id int64, sh *ledger.Share) bool) error {
	below := cutoff + 1
	for {
		n, more, err := l.windowPage(ctx, &below, fn)
		if err != nil {
			return fmt.Errorf("pgledger: reading the shares up to id %d in %s: %w", cutoff, l.url, err)
		}
		if !more || n < scanPage {
			return nil
		}
	}
}

// windowPage calls fn with the next page of shares with id below *below,
// newest first, and moves *below past them; more is false once fn said
// stop. The rows are closed however fn returns.
func (l *Ledger) windowPage(ctx context.Context, below *int64, fn func(id int64, sh *ledger.Share) bool) (n int, more bool, err error) {
	rows, err := l.pool.Query(ctx, `SELECT id, time, worker, difficulty, hash FROM shares
		WHERE id < $1 ORDER BY id DESC LIMIT $2`, *below, scanPage)
	if err != nil {
		return 0, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id   int64
			sh   ledger.Share
			hash []byte
		)
		if err := rows.Scan(&id, &sh.Time, &sh.Worker, &sh.Difficulty, &hash); err != nil {
			return n, false, err
		}
		n++
		*below = id
		if len(hash) == len(chainmath.Hash{}) {
			copy(sh.Hash[:], hash)
		}
		if !fn(id, &sh) {
			return n, false, nil
		}
	}
	return n, true, rows.Err()
}
