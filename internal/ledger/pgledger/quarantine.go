package pgledger

import (
	"context"
	"fmt"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Quarantined is something a ledger writer received and could not store
// as a share: one share the ledger refuses (CheckShare), or a whole
// message that does not decode. It is kept, with why, for an operator.
type Quarantined struct {
	// Key names it once: the share's hash, or a digest of the message.
	// Quarantining the same key again keeps the first.
	Key     chainmath.Hash
	Subject string // where it came from (the stream subject)
	Reason  string // why it could not be stored
	Worker  []byte // the share's worker name, byte for byte (nil for a message)
	Data    []byte // the share's encoding, or the whole message
}

// Quarantine stores qs in the quarantine table in one transaction and
// returns how many were new (a key already there is skipped, so a batch
// quarantined again stores nothing twice). Subject and Reason are stored
// as ledger.Printable text; Worker and Data as bytes, exactly.
func (l *Ledger) Quarantine(ctx context.Context, qs []Quarantined) (int, error) {
	if len(qs) == 0 {
		return 0, nil
	}
	keys, data, workers := make([][]byte, len(qs)), make([][]byte, len(qs)), make([][]byte, len(qs))
	subjects, reasons := make([]string, len(qs)), make([]string, len(qs))
	for i, q := range qs {
		if q.Key == (chainmath.Hash{}) {
			return 0, fmt.Errorf("pgledger: quarantine entry %d of %d (subject %q): key is all zeros", i, len(qs), q.Subject)
		}
		keys[i], data[i], workers[i] = q.Key[:], q.Data, q.Worker
		if data[i] == nil {
			data[i] = []byte{}
		}
		subjects[i], reasons[i] = ledger.Printable(q.Subject), ledger.Printable(q.Reason)
	}
	tag, err := l.pool.Exec(ctx, `INSERT INTO quarantine (key, subject, reason, worker, data)
		SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])
		ON CONFLICT (key) DO NOTHING`, keys, subjects, reasons, workers, data)
	if err != nil {
		return 0, fmt.Errorf("pgledger: quarantining %d entries in %s: %w", len(qs), l.url, err)
	}
	return int(tag.RowsAffected()), nil
}

// QuarantinedEntries returns the quarantine table, oldest first, at most
// limit entries (0: all).
func (l *Ledger) QuarantinedEntries(ctx context.Context, limit int) ([]Quarantined, error) {
	q := `SELECT key, subject, reason, worker, data FROM quarantine ORDER BY quarantined_at, key`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := l.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("pgledger: reading the quarantine in %s: %w", l.url, err)
	}
	defer rows.Close()
	var out []Quarantined
	for rows.Next() {
		var e Quarantined
		var key []byte
		if err := rows.Scan(&key, &e.Subject, &e.Reason, &e.Worker, &e.Data); err != nil {
			return nil, fmt.Errorf("pgledger: reading the quarantine in %s: %w", l.url, err)
		}
		copy(e.Key[:], key)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: reading the quarantine in %s: %w", l.url, err)
	}
	return out, nil
}
