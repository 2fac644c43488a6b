package pgledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// PayoutRecord is the ledger's record of what a found block pays
// (internal/ledger); Cutoff is the shares id of the newest share in the
// block's PPLNS window (0 for a solo block).
type PayoutRecord = ledger.PayoutRecord

// PayoutOutput is the ledger's paying output (internal/ledger).
type PayoutOutput = ledger.PayoutOutput

// RecordPayouts stores rec in one transaction; recording a block again
// changes nothing.
func (l *Ledger) RecordPayouts(ctx context.Context, rec PayoutRecord) error {
	if rec.Hash == (chainmath.Hash{}) {
		return errors.New("pgledger: record payouts: block hash is all zeros")
	}
	for _, f := range []struct{ name, v string }{{"mode", rec.Mode}, {"window", rec.Window}, {"rules", rec.Rules}} {
		if err := checkText(f.name, f.v); err != nil {
			return fmt.Errorf("pgledger: record payouts of %s: %v", rec.Hash, err)
		}
	}
	for i, o := range rec.Outputs {
		for _, f := range []struct{ name, v string }{{"work", o.Work}, {"label", o.Label}} {
			if err := checkText(f.name, f.v); err != nil {
				return fmt.Errorf("pgledger: record payouts of %s: output %d: %v", rec.Hash, i, err)
			}
		}
	}
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgledger: record payouts of %s in %s: %w", rec.Hash, l.url, err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO payout_blocks (hash, height, mode, cutoff, window_size, value, rules)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING`,
		rec.Hash[:], rec.Height, rec.Mode, rec.Cutoff, rec.Window, rec.Value, rec.Rules)
	if err != nil {
		return fmt.Errorf("pgledger: record payouts of %s in %s: %w", rec.Hash, l.url, err)
	}
	if tag.RowsAffected() == 0 {
		return nil // recorded before
	}
	for i, o := range rec.Outputs {
		if _, err := tx.Exec(ctx, `INSERT INTO payouts (hash, idx, script, amount, work, fee, label) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			rec.Hash[:], i, o.Script, o.Amount, o.Work, o.Fee, o.Label); err != nil {
			return fmt.Errorf("pgledger: record payouts of %s in %s: %w", rec.Hash, l.url, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgledger: record payouts of %s in %s: %w", rec.Hash, l.url, err)
	}
	return nil
}

// BlockPayouts returns what the found block hash pays, if recorded.
func (l *Ledger) BlockPayouts(ctx context.Context, hash chainmath.Hash) (rec PayoutRecord, ok bool, err error) {
	err = l.pool.QueryRow(ctx, `SELECT height, mode, cutoff, window_size, value, rules FROM payout_blocks WHERE hash = $1`, hash[:]).
		Scan(&rec.Height, &rec.Mode, &rec.Cutoff, &rec.Window, &rec.Value, &rec.Rules)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("pgledger: read payouts of %s in %s: %w", hash, l.url, err)
	}
	rec.Hash = hash
	rows, err := l.pool.Query(ctx, `SELECT script, amount, work, fee, label FROM payouts WHERE hash = $1 ORDER BY idx`, hash[:])
	if err != nil {
		return rec, false, fmt.Errorf("pgledger: read payouts of %s in %s: %w", hash, l.url, err)
	}
	defer rows.Close()
	for rows.Next() {
		var o PayoutOutput
		if err := rows.Scan(&o.Script, &o.Amount, &o.Work, &o.Fee, &o.Label); err != nil {
			return rec, false, fmt.Errorf("pgledger: read payouts of %s: %w", hash, err)
		}
		rec.Outputs = append(rec.Outputs, o)
	}
	if err := rows.Err(); err != nil {
		return rec, false, fmt.Errorf("pgledger: read payouts of %s in %s: %w", hash, l.url, err)
	}
	return rec, true, nil
}

// PayoutBlocks returns the hashes of every block with recorded payouts,
// by height.
func (l *Ledger) PayoutBlocks(ctx context.Context) ([]chainmath.Hash, error) {
	rows, err := l.pool.Query(ctx, `SELECT hash FROM payout_blocks ORDER BY height, hash`)
	if err != nil {
		return nil, fmt.Errorf("pgledger: list payout blocks in %s: %w", l.url, err)
	}
	defer rows.Close()
	var out []chainmath.Hash
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("pgledger: list payout blocks: %w", err)
		}
		var h chainmath.Hash
		copy(h[:], b)
		out = append(out, h)
	}
	return out, rows.Err()
}

// ScriptPayouts returns every recorded block's payment to script or to a
// miner with payout label label (when not empty), oldest first. The
// ledger keeps no found block's state: State is "" (the cluster
// coordinator asks its chain, payout.Accounts.BlockState).
func (l *Ledger) ScriptPayouts(ctx context.Context, script []byte, label string) ([]ledger.ScriptPayout, error) {
	if checkText("label", label) != nil {
		label = "" // no record can carry it
	}
	rows, err := l.pool.Query(ctx, `SELECT b.height, p.hash, sum(p.amount)::bigint
		FROM payouts p JOIN payout_blocks b ON b.hash = p.hash
		WHERE NOT p.fee AND (p.script = $1 OR ($2 <> '' AND p.label = $2))
		GROUP BY p.hash, b.height ORDER BY b.height, p.hash`, script, label)
	if err != nil {
		return nil, fmt.Errorf("pgledger: payouts to %x in %s: %w", script, l.url, err)
	}
	defer rows.Close()
	var out []ledger.ScriptPayout
	for rows.Next() {
		var p ledger.ScriptPayout
		var h []byte
		if err := rows.Scan(&p.Height, &h, &p.Amount); err != nil {
			return nil, fmt.Errorf("pgledger: payouts to %x: %w", script, err)
		}
		copy(p.Hash[:], h)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: payouts to %x in %s: %w", script, l.url, err)
	}
	return out, nil
}
