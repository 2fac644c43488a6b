package store

import (
	"context"

	"fmt"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// States of a found block in the found-block record.
const (
	// FoundPending: written before the first submission; not yet answered
	// by the chain. Pending blocks are re-submitted after a restart.
	FoundPending = "pending"
	// FoundAccepted: the chain took the block (for a node: it answered
	// null, "duplicate" or "inconclusive"), or, its answer lost, the
	// chain holds it at its height.
	FoundAccepted = ledger.FoundAccepted
	// FoundRejected: the chain refused the block for good.
	FoundRejected = "rejected"
	// FoundAbandoned: the chain moved past the block's height with
	// another block there (or a source that cannot be asked moved past
	// it) before any submission was answered; the block can no longer
	// extend the tip.
	FoundAbandoned = "abandoned"
	// FoundOrphaned: the chain took the block, but it is not (or no
	// longer) on the best chain: it landed on a side chain, or a reorg
	// replaced it. Its coinbase never matures, so it pays nobody. A
	// reorg that brings it back makes it FoundAccepted again.
	FoundOrphaned = "orphaned"
)

const foundSchema = `
CREATE TABLE IF NOT EXISTS found_blocks (
	hash       BLOB    PRIMARY KEY,
	height     INTEGER NOT NULL,
	header     BLOB    NOT NULL,
	raw        BLOB    NOT NULL,
	finder     TEXT    NOT NULL,
	time       INTEGER NOT NULL,
	found_at   INTEGER NOT NULL,
	state      TEXT    NOT NULL,
	reason     TEXT    NOT NULL DEFAULT '',
	attempts   INTEGER NOT NULL DEFAULT 0,
	updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS found_blocks_state ON found_blocks(state, height);
`

// FoundBlock is a block a miner of this pool found, as recorded before it
// is submitted, and what became of it.
type FoundBlock struct {
	Block
	State     string // FoundPending, FoundAccepted, FoundRejected, FoundAbandoned or FoundOrphaned
	Reason    string // the chain's reason, or the last submission error
	Attempts  int    // submissions so far
	UpdatedAt time.Time
}

// AddFoundBlock records b as pending, durably: when it returns nil the
// block is on disk and will be submitted again after a restart if it is
// still pending then. Recording a block whose hash is already recorded
// changes nothing and returns nil (a miner's resent share, say).
func (s *Store) AddFoundBlock(ctx context.Context, b Block) error {
	if s.isClosed() {
		return ErrClosed
	}
	if len(b.Raw) < chainmath.HeaderSize {
		return fmt.Errorf("store: found block %s: raw block is %d bytes, shorter than a header", b.Hash, len(b.Raw))
	}
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO found_blocks (hash, height, header, raw, finder, time, found_at, state, updated_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING`,
		b.Hash[:], b.Height, b.Header[:], b.Raw, b.Finder, int64(b.Time), b.FoundAt.UnixNano(), FoundPending, b.FoundAt.UnixNano())
	if err != nil {
		return fmt.Errorf("store: record found block %s at height %d: %w", b.Hash, b.Height, err)
	}
	return nil
}

// SetFoundBlockState records the outcome of a submission of the found
// block hash: its new state, the reason (empty when accepted) and one more
// attempt. An accepted block also enters the blocks list (Blocks,
// LastBlocks) unless the chain stored it there already (the embedded chain
// does, a node does not), so the list holds every accepted block whichever
// backend took it; an orphaned block leaves that list (a node's side-chain
// block is not one of the chain's blocks). Orphaning a block, or a reorg
// bringing an orphaned one back, is not a submission: the attempts stay.
func (s *Store) SetFoundBlockState(ctx context.Context, hash chainmath.Hash, state, reason string, at time.Time) error {
	if s.isClosed() {
		return ErrClosed
	}
	switch state {
	case FoundPending, FoundAccepted, FoundRejected, FoundAbandoned, FoundOrphaned:
	default:
		return fmt.Errorf("store: found block %s: unknown state %q", hash, state)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: set found block %s to %s: %w", hash, state, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx,
		`UPDATE found_blocks SET state = ?, reason = ?,
		 attempts = attempts + CASE WHEN ? = ? OR state = ? THEN 0 ELSE 1 END, updated_at = ? WHERE hash = ?`,
		state, reason, state, FoundOrphaned, FoundOrphaned, at.UnixNano(), hash[:])
	if err != nil {
		return fmt.Errorf("store: set found block %s to %s: %w", hash, state, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("store: found block %s is not recorded", hash)
	}
	if state == FoundAccepted {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO blocks (height, hash, header, raw, finder, time, found_at)
			 SELECT height, hash, header, raw, finder, time, found_at FROM found_blocks WHERE hash = ?
			 ON CONFLICT (hash) DO NOTHING`, hash[:]); err != nil {
			return fmt.Errorf("store: list accepted block %s: %w", hash, err)
		}
	}
	if state == FoundOrphaned {
		if _, err := tx.ExecContext(ctx, `DELETE FROM blocks WHERE hash = ?`, hash[:]); err != nil {
			return fmt.Errorf("store: unlist orphaned block %s: %w", hash, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: set found block %s to %s: %w", hash, state, err)
	}
	return nil
}

// FoundBlocks returns the recorded found blocks in state (every state when
// state is empty), oldest first.
func (s *Store) FoundBlocks(ctx context.Context, state string) ([]FoundBlock, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if state == "" {
		return s.foundBlocks(ctx, "")
	}
	return s.foundBlocks(ctx, `WHERE state = ?`, state)
}

func (s *Store) foundBlocks(ctx context.Context, where string, args ...any) ([]FoundBlock, error) {
	q := `SELECT ` + blockCols + `, state, reason, attempts, updated_at FROM found_blocks ` + where + ` ORDER BY found_at, height`
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query found blocks: %w", err)
	}
	defer rows.Close()
	var out []FoundBlock
	for rows.Next() {
		var f FoundBlock
		var upd int64
		b, err := scanBlock(rows, &f.State, &f.Reason, &f.Attempts, &upd)
		if err != nil {
			return nil, err
		}
		f.Block = b
		f.UpdatedAt = time.Unix(0, upd)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read found blocks: %w", err)
	}
	return out, nil
}

// FoundBlock returns the found block with the given hash, or ok false.
func (s *Store) FoundBlock(ctx context.Context, hash chainmath.Hash) (FoundBlock, bool, error) {
	if s.isClosed() {
		return FoundBlock{}, false, ErrClosed
	}
	out, err := s.foundBlocks(ctx, `WHERE hash = ?`, hash[:])
	if err != nil || len(out) == 0 {
		return FoundBlock{}, false, err
	}
	return out[0], true, nil
}
