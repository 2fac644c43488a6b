package pgledger

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// BestShare is a worker's best share in a span (internal/ledger).
type BestShare = ledger.BestShare

// BestShares returns each worker's best share, sorted by worker: of all
// time when since is zero; otherwise among the shares recorded at or
// after since (the time of the pool's last block) that are not blocks
// themselves (a block share ends its round). Of equal difficulties the
// earliest wins. The shares table is the only source: in a cluster every
// front-end's shares count, and the answer is what the ledger says. An
// address's best (the worker name's part before the first '.') is the
// highest of its workers'.
func (l *Ledger) BestShares(ctx context.Context, since time.Time) ([]BestShare, error) {
	q := `SELECT worker, achieved, hash, time FROM best_shares ORDER BY worker`
	args := []any{}
	if !since.IsZero() {
		q = `SELECT DISTINCT ON (worker) worker, achieved, hash, time FROM shares
			WHERE time >= $1 AND NOT block
			ORDER BY worker, achieved DESC, time, hash`
		args = append(args, since)
	}
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgledger: best shares in %s: %w", l.url, err)
	}
	defer rows.Close()
	var out []BestShare
	for rows.Next() {
		var (
			b    BestShare
			hash []byte
		)
		if err := rows.Scan(&b.Worker, &b.Difficulty, &hash, &b.Time); err != nil {
			return nil, fmt.Errorf("pgledger: reading best shares in %s: %w", l.url, err)
		}
		copy(b.Hash[:], hash)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: reading best shares in %s: %w", l.url, err)
	}
	return out, nil
}

// upsertBest raises best_shares rows to the batch's candidates: a row
// changes only for a better share (higher achieved; of equal ones the
// earlier, then the lower hash), so it holds each worker's best share of
// all time whatever order batches commit in and however often a batch is
// recorded again.
const upsertBest = `INSERT INTO best_shares AS b (worker, achieved, time, hash)
	SELECT * FROM unnest($1::text[], $2::float8[], $3::timestamptz[], $4::bytea[])
	ON CONFLICT (worker) DO UPDATE SET achieved = excluded.achieved, time = excluded.time, hash = excluded.hash
	WHERE (excluded.achieved, b.time, b.hash) > (b.achieved, excluded.time, excluded.hash)`

// bestCandidates are the shares of a batch that may raise best_shares,
// at most one per worker, sorted by worker.
type bestCandidates struct {
	workers  []string
	achieved []float64
	times    []time.Time
	hashes   [][]byte
}

// bestCache is the lowest achieved difficulty each worker's stored best
// share is known to have: a lower bound (another writer may have stored
// a better one since), so a share below it cannot be a best and Record
// does not send it to best_shares. Most shares are below: a worker's
// record is broken ever more rarely.
type bestCache struct {
	mu    sync.Mutex
	floor map[string]float64
}

// candidates returns, of shares[order...], each worker's best share that
// is not below the worker's known floor.
func (c *bestCache) candidates(shares []Share, order []int) bestCandidates {
	byWorker := make(map[string]int, 64)
	c.mu.Lock()
	for _, i := range order {
		sh := &shares[i]
		if f, ok := c.floor[sh.Worker]; ok && sh.Achieved < f {
			continue
		}
		if j, ok := byWorker[sh.Worker]; !ok || betterShare(sh, &shares[j]) {
			byWorker[sh.Worker] = i
		}
	}
	c.mu.Unlock()
	var out bestCandidates
	if len(byWorker) == 0 {
		return out
	}
	idx := make([]int, 0, len(byWorker))
	for _, i := range byWorker {
		idx = append(idx, i)
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(shares[a].Worker, shares[b].Worker) })
	for _, i := range idx {
		sh := &shares[i]
		out.workers = append(out.workers, sh.Worker)
		out.achieved = append(out.achieved, sh.Achieved)
		out.times = append(out.times, sh.Time)
		out.hashes = append(out.hashes, sh.Hash[:])
	}
	return out
}

// committed raises the floors to the candidates of a committed batch:
// the stored best of each is now at least that high.
func (c *bestCache) committed(b bestCandidates) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.floor == nil {
		c.floor = make(map[string]float64, len(b.workers))
	}
	for i, w := range b.workers {
		if f, ok := c.floor[w]; !ok || b.achieved[i] > f {
			c.floor[w] = b.achieved[i]
		}
	}
}

// betterShare reports whether a ranks above b as a best share: higher
// achieved; of equal ones the earlier (at the microsecond PostgreSQL
// stores), then the lower hash.
func betterShare(a, b *Share) bool {
	if a.Achieved != b.Achieved {
		return a.Achieved > b.Achieved
	}
	if ta, tb := a.Time.UnixMicro(), b.Time.UnixMicro(); ta != tb {
		return ta < tb
	}
	return bytes.Compare(a.Hash[:], b.Hash[:]) < 0
}
