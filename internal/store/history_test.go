package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// minutesFromShares is the per-minute rollup counted from the ledger's
// share rows themselves: what the worker history must equal.
func minutesFromShares(shares []Share, rejects map[string]int64) string {
	type key struct {
		w string
		m int64
	}
	acc := map[key]*ledger.WorkerMinute{}
	get := func(w string, m int64) *ledger.WorkerMinute {
		k := key{w, m}
		if acc[k] == nil {
			acc[k] = &ledger.WorkerMinute{Worker: w, Minute: time.Unix(m, 0).UTC()}
		}
		return acc[k]
	}
	for _, sh := range shares {
		r := get(sh.Worker, sh.Time.Unix()/60*60)
		r.Accepted++
		r.Work += sh.Difficulty
		if sh.Time.After(r.Last) {
			r.Last = sh.Time
		}
	}
	for k, n := range rejects {
		w, m, _ := strings.Cut(k, "@")
		var sec int64
		fmt.Sscan(m, &sec)
		get(w, sec).Rejected += n
	}
	var rows []ledger.WorkerMinute
	for _, r := range acc {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b ledger.WorkerMinute) int {
		if c := a.Minute.Compare(b.Minute); c != 0 {
			return c
		}
		return strings.Compare(a.Worker, b.Worker)
	})
	return minutesString(rows)
}

func minutesString(rows []ledger.WorkerMinute) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s %s +%d -%d %g last %d\n", r.Minute.Format("15:04"), r.Worker, r.Accepted, r.Rejected, r.Work, r.Last.UnixNano())
	}
	return b.String()
}

// TestWorkerHistoryEqualsShareRows: the per-minute worker history the
// store writes with its shares equals, minute by minute and worker by
// worker, the counts taken from the ledger's share rows (accepted
// shares, their work, the newest share) plus the rejects counted through
// CountReject; an account's history is the sum of its workers'; the
// history survives closing and reopening; WorkerStats on a minute
// boundary (read from the history) equals the scan of the shares; and a
// ledger written before the history existed gets it rolled up at Open.
func TestWorkerHistoryEqualsShareRows(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	rng := rand.New(rand.NewPCG(23, 1))
	base := ledger.Minute(time.Now()).Add(-3 * time.Hour)
	workers := []string{"alice.rig1", "alice.rig2", "bob", "carol.x.y"}
	rejects := map[string]int64{}
	var tm time.Time
	for batch := range 60 {
		var shares []Share
		for i := range 1 + rng.IntN(40) {
			// Three hours, a batch every three minutes, its shares out
			// of time order within less than a minute (as a ledger's
			// are: the scan WorkerStats is compared with relies on it).
			tm = base.Add(time.Duration(batch)*3*time.Minute + time.Duration(rng.Int64N(int64(50*time.Second))))
			shares = append(shares, Share{Time: tm, Worker: workers[rng.IntN(len(workers))],
				Difficulty: float64(int(1) << rng.IntN(10)), Achieved: 1, Nonce: uint32(batch*100 + i)})
		}
		if batch%7 == 3 {
			w := workers[rng.IntN(len(workers))]
			s.CountReject(w, tm)
			rejects[fmt.Sprintf("%s@%d", w, tm.Unix()/60*60)]++
		}
		if err := s.RecordShares(ctx, shares); err != nil {
			t.Fatal(err)
		}
	}
	// A worker with only rejected shares.
	s.CountReject("dave", base.Add(30*time.Second))
	rejects[fmt.Sprintf("dave@%d", base.Unix())]++

	check := func(s *Store, what string) {
		t.Helper()
		all, err := s.Shares(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.WorkerMinutes(ctx, "", base)
		if err != nil {
			t.Fatal(err)
		}
		want := minutesFromShares(all, rejects)
		if g := minutesString(got); g != want {
			t.Fatalf("%s: worker history\n%s\nwant (from the share rows)\n%s", what, g, want)
		}
		// One worker, and one account summed over its workers.
		var alice []Share
		for _, sh := range all {
			if ledger.AccountOf(sh.Worker) == "alice" {
				alice = append(alice, sh)
			}
		}
		acct, err := s.AccountMinutes(ctx, "alice", base)
		if err != nil {
			t.Fatal(err)
		}
		for i := range alice {
			alice[i].Worker = "alice"
		}
		aliceRejects := map[string]int64{}
		for k, n := range rejects {
			if strings.HasPrefix(k, "alice.") {
				_, m, _ := strings.Cut(k, "@")
				aliceRejects["alice@"+m] += n
			}
		}
		if g, w := minutesString(acct), minutesFromShares(alice, aliceRejects); g != w {
			t.Fatalf("%s: account alice's history\n%s\nwant\n%s", what, g, w)
		}
		for _, since := range []time.Time{base, base.Add(time.Hour), base.Add(150 * time.Minute)} {
			fromHistory, err := s.WorkerStats(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			scanned, err := s.workerStatsScan(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			if statsString(fromHistory) != statsString(scanned) || len(scanned) != len(workers) {
				t.Errorf("%s: WorkerStats since %s from the history %q, from the shares %q", what, since, statsString(fromHistory), statsString(scanned))
			}
		}
	}
	check(s, "written")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	check(s2, "reopened")
	s2.Close()

	// A ledger from before the history: the table goes, Open rolls the
	// shares up again (rejects were never in the ledger: they are gone).
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE worker_minutes`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	clear(rejects)
	s3, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	check(s3, "rolled up at Open")
}

// TestWorkerHistoryPruned: rows older than the retention are deleted by
// the writer; younger ones stay; a retention under a day is refused
// with its value named.
func TestWorkerHistoryPruned(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if err := s.SetHistoryRetention(time.Hour); err == nil || !strings.Contains(err.Error(), "1h0m0s") {
		t.Fatalf("SetHistoryRetention(1h): %v, want an error naming 1h0m0s", err)
	}
	if err := s.SetHistoryRetention(48 * time.Hour); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.RecordShares(ctx, []Share{
		statShare("old", now.Add(-49*time.Hour), 1),
		statShare("kept", now.Add(-47*time.Hour), 2),
	}); err != nil {
		t.Fatal(err)
	}
	// The writer prunes after its first commit; the next commit, on
	// the same goroutine, comes after that prune.
	if err := s.RecordShares(ctx, []Share{statShare("new", now, 4)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.WorkerMinutes(ctx, "", now.Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range got {
		names = append(names, m.Worker)
	}
	if strings.Join(names, ",") != "kept,new" {
		t.Fatalf("history after pruning at 48h: %v, want kept,new", names)
	}
}

// TestCountRejectFloodCountsEach: 8 goroutines refusing 2,500 shares
// each while shares commit: every refusal is in the history, exactly,
// after the next commit (a flood costs queued wake-ups, not counts).
func TestCountRejectFloodCountsEach(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	at := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2500 {
				s.CountReject(fmt.Sprintf("w%d", g%2), at)
				if i%500 == 0 {
					if err := s.RecordShares(ctx, []Share{statShare("w0", at, 1)}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.RecordShares(ctx, []Share{statShare("w1", at, 1)}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.WorkerMinutes(ctx, "", at)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, r := range rows {
		got += fmt.Sprintf("%s +%d -%d ", r.Worker, r.Accepted, r.Rejected)
	}
	if got != "w0 +40 -10000 w1 +1 -10000 " {
		t.Fatalf("history %q, want w0 +40 -10000 w1 +1 -10000", got)
	}
}
