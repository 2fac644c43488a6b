package pgledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger"
)

func historyString(rows []ledger.WorkerMinute) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s %s +%d -%d %g last %d\n", r.Minute.Format("01-02 15:04"), r.Worker, r.Accepted, r.Rejected, r.Work, r.Last.UnixMicro())
	}
	return b.String()
}

// historyFromShares rolls up the ledger's share rows (as Shares reads
// them back), with worker names mapped by name.
func historyFromShares(t *testing.T, l *Ledger, name func(string) string) string {
	t.Helper()
	all, err := l.Shares(ctx(t), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var r ledger.Rollup
	for i := range all {
		if w := name(all[i].Worker); w != "" {
			all[i].Worker = w
			r.Share(&all[i])
		}
	}
	return historyString(r.Rows())
}

// recentShares are n shares of four workers over the three hours before
// now's minute, hashes numbered from first.
func recentShares(rng *rand.Rand, first, n int) []Share {
	base := ledger.Minute(time.Now()).Add(-3 * time.Hour)
	workers := []string{"alice.rig1", "alice.rig2", "bob", "carol.x.y"}
	out := make([]Share, n)
	for i := range out {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(first+i))
		d := float64(int(1) << rng.IntN(10))
		out[i] = Share{Time: base.Add(time.Duration(rng.Int64N(int64(3 * time.Hour)))).Truncate(time.Microsecond),
			Worker: workers[rng.IntN(len(workers))], Extranonce1: "00", JobID: "1", Extranonce2: "00",
			Difficulty: d, Achieved: d, Hash: chainmath.Hash(sha256.Sum256(b[:]))}
	}
	return out
}

// TestWorkerHistoryEqualsShareRows: the worker history Record writes
// with the shares equals, minute by minute, the counts taken from the
// share rows, also when batches are redelivered (a share stored once is
// counted once); an account's history sums its workers'; WorkerStats on
// a minute boundary (from the history) equals the sums over the share
// rows.
func TestWorkerHistoryEqualsShareRows(t *testing.T) {
	l, _ := open(t)
	rng := rand.New(rand.NewPCG(23, 2))
	all := recentShares(rng, 0, 3000)
	for lo := 0; lo < len(all); lo += 100 {
		batch := all[lo : lo+100]
		if lo >= 200 {
			// Every batch carries 50 shares of the one before: a front-end's
			// redelivery.
			batch = all[lo-50 : lo+100]
		}
		if _, err := l.Record(ctx(t), batch); err != nil {
			t.Fatal(err)
		}
	}
	since := ledger.Minute(time.Now()).Add(-4 * time.Hour)
	got, err := l.WorkerMinutes(ctx(t), "", since)
	if err != nil {
		t.Fatal(err)
	}
	want := historyFromShares(t, l, func(w string) string { return w })
	if n := strings.Count(want, "\n"); n < 300 {
		t.Fatalf("only %d worker minutes in the test data", n)
	}
	if g := historyString(got); g != want {
		t.Fatalf("worker history\n%s\nwant (from the share rows)\n%s", g, want)
	}
	acct, err := l.AccountMinutes(ctx(t), "alice", since)
	if err != nil {
		t.Fatal(err)
	}
	wantAlice := historyFromShares(t, l, func(w string) string {
		if ledger.AccountOf(w) == "alice" {
			return "alice"
		}
		return ""
	})
	if g := historyString(acct); g != wantAlice {
		t.Fatalf("account alice's history\n%s\nwant\n%s", g, wantAlice)
	}
	for _, from := range []time.Time{since, since.Add(2 * time.Hour), since.Add(3*time.Hour + 30*time.Minute)} {
		stats, err := l.WorkerStats(ctx(t), from)
		if err != nil {
			t.Fatal(err)
		}
		var g, w strings.Builder
		for _, s := range stats {
			fmt.Fprintf(&g, "%s %d %g %d\n", s.Worker, s.Shares, s.Work, s.Last.UnixMicro())
		}
		rows, err := l.pool.Query(ctx(t), `SELECT worker, count(*), sum(difficulty), max(time) FROM shares WHERE time >= $1 GROUP BY worker ORDER BY worker`, from)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var (
				name string
				n    int64
				work float64
				last time.Time
			)
			rows.Scan(&name, &n, &work, &last)
			fmt.Fprintf(&w, "%s %d %g %d\n", name, n, work, last.UnixMicro())
		}
		rows.Close()
		if g.String() != w.String() || w.Len() == 0 {
			t.Errorf("WorkerStats since %s from the history:\n%s\nfrom the share rows:\n%s", from, g.String(), w.String())
		}
	}
}

// TestMigrateWorkerHistory: a database from before the worker history
// (schema version 5) gets its shares of the retention span rolled up by
// the migration, equal to the share rows minute by minute; shares older
// than eight days are left out.
func TestMigrateWorkerHistory(t *testing.T) {
	pg := clustertest.StartPostgres(t)
	url := pg.CreateDatabase(t)
	pool, err := pgxpool.New(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	old := &Ledger{pool: pool, url: url}
	if err := old.applyMigrations(ctx(t), 5); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(23, 3))
	shares := recentShares(rng, 0, 500)
	ancient := recentShares(rng, 500, 5)
	for i := range ancient {
		ancient[i].Time = ancient[i].Time.Add(-9 * 24 * time.Hour)
	}
	for _, sh := range append(shares, ancient...) {
		if _, err := pool.Exec(ctx(t), `INSERT INTO shares
			(hash, time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, block)
			VALUES ($1, $2, $3, '', '', '', 0, 0, 0, $4, $5, false)`, sh.Hash[:], sh.Time, sh.Worker, sh.Difficulty, sh.Achieved); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Open(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.WorkerMinutes(ctx(t), "", time.Now().Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The share rows of the last eight days, rolled up.
	var r ledger.Rollup
	for i := range shares {
		r.Share(&shares[i])
	}
	if g, w := historyString(got), historyString(r.Rows()); g != w {
		t.Fatalf("history after the migration\n%s\nwant\n%s", g, w)
	}
}
