package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"
)

func scanAll(t *testing.T, s *Store, limit int) ([]string, int64) {
	t.Helper()
	var got []string
	cutoff, err := s.ScanRecentShares(context.Background(), func(w string, d float64) bool {
		got = append(got, fmt.Sprintf("%s/%g", w, d))
		return len(got) < limit
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, cutoff
}

func TestScanRecentSharesAndMigration(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if got, cutoff := scanAll(t, s, 10); len(got) != 0 || cutoff != 0 {
		t.Fatalf("empty ledger: %v cutoff %d", got, cutoff)
	}
	for i := 1; i <= 3; i++ {
		sh := testShare(fmt.Sprint("w", i), i)
		sh.Difficulty = float64(i)
		if err := s.RecordShare(ctx, sh); err != nil {
			t.Fatal(err)
		}
	}
	got, cutoff := scanAll(t, s, 10)
	if fmt.Sprint(got) != "[w3/3 w2/2 w1/1]" || cutoff != 3 {
		t.Fatalf("scan: %v cutoff %d", got, cutoff)
	}
	if got, cutoff := scanAll(t, s, 2); fmt.Sprint(got) != "[w3/3 w2/2]" || cutoff != 3 {
		t.Fatalf("scan stopped after 2: %v cutoff %d", got, cutoff)
	}
	s.Close()

	// A ledger written before seq_end existed, with a legacy share row.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	old := testShare("old", 9)
	if _, err := db.Exec(`ALTER TABLE share_segments DROP COLUMN seq_end`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO shares (time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, hash, block)
		VALUES (?, 'old', '', '', '', 0, 0, 0, 0.5, 1, ?, 0)`, old.Time.UnixNano(), old.Hash[:]); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, cutoff := scanAll(t, s2, 10); fmt.Sprint(got) != "[w3/3 w2/2 w1/1 old/0.5]" || cutoff != 4 {
		t.Fatalf("after migration: %v cutoff %d", got, cutoff)
	}
	if err := s2.RecordShare(ctx, testShare("w4", 4)); err != nil {
		t.Fatal(err)
	}
	if got, cutoff := scanAll(t, s2, 1); fmt.Sprint(got) != "[w4/0.005]" || cutoff != 5 {
		t.Fatalf("after a new share: %v cutoff %d", got, cutoff)
	}
	all, err := s2.Shares(ctx, "")
	if err != nil || len(all) != 5 || all[0].Worker != "old" || all[4].Worker != "w4" {
		t.Fatalf("Shares: %v %d", err, len(all))
	}
}

func TestPayoutRecords(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	b := testBlock(7)
	if err := s.AddFoundBlock(ctx, b); err != nil {
		t.Fatal(err)
	}
	rec := PayoutRecord{Hash: b.Hash, Height: 7, Mode: "pplns", Cutoff: 42, Window: "123", Value: 1000, Outputs: []PayoutOutput{
		{Script: []byte("alice"), Amount: 600, Work: "80", Label: "alice"},
		{Script: []byte("bob"), Amount: 390, Work: "43"},
		{Script: []byte("pool"), Amount: 10, Fee: true},
	}}
	if err := s.RecordPayouts(ctx, rec); err != nil {
		t.Fatal(err)
	}
	again := rec
	again.Outputs = []PayoutOutput{{Script: []byte("mallory"), Amount: 1000}}
	if err := s.RecordPayouts(ctx, again); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.BlockPayouts(ctx, b.Hash)
	if err != nil || !ok || got.Cutoff != 42 || got.Window != "123" || got.Value != 1000 || len(got.Outputs) != 3 ||
		!bytes.Equal(got.Outputs[1].Script, []byte("bob")) || got.Outputs[1].Amount != 390 || got.Outputs[1].Work != "43" || !got.Outputs[2].Fee {
		t.Fatalf("BlockPayouts: %v %v %+v", err, ok, got)
	}
	pays, err := s.ScriptPayouts(ctx, []byte("alice"), "")
	if err != nil || len(pays) != 1 || pays[0].Amount != 600 || pays[0].Height != 7 || pays[0].State != FoundPending {
		t.Fatalf("ScriptPayouts: %v %+v", err, pays)
	}
	if err := s.SetFoundBlockState(ctx, b.Hash, FoundAccepted, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if pays, _ := s.ScriptPayouts(ctx, []byte("alice"), ""); len(pays) != 1 || pays[0].State != FoundAccepted {
		t.Fatalf("after acceptance: %+v", pays)
	}
	if pays, _ := s.ScriptPayouts(ctx, []byte("other"), "alice"); len(pays) != 1 || pays[0].Amount != 600 {
		t.Fatalf("by label: %+v", pays)
	}
	if pays, _ := s.ScriptPayouts(ctx, []byte("pool"), ""); len(pays) != 0 {
		t.Fatalf("the fee counted as a miner's payout: %+v", pays)
	}
	if pays, _ := s.ScriptPayouts(ctx, []byte("mallory"), ""); len(pays) != 0 {
		t.Fatalf("a second record changed the first: %+v", pays)
	}
	if _, ok, err := s.BlockPayouts(ctx, testBlock(8).Hash); ok || err != nil {
		t.Fatalf("unknown block: %v %v", ok, err)
	}
}

// BenchmarkScanRecentShares walks a ledger of 100,000 shares in batches
// of 64 (what a PPLNS job build does when its window holds the whole
// ledger).
func BenchmarkScanRecentShares(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b)
	const n, batch = 100_032, 64 // 1563 batches
	var wg sync.WaitGroup
	for i := 0; i < n; i += batch {
		for j := range batch {
			wg.Add(1)
			go func() { defer wg.Done(); s.RecordShare(ctx, testShare(fmt.Sprint("w", j%8), i+j)) }()
		}
		wg.Wait()
	}
	b.ResetTimer()
	for range b.N {
		seen := 0
		if _, err := s.ScanRecentShares(ctx, func(string, float64) bool { seen++; return true }); err != nil || seen != n {
			b.Fatalf("walked %d shares: %v", seen, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "shares/s")
}
