package pgledger

import (
	"context"
	"fmt"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// BestShare is a worker's share of the highest achieved difficulty in a
// span of the ledger.
type BestShare struct {
	Worker     string
	Difficulty float64 // the share's achieved difficulty (T1/hash)
	Hash       chainmath.Hash
	Time       time.Time
}

// BestShares returns each worker's best share, sorted by worker: of all
// time when since is zero; otherwise among the shares recorded at or
// after since (the time of the pool's last block) that are not blocks
// themselves (a block share ends its round). Of equal difficulties the
// earliest wins. The shares table is the only source: in a cluster every
// front-end's shares count, and the answer is what the ledger says. An
// address's best (the worker name's part before the first '.') is the
// highest of its workers'.
func (l *Ledger) BestShares(ctx context.Context, since time.Time) ([]BestShare, error) {
	q := `SELECT DISTINCT ON (worker) worker, achieved, hash, time FROM shares
		ORDER BY worker, achieved DESC, time, hash`
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
