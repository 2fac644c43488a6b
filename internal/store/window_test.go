package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// TestWindowSharesNumbering: WindowShares walks the shares numbered up
// to a cutoff, newest first, with the numbering ScanRecentShares gives
// (the legacy table's rows first, then each segment's), across several
// group commits.
func TestWindowSharesNumbering(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 25 {
		if err := s.RecordShare(ctx, Share{Time: time.Unix(int64(1000+i), 0), Worker: "w" + string(rune('a'+i)), Difficulty: float64(i + 1), Hash: chainmath.Hash{byte(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	cutoff, err := s.ScanRecentShares(ctx, func(string, float64) bool { return false })
	if err != nil || cutoff != 25 {
		t.Fatalf("cutoff %d, %v", cutoff, err)
	}
	var ids []int64
	var diffs []float64
	err = s.WindowShares(ctx, 20, func(id int64, sh *ledger.Share) bool {
		ids = append(ids, id)
		diffs = append(diffs, sh.Difficulty)
		if sh.Hash != (chainmath.Hash{byte(id)}) {
			t.Errorf("share %d: hash %s", id, sh.Hash)
		}
		return len(ids) < 5
	})
	if err != nil || len(ids) != 5 || ids[0] != 20 || ids[4] != 16 || diffs[0] != 20 || diffs[4] != 16 {
		t.Fatalf("WindowShares(20) walked ids %v difficulties %v (%v); want 20..16", ids, diffs, err)
	}
}

// TestPayoutRulesMigration: a database whose payout_blocks predates the
// rules column gets it on Open; its records read back with no rules, new
// ones keep theirs.
func TestPayoutRulesMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "powcoord.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER TABLE payout_blocks DROP COLUMN rules`); err != nil {
		t.Fatal(err)
	}
	old := chainmath.Hash{1}
	if _, err := db.Exec(`INSERT INTO payout_blocks (hash, height, mode, cutoff, window, value) VALUES (?, 5, 'pplns', 9, '100', 5000)`, old[:]); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, ok, err := s.BlockPayouts(ctx, old)
	if err != nil || !ok || rec.Rules != "" || rec.Cutoff != 9 || rec.Value != 5000 {
		t.Fatalf("old record: %+v %v %v", rec, ok, err)
	}
	neu := PayoutRecord{Hash: chainmath.Hash{2}, Height: 6, Mode: "pplns", Cutoff: 10, Window: "100", Value: 5000, Rules: `{"window_blocks":8}`}
	if err := s.RecordPayouts(ctx, neu); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := s.BlockPayouts(ctx, neu.Hash); err != nil || !ok || rec.Rules != neu.Rules {
		t.Fatalf("new record: %+v %v %v", rec, ok, err)
	}
}
