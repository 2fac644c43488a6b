package pgledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// oldBest is the best shares query of schema version 3, over every share
// row: what best_shares must equal.
const oldBest = `SELECT DISTINCT ON (worker) worker, achieved, hash, time FROM shares
	ORDER BY worker, achieved DESC, time, hash`

func queryBest(t *testing.T, l *Ledger, q string) string {
	t.Helper()
	rows, err := l.pool.Query(ctx(t), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var (
			w    string
			a    float64
			h    []byte
			when time.Time
		)
		if err := rows.Scan(&w, &a, &h, &when); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %v %x %s\n", w, a, h, when.UTC().Format(time.RFC3339Nano))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestBestSharesTableMatchesAllShares: best_shares, raised batch by batch
// by two writers (two Ledgers, each with its own floors) recording
// overlapping batches in different orders, with ties of achieved
// difficulty across batches (the earlier share, then the lower hash must
// win whichever batch commits first) and redeliveries, ends equal to the
// best shares computed over every stored share.
func TestBestSharesTableMatchesAllShares(t *testing.T) {
	pg := clustertest.StartPostgres(t)
	url := pg.CreateDatabase(t)
	var ls [2]*Ledger
	for i := range ls {
		l, err := Open(ctx(t), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		ls[i] = l
	}
	r := rand.New(rand.NewPCG(3, 4))
	const total, batch = 3000, 50
	all := make([]Share, total)
	for i := range all {
		sh := share(i, fmt.Sprintf("w%d", r.IntN(40)))
		// Few distinct values: many ties, some at the same microsecond.
		sh.Achieved = float64(1 + r.IntN(12))
		sh.Time = t0.Add(time.Duration(r.IntN(total/3)) * time.Millisecond).Add(time.Duration(r.IntN(3)) * time.Nanosecond)
		all[i] = sh
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*total/batch)
	for w, l := range ls {
		wg.Go(func() {
			for b := range total / batch {
				k := b
				if w == 1 {
					k = total/batch - 1 - b
				}
				s := all[k*batch : (k+1)*batch]
				if _, err := l.Record(context.Background(), s); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A redelivery of every batch, shuffled, after the floors are warm.
	for _, b := range r.Perm(total / batch) {
		if n, err := ls[0].Record(ctx(t), all[b*batch:(b+1)*batch]); err != nil || n != 0 {
			t.Fatalf("redelivered batch %d: Record = %d, %v; want 0, nil", b, n, err)
		}
	}
	if n := count(t, ls[0]); n != total {
		t.Fatalf("ShareCount = %d, want %d", n, total)
	}
	want := queryBest(t, ls[0], oldBest)
	got := queryBest(t, ls[0], `SELECT worker, achieved, hash, time FROM best_shares ORDER BY worker`)
	if got != want {
		t.Fatalf("best_shares:\n%s\nwant (over all shares):\n%s", got, want)
	}
	if strings.Count(got, "\n") != 40 {
		t.Fatalf("best_shares has %d workers, want 40", strings.Count(got, "\n"))
	}
}

// TestRedeliveredBatchesConcurrentlyStoredOnce: the same batches (with
// shares repeated inside them) delivered to two writers at once, as a
// stream redelivers an unacknowledged message to a second ledger writer,
// are stored once each: no error, as many rows as distinct hashes, each
// hash once, and the new-share counts of all calls add up to that.
func TestRedeliveredBatchesConcurrentlyStoredOnce(t *testing.T) {
	pg := clustertest.StartPostgres(t)
	url := pg.CreateDatabase(t)
	var ls [2]*Ledger
	for i := range ls {
		l, err := Open(ctx(t), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		ls[i] = l
	}
	const batches, per = 40, 120
	var (
		mu     sync.Mutex
		stored int
		errs   []error
	)
	for b := range batches {
		s := make([]Share, 0, per+per/4)
		for i := range per {
			s = append(s, share(b*per+i, fmt.Sprintf("w%d", i%9)))
		}
		s = append(s, s[:per/4]...) // repeated inside the batch
		var wg sync.WaitGroup
		for _, l := range ls {
			for range 2 {
				wg.Go(func() {
					n, err := l.Record(context.Background(), s)
					mu.Lock()
					defer mu.Unlock()
					stored += n
					if err != nil {
						errs = append(errs, err)
					}
				})
			}
		}
		wg.Wait()
	}
	if len(errs) > 0 {
		t.Fatalf("%d Record calls failed, first: %v", len(errs), errs[0])
	}
	if stored != batches*per {
		t.Fatalf("Record calls reported %d new shares, want %d", stored, batches*per)
	}
	var rows, hashes, minID, maxID int64
	if err := ls[0].pool.QueryRow(ctx(t), `SELECT count(*), count(DISTINCT hash), min(id), max(id) FROM shares`).Scan(&rows, &hashes, &minID, &maxID); err != nil {
		t.Fatal(err)
	}
	if rows != batches*per || hashes != rows {
		t.Fatalf("shares holds %d rows of %d distinct hashes, want %d of %d", rows, hashes, batches*per, batches*per)
	}
	// Nothing inserted and rolled back: ids are dense.
	if maxID-minID+1 != rows {
		t.Fatalf("ids %d..%d for %d rows: a batch inserted and rolled back", minID, maxID, rows)
	}
}

// TestMigrateVersion3Database: a database written by schema version 3
// (shares indexed by (worker, time), (time) and (worker, achieved DESC))
// migrates to the current schema with every share, block and payout row
// intact, best_shares filled with each worker's best, the old indexes
// replaced, and the queries on shares served by the new indexes.
func TestMigrateVersion3Database(t *testing.T) {
	pg := clustertest.StartPostgres(t)
	url := pg.CreateDatabase(t)
	pool, err := pgxpool.New(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	old := &Ledger{pool: pool, url: url}
	if err := old.applyMigrations(ctx(t), 3); err != nil {
		t.Fatal(err)
	}
	// Rows as version 3's Record stored them (ON CONFLICT on the hash).
	const n = 5000
	in := make([]Share, n)
	for i := range in {
		in[i] = share(i, fmt.Sprintf("w%d.rig", i%13))
		in[i].Achieved = float64(i%997) / 7
	}
	for lo := 0; lo < n; lo += 1000 {
		for _, sh := range in[lo : lo+1000] {
			if _, err := pool.Exec(ctx(t), `INSERT INTO shares
				(hash, time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, block)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (hash) DO NOTHING`,
				sh.Hash[:], sh.Time, sh.Worker, sh.Extranonce1, sh.JobID, sh.Extranonce2,
				int64(sh.NTime), int64(sh.Nonce), int64(sh.Version), sh.Difficulty, sh.Achieved, sh.Block); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantBest := queryBest(t, old, oldBest)
	if err := old.AddBlock(ctx(t), "sim", block(1, "a")); err != nil {
		t.Fatal(err)
	}
	rec := PayoutRecord{Hash: block(1, "a").Hash, Height: 1, Mode: "pplns", Cutoff: 4321, Window: "12.5", Value: 5000,
		Outputs: []PayoutOutput{{Script: []byte{0x51}, Amount: 4000, Work: "10", Label: "w1"}, {Script: []byte{0x52}, Amount: 1000, Fee: true}}}
	// As version 3's RecordPayouts stored it (no rules column yet).
	if _, err := pool.Exec(ctx(t), `INSERT INTO payout_blocks (hash, height, mode, cutoff, window_size, value) VALUES ($1, $2, $3, $4, $5, $6)`,
		rec.Hash[:], rec.Height, rec.Mode, rec.Cutoff, rec.Window, rec.Value); err != nil {
		t.Fatal(err)
	}
	for i, o := range rec.Outputs {
		if _, err := pool.Exec(ctx(t), `INSERT INTO payouts (hash, idx, script, amount, work, fee, label) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			rec.Hash[:], i, o.Script, o.Amount, o.Work, o.Fee, o.Label); err != nil {
			t.Fatal(err)
		}
	}
	var sumDiff, sumAch float64
	if err := pool.QueryRow(ctx(t), `SELECT sum(difficulty), sum(achieved) FROM shares`).Scan(&sumDiff, &sumAch); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	l, err := Open(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if v, err := l.SchemaVersion(ctx(t)); err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
	if c := count(t, l); c != n {
		t.Fatalf("ShareCount after migration = %d, want %d", c, n)
	}
	got, err := l.Shares(ctx(t), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].Time = got[i].Time.UTC()
		if got[i] != in[i] {
			t.Fatalf("share %d after migration:\n got %+v\nwant %+v", i, got[i], in[i])
		}
	}
	if len(got) != n {
		t.Fatalf("Shares after migration: %d, want %d", len(got), n)
	}
	var d2, a2 float64
	if err := l.pool.QueryRow(ctx(t), `SELECT sum(difficulty), sum(achieved) FROM shares`).Scan(&d2, &a2); err != nil || d2 != sumDiff || a2 != sumAch {
		t.Fatalf("sums after migration %v, %v (%v); want %v, %v", d2, a2, err, sumDiff, sumAch)
	}
	if b := queryBest(t, l, `SELECT worker, achieved, hash, time FROM best_shares ORDER BY worker`); b != wantBest || strings.Count(b, "\n") != 13 {
		t.Fatalf("best_shares after migration:\n%s\nwant:\n%s", b, wantBest)
	}
	if tip, ok, err := l.Tip(ctx(t), "sim"); err != nil || !ok || tip.Hash != block(1, "a").Hash {
		t.Fatalf("Tip after migration = %v, %v, %v", tip.Hash, ok, err)
	}
	if p, ok, err := l.BlockPayouts(ctx(t), rec.Hash); err != nil || !ok || p.Cutoff != 4321 || p.Window != "12.5" || len(p.Outputs) != 2 || p.Outputs[1].Amount != 1000 || !p.Outputs[1].Fee {
		t.Fatalf("BlockPayouts after migration = %+v, %v, %v", p, ok, err)
	}
	// Recording on after the migration: the ids go on, a redelivered
	// old share is skipped, best_shares rises from the migrated bests.
	more := []Share{in[7], share(n, "w0.rig")}
	more[1].Achieved = 1000
	if k, err := l.Record(ctx(t), more); err != nil || k != 1 {
		t.Fatalf("Record after migration = %d, %v; want 1, nil", k, err)
	}
	best, err := l.BestShares(ctx(t), time.Time{})
	if err != nil || len(best) != 13 || best[0].Worker != "w0.rig" || best[0].Difficulty != 1000 || best[0].Hash != more[1].Hash {
		t.Fatalf("BestShares after migration = %+v, %v", best, err)
	}

	var idx []string
	rows, err := l.pool.Query(ctx(t), `SELECT indexname FROM pg_indexes WHERE tablename = 'shares' ORDER BY indexname`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		idx = append(idx, s)
	}
	rows.Close()
	if want := []string{"shares_hash_key", "shares_pkey", "shares_time_brin", "shares_worker_hash"}; !slices.Equal(idx, want) {
		t.Fatalf("indexes on shares after migration: %v, want %v", idx, want)
	}
	// Each query on shares can be served by an index (sequential scans
	// off: the table is small enough that the planner would scan it).
	conn, err := l.pool.Acquire(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx(t), `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ query, index string }{
		{`SELECT worker, sum(difficulty) FROM shares WHERE time >= '2026-03-01 12:00:04Z' GROUP BY worker`, "shares_time_brin"},
		{`SELECT DISTINCT ON (worker) worker, achieved, hash, time FROM shares WHERE time >= '2026-03-01 12:00:04Z' AND NOT block ORDER BY worker, achieved DESC, time, hash`, "shares_time_brin"},
		{`SELECT hash FROM shares WHERE worker = 'w3.rig' ORDER BY id`, "shares_worker_hash"},
		{`SELECT id, worker, difficulty FROM shares WHERE id < 100 ORDER BY id DESC LIMIT 10`, "shares_pkey"},
		{`SELECT 1 FROM shares WHERE hash = '\x00'::bytea`, "shares_hash_key"},
	} {
		var plan strings.Builder
		rows, err := conn.Query(ctx(t), "EXPLAIN "+q.query)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			plan.WriteString(s + "\n")
		}
		rows.Close()
		if !strings.Contains(plan.String(), q.index) {
			t.Fatalf("%s\ndoes not use %s:\n%s", q.query, q.index, plan.String())
		}
	}
}
