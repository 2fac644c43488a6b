package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

func statShare(worker string, at time.Time, diff float64) Share {
	return Share{Time: at, Worker: worker, Difficulty: diff, Achieved: diff}
}

func statsString(list []ledger.WorkerStat) string {
	var b strings.Builder
	for _, w := range list {
		fmt.Fprintf(&b, "%s:%d/%g@%d ", w.Worker, w.Shares, w.Work, w.Last.Unix())
	}
	return b.String()
}

// TestWorkerStatsSpan: WorkerStats counts, per worker, exactly the
// shares at or after since, across segments and the legacy table, and
// a share stored out of time order (older than since, before newer
// ones in the ledger) does not end the walk early.
func TestWorkerStatsSpan(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	t0 := time.Unix(1_800_000_000, 0)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO shares
		(time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, hash, block)
		VALUES (?, 'alice', '', '', '', 0, 0, 0, 16, 16, ?, 0)`, t0.Add(-5*time.Hour).UnixNano(), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, batch := range [][]Share{
		{statShare("carol", t0.Add(-3*time.Hour), 32)},
		{statShare("alice", t0.Add(-90*time.Minute), 1), statShare("bob", t0.Add(-61*time.Minute), 64)},
		{statShare("alice", t0.Add(-59*time.Minute), 2), statShare("bob", t0.Add(-10*time.Minute), 4), statShare("alice", t0.Add(-time.Minute), 8)},
		// erin's share reached the writer after newer ones.
		{statShare("dave", t0.Add(-30*time.Second), 128), statShare("erin", t0.Add(-60*time.Minute-30*time.Second), 256), statShare("dave", t0.Add(-20*time.Second), 512)},
	} {
		if err := s.RecordShares(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		since time.Time
		want  string
	}{
		{t0.Add(-time.Hour), fmt.Sprintf("alice:2/10@%d bob:1/4@%d dave:2/640@%d ", t0.Unix()-60, t0.Unix()-600, t0.Unix()-20)},
		{t0.Add(-6 * time.Hour), fmt.Sprintf("alice:4/27@%d bob:2/68@%d carol:1/32@%d dave:2/640@%d erin:1/256@%d ",
			t0.Unix()-60, t0.Unix()-600, t0.Unix()-3*3600, t0.Unix()-20, t0.Unix()-3630)},
		{t0, ""},
	} {
		list, err := s.workerStatsScan(ctx, c.since)
		if err != nil || statsString(list) != c.want {
			t.Errorf("WorkerStats since %s: %q %v, want %q", c.since.Sub(t0), statsString(list), err, c.want)
		}
	}
}

// TestWorkerStatsStopsAtTheSpan: WorkerStats reads back only as far as
// the span (plus timeSkew): with a corrupt oldest segment, a recent span
// is answered, and a span reaching it is an error naming the segment.
func TestWorkerStatsStopsAtTheSpan(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO share_segments (count, data, seq_end) VALUES (1, x'09', 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	t0 := time.Unix(1_800_000_000, 0)
	if err := s.RecordShares(ctx, []Share{statShare("alice", t0.Add(-2*time.Hour), 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordShares(ctx, []Share{statShare("alice", t0.Add(-time.Minute), 2)}); err != nil {
		t.Fatal(err)
	}
	if list, err := s.workerStatsScan(ctx, t0.Add(-time.Hour)); err != nil || statsString(list) != fmt.Sprintf("alice:1/2@%d ", t0.Unix()-60) {
		t.Fatalf("WorkerStats over the last hour: %q %v, want alice's one share", statsString(list), err)
	}
	if _, err := s.workerStatsScan(ctx, t0.Add(-3*time.Hour)); err == nil || !strings.Contains(err.Error(), "share segment 1: segment format 9") {
		t.Fatalf("WorkerStats reaching the corrupt segment: %v, want an error naming segment 1", err)
	}
}
