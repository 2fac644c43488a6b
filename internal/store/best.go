package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
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
// ones held in memory, at most one per key (the highest; the first of
// equals). Most shares raise nothing: a share is looked at only when its
// achieved difficulty is above the lowest of its worker's four records
// (held per worker for the batch), so a share costs one map lookup.
func (s *Store) newBests(batch []shareReq) []BestShare {
	s.bestMu.Lock()
	defer s.bestMu.Unlock()
	var out []BestShare
	var idx map[bestKey]int
	if s.bestFloor == nil {
		s.bestFloor = make(map[string]float64)
	}
	floors := s.bestFloor
	clear(floors)
	// level is what a share must exceed to change key k's record.
	level := func(k bestKey) float64 {
		l := math.Inf(-1)
		if cur, ok := s.best[k]; ok {
			l = cur.Difficulty
		}
		if i, ok := idx[k]; ok {
			l = max(l, out[i].Difficulty)
		}
		return l
	}
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
		if idx == nil {
			idx = map[bestKey]int{}
		}
		idx[k] = len(out)
		out = append(out, b)
	}
	one := func(sh *Share) {
		if f, ok := floors[sh.Worker]; ok && sh.Achieved <= f {
			return // below every record of its worker and account
		}
		acct := ledger.AccountOf(sh.Worker)
		keys := [4]bestKey{
			{BestWorker, sh.Worker, BestAllTime},
			{BestAccount, acct, BestAllTime},
			{BestWorker, sh.Worker, BestSinceBlock},
			{BestAccount, acct, BestSinceBlock},
		}
		consider(keys[0], sh)
		consider(keys[1], sh)
		if !sh.Block {
			consider(keys[2], sh)
			consider(keys[3], sh)
		}
		f := level(keys[0])
		for _, k := range keys[1:] {
			f = min(f, level(k))
		}
		floors[sh.Worker] = f
	}
	for i := range batch {
		if batch[i].many != nil {
			for k := range batch[i].many {
				one(&batch[i].many[k])
			}
			continue
		}
		if batch[i].wake {
			continue // a wake-up (CountReject): no share
		}
		one(&batch[i].share)
	}
	return out
}

// bestRowsPerStatement is the most records one upsert statement writes;
// the store prepares one statement for each power of two up to it.
const bestRowsPerStatement = 64

// upsertBest writes records inside tx, in as few prepared statements as
// the powers of two up to bestRowsPerStatement allow; a stored record is
// replaced only by a higher one. It runs on the writer goroutine only
// (it owns the argument scratch).
func (s *Store) upsertBest(tx *sql.Tx, bests []BestShare) error {
	for len(bests) > 0 {
		i := min(bits.Len(uint(len(bests))), len(s.upserts)) - 1
		n := 1 << i
		args := s.bestArgs[:0]
		for _, b := range bests[:n] {
			args = append(args, b.Kind, b.Name, b.Scope, b.Difficulty, b.Hash[:], b.Time.UnixNano())
		}
		s.bestArgs = args
		_, err := tx.Stmt(s.upserts[i]).Exec(args...)
		clear(args)
		if err != nil {
			return fmt.Errorf("store: best shares of %s %q and %d more: %w", bests[0].Kind, bests[0].Name, n-1, err)
		}
		bests = bests[n:]
	}
	return nil
}

// prepareUpserts prepares the upsert of 1, 2, 4 ... bestRowsPerStatement
// records (at Open: the writer's connection is the only one, so nothing
// can be prepared on it while a transaction holds it).
func (s *Store) prepareUpserts() error {
	for n := 1; n <= bestRowsPerStatement; n *= 2 {
		var q strings.Builder
		q.WriteString(`INSERT INTO best_shares (kind, name, scope, difficulty, hash, time) VALUES `)
		for i := range n {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(`(?, ?, ?, ?, ?, ?)`)
		}
		q.WriteString(` ON CONFLICT(kind, name, scope) DO UPDATE SET difficulty = excluded.difficulty, hash = excluded.hash, time = excluded.time
			WHERE excluded.difficulty > best_shares.difficulty`)
		st, err := s.w.Prepare(q.String())
		if err != nil {
			return fmt.Errorf("prepare the upsert of %d best shares: %w", n, err)
		}
		s.upserts = append(s.upserts, st)
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
