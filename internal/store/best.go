package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Best shares: the highest difficulty a share reached (Share.Achieved),
// per worker and per account, since the pool's last block and for all
// time. They are kept in the same transaction as the shares that set
// them, so the table always agrees with the ledger: a best is durable
// exactly when its share is.

// Kinds and scopes of a best-share record.
const (
	// BestWorker: keyed by the full worker name of the share.
	BestWorker = "worker"
	// BestAccount: keyed by the worker name's part before the first '.',
	// which on a node is the payout address.
	BestAccount = "address"
	// BestSinceBlock: since the last block the pool found was accepted
	// (ResetBestSinceBlock). The share that is itself a block counts for
	// all time only: it ends its round.
	BestSinceBlock = "since_block"
	// BestAllTime: ever.
	BestAllTime = "all_time"
)

const bestSchema = `
CREATE TABLE IF NOT EXISTS best_shares (
	kind       TEXT    NOT NULL,
	name       TEXT    NOT NULL,
	scope      TEXT    NOT NULL,
	difficulty REAL    NOT NULL,
	hash       BLOB    NOT NULL,
	time       INTEGER NOT NULL,
	PRIMARY KEY (kind, name, scope)
);
`

// BestShare is one best-share record.
type BestShare struct {
	Kind       string // BestWorker or BestAccount
	Name       string
	Scope      string // BestSinceBlock or BestAllTime
	Difficulty float64
	Hash       chainmath.Hash
	Time       time.Time // when the share was accepted
}

type bestKey struct{ kind, name, scope string }

// AccountOf is the account a worker name belongs to: its part before the
// first '.'.
func AccountOf(worker string) string {
	a, _, _ := strings.Cut(worker, ".")
	return a
}

// loadBest reads the best-share table into memory (at Open).
func (s *Store) loadBest() error {
	rows, err := s.w.Query(`SELECT kind, name, scope, difficulty, hash, time FROM best_shares`)
	if err != nil {
		return fmt.Errorf("store: read best shares: %w", err)
	}
	defer rows.Close()
	s.best = make(map[bestKey]BestShare)
	for rows.Next() {
		var (
			b    BestShare
			hash []byte
			tm   int64
		)
		if err := rows.Scan(&b.Kind, &b.Name, &b.Scope, &b.Difficulty, &hash, &tm); err != nil {
			return fmt.Errorf("store: read best share: %w", err)
		}
		if len(hash) != len(b.Hash) {
			return fmt.Errorf("store: best share of %s %q: stored hash is %d bytes", b.Kind, b.Name, len(hash))
		}
		copy(b.Hash[:], hash)
		b.Time = time.Unix(0, tm)
		s.best[bestKey{b.Kind, b.Name, b.Scope}] = b
	}
	return rows.Err()
}

// newBests returns the records that the shares of batch raise above the
// ones held in memory, at most one per key (the highest).
func (s *Store) newBests(batch []shareReq) []BestShare {
	s.bestMu.Lock()
	defer s.bestMu.Unlock()
	var out []BestShare
	idx := map[bestKey]int{}
	consider := func(k bestKey, sh *Share) {
		if cur, ok := s.best[k]; ok && cur.Difficulty >= sh.Achieved {
			return
		}
		b := BestShare{Kind: k.kind, Name: k.name, Scope: k.scope, Difficulty: sh.Achieved, Hash: sh.Hash, Time: sh.Time}
		if i, ok := idx[k]; ok {
			if out[i].Difficulty < sh.Achieved {
				out[i] = b
			}
			return
		}
		idx[k] = len(out)
		out = append(out, b)
	}
	one := func(sh *Share) {
		acct := AccountOf(sh.Worker)
		consider(bestKey{BestWorker, sh.Worker, BestAllTime}, sh)
		consider(bestKey{BestAccount, acct, BestAllTime}, sh)
		if !sh.Block {
			consider(bestKey{BestWorker, sh.Worker, BestSinceBlock}, sh)
			consider(bestKey{BestAccount, acct, BestSinceBlock}, sh)
		}
	}
	for i := range batch {
		if batch[i].many != nil {
			for k := range batch[i].many {
				one(&batch[i].many[k])
			}
			continue
		}
		one(&batch[i].share)
	}
	return out
}

// upsertBest writes records inside tx; a stored record is replaced only by
// a higher one.
func upsertBest(tx *sql.Tx, bests []BestShare) error {
	for _, b := range bests {
		if _, err := tx.Exec(`INSERT INTO best_shares (kind, name, scope, difficulty, hash, time) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(kind, name, scope) DO UPDATE SET difficulty = excluded.difficulty, hash = excluded.hash, time = excluded.time
			WHERE excluded.difficulty > best_shares.difficulty`,
			b.Kind, b.Name, b.Scope, b.Difficulty, b.Hash[:], b.Time.UnixNano()); err != nil {
			return fmt.Errorf("store: best share of %s %q: %w", b.Kind, b.Name, err)
		}
	}
	return nil
}

// applyBest takes committed records into memory and tells the hook.
func (s *Store) applyBest(bests []BestShare) {
	type change struct {
		b    BestShare
		prev float64
	}
	var changes []change
	s.bestMu.Lock()
	hook := s.bestHook
	for _, b := range bests {
		k := bestKey{b.Kind, b.Name, b.Scope}
		if cur, ok := s.best[k]; !ok || b.Difficulty > cur.Difficulty {
			s.best[k] = b
			if hook != nil {
				changes = append(changes, change{b, cur.Difficulty})
			}
		}
	}
	s.bestMu.Unlock()
	for _, c := range changes {
		hook(c.b, c.prev)
	}
}

// OnNewBest sets f to be called with every new best-share record once it
// is durable, and the difficulty of the record it replaced (0 for the
// first). f runs on the share writer's goroutine, so it must not block
// (queue and return).
func (s *Store) OnNewBest(f func(b BestShare, previous float64)) {
	s.bestMu.Lock()
	s.bestHook = f
	s.bestMu.Unlock()
}

// BestShares returns every best-share record, sorted by kind, name and
// scope. It reads memory only (the table is loaded at Open and kept in
// step with every commit), so it is cheap enough for every status poll.
func (s *Store) BestShares() []BestShare {
	s.bestMu.Lock()
	out := make([]BestShare, 0, len(s.best))
	for _, b := range s.best {
		out = append(out, b)
	}
	s.bestMu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Scope < b.Scope
	})
	return out
}

// ResetBestSinceBlock durably forgets every since-block record: the pool
// found a block that the chain accepted, and a new round begins.
func (s *Store) ResetBestSinceBlock(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.bestMu.Lock()
	defer s.bestMu.Unlock()
	if _, err := s.w.ExecContext(ctx, `DELETE FROM best_shares WHERE scope = ?`, BestSinceBlock); err != nil {
		return fmt.Errorf("store: reset best shares since the last block: %w", err)
	}
	for k := range s.best {
		if k.scope == BestSinceBlock {
			delete(s.best, k)
		}
	}
	return nil
}
