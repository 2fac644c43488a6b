package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

func bestShare(worker string, achieved float64, block bool, i int) Share {
	return Share{
		Time: time.Unix(1700000000, int64(i)), Worker: worker, Extranonce1: "00000001", JobID: "1",
		Extranonce2: fmt.Sprintf("%08x", i), NTime: 1700000000, Nonce: uint32(i), Version: 0x20000000,
		Difficulty: 1, Achieved: achieved, Hash: chainmath.DoubleSHA256([]byte(fmt.Sprint(worker, i))), Block: block,
	}
}

// bestTable renders BestShares as "kind name scope difficulty" lines.
func bestTable(s *Store) string {
	var b strings.Builder
	for _, r := range s.BestShares() {
		fmt.Fprintf(&b, "%s %s %s %g %d\n", r.Kind, r.Name, r.Scope, r.Difficulty, r.Time.Nanosecond())
	}
	return b.String()
}

func TestBestShares(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	record := func(shares ...Share) {
		t.Helper()
		for _, sh := range shares {
			if err := s.RecordShare(ctx, sh); err != nil {
				t.Fatal(err)
			}
		}
	}
	record(
		bestShare("alice.rig1", 5, false, 1),
		bestShare("alice.rig2", 3, false, 2),
		bestShare("alice.rig1", 4, false, 3), // lower: changes nothing
		bestShare("bob", 9, false, 4),
		bestShare("bob", 100, true, 5), // a block: all time only
		bestShare("alice.rig2", 7, false, 6),
	)
	want := `address alice all_time 7 6
address alice since_block 7 6
address bob all_time 100 5
address bob since_block 9 4
worker alice.rig1 all_time 5 1
worker alice.rig1 since_block 5 1
worker alice.rig2 all_time 7 6
worker alice.rig2 since_block 7 6
worker bob all_time 100 5
worker bob since_block 9 4
`
	if got := bestTable(s); got != want {
		t.Fatalf("best shares:\n%s\nwant:\n%s", got, want)
	}
	// The records are durable: a reopened store has the same.
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := bestTable(s2); got != want {
		t.Fatalf("after reopening:\n%s\nwant:\n%s", got, want)
	}
	s = s2
	// A block accepted: since-block records start again, durably.
	if err := s.ResetBestSinceBlock(ctx); err != nil {
		t.Fatal(err)
	}
	record(bestShare("alice.rig1", 2, false, 7), bestShare("bob", 50, false, 8))
	want = `address alice all_time 7 6
address alice since_block 2 7
address bob all_time 100 5
address bob since_block 50 8
worker alice.rig1 all_time 5 1
worker alice.rig1 since_block 2 7
worker alice.rig2 all_time 7 6
worker bob all_time 100 5
worker bob since_block 50 8
`
	if got := bestTable(s); got != want {
		t.Fatalf("after a block:\n%s\nwant:\n%s", got, want)
	}
	s.Close()
	s3, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if got := bestTable(s3); got != want {
		t.Fatalf("after a block and reopening:\n%s\nwant:\n%s", got, want)
	}
	// The all-time records agree with the ledger.
	shares, err := s3.Shares(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	max := map[string]float64{}
	for _, sh := range shares {
		max[sh.Worker] = maxf(max[sh.Worker], sh.Achieved)
	}
	for _, b := range s3.BestShares() {
		if b.Kind == BestWorker && b.Scope == BestAllTime && max[b.Name] != b.Difficulty {
			t.Errorf("%s: best %g, ledger max %g", b.Name, b.Difficulty, max[b.Name])
		}
	}
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

// TestBestSharesOneBatch: many shares committed in one batch set one
// record per key, the highest.
func TestBestSharesOneBatch(t *testing.T) {
	s, _ := openTemp(t)
	var told []string
	s.OnNewBest(func(b BestShare, prev float64) {
		if b.Kind == BestWorker && b.Scope == BestAllTime {
			told = append(told, fmt.Sprintf("%s %g>%g", b.Name, b.Difficulty, prev))
		}
	})
	batch := []shareReq{
		{share: bestShare("w.a", 1, false, 1)},
		{many: []Share{bestShare("w.b", 8, false, 2), bestShare("w.a", 6, false, 3)}}, // RecordShares
		{share: bestShare("w.a", 2, false, 4)},
	}
	var enc segmentEncoder
	if err := s.commitShares(&enc, batch); err != nil {
		t.Fatal(err)
	}
	want := `address w all_time 8 2
address w since_block 8 2
worker w.a all_time 6 3
worker w.a since_block 6 3
worker w.b all_time 8 2
worker w.b since_block 8 2
`
	if got := bestTable(s); got != want {
		t.Fatalf("best shares:\n%s\nwant:\n%s", got, want)
	}
	// A later batch beats w.a's record: the hook hears old and new.
	if err := s.commitShares(&enc, []shareReq{{share: bestShare("w.a", 7, false, 5)}, {share: bestShare("w.b", 3, false, 6)}}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(told, ", "), "w.a 6>0, w.b 8>0, w.a 7>6"; got != want {
		t.Fatalf("hook told %q, want %q", got, want)
	}
}

// refNewBests is newBests as first written (four lookups a share), the
// reference the filtered one must agree with record for record, in order.
func refNewBests(best map[bestKey]BestShare, shares []Share) []BestShare {
	var out []BestShare
	idx := map[bestKey]int{}
	consider := func(k bestKey, sh *Share) {
		if cur, ok := best[k]; ok && cur.Difficulty >= sh.Achieved {
			return
		}
		b := BestShare{Kind: k.kind, Name: k.name, Scope: k.scope, Difficulty: sh.Achieved, Hash: sh.Hash, Time: sh.Time}
		if i, ok := idx[k]; ok {
			if out[i].Difficulty < sh.Achieved {
				out[i] = b
			}
			return
		}
		idx[k] = len(out)
		out = append(out, b)
	}
	for i := range shares {
		sh := &shares[i]
		acct := ledger.AccountOf(sh.Worker)
		consider(bestKey{BestWorker, sh.Worker, BestAllTime}, sh)
		consider(bestKey{BestAccount, acct, BestAllTime}, sh)
		if !sh.Block {
			consider(bestKey{BestWorker, sh.Worker, BestSinceBlock}, sh)
			consider(bestKey{BestAccount, acct, BestSinceBlock}, sh)
		}
	}
	return out
}

// TestNewBestsMatchesReference runs random batches (workers sharing
// accounts, ties, blocks, records held from earlier batches, a reset of
// the since-block scope) through newBests and the reference, applying
// each batch's records as a commit would.
func TestNewBestsMatchesReference(t *testing.T) {
	s := &Store{best: map[bestKey]BestShare{}}
	workers := []string{"alice.rig1", "alice.rig2", "alice", "bob", "bob.x", "carol.a.b"}
	seed := uint64(1)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	changed := 0
	for round := range 200 {
		if round == 120 {
			for k := range s.best {
				if k.scope == BestSinceBlock {
					delete(s.best, k)
				}
			}
		}
		shares := make([]Share, 1+next(40))
		for i := range shares {
			shares[i] = bestShare(workers[next(len(workers))], float64(next(round+8)), next(10) == 0, round*100+i)
		}
		want := refNewBests(s.best, shares)
		var got []BestShare
		if next(2) == 0 {
			got = s.newBests([]shareReq{{many: shares}})
		} else {
			reqs := make([]shareReq, len(shares))
			for i := range shares {
				reqs[i].share = shares[i]
			}
			got = s.newBests(reqs)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: newBests\n%v\nwant\n%v", round, got, want)
		}
		changed += len(got)
		s.applyBest(got)
	}
	if changed < 50 {
		t.Fatalf("only %d records changed in 200 rounds: the batches test too little", changed)
	}
}
