package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/jackc/pgx/v5"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/payout/payouttest"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// TestClusterPPLNS runs a cluster coordinator with --payout pplns on a
// real NATS server and a real PostgreSQL ledger, a ledger writer, a
// front-end and two agents mining to two regtest addresses: every found
// block's coinbase (read from the CHAIN stream) pays exactly the outputs
// recorded for it in PostgreSQL, and those are what an independent
// recomputation (payouttest) from the PostgreSQL shares up to the
// recorded cutoff id gives, to the satoshi, the fee output included.
func TestClusterPPLNS(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	data := t.TempDir() // before commands: removed after the front-end stopped
	start := commands(t, ctx)

	// Refused without the shared ledger.
	err := run(ctx, []string{"coordinator", "--cluster", urls, "--payout", "pplns"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--payout pplns with --cluster needs --postgres URL") {
		t.Fatalf("--payout pplns --cluster without --postgres: %v", err)
	}
	err = run(ctx, []string{"coordinator", "--postgres", dbURL}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--postgres is only used with --cluster: a single coordinator's ledger is its SQLite file") {
		t.Fatalf("--postgres without --cluster: %v", err)
	}

	start(io.Discard, "ledger", "--cluster", urls, "--replicas", "1", "--postgres", dbURL)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", "", "--postgres", dbURL,
		"--payout", "pplns", "--pplns-window", "2", "--pool-fee", "1%", "--pool-address", "pool",
		"--block-difficulty", "5e-3", "--block-time", "2s")
	out := &lockedBuffer{}
	start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", "feP", "--stratum", "127.0.0.1:0",
		"--http", "", "--data", filepath.Join(data, "feP"), "--share-difficulty", "2e-5", "--shares-per-minute", "0", "--wait", "60s")
	re := regexp.MustCompile(`frontend feP: Stratum on (\S+),`)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("front-end did not start; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	users := []string{"bcrt1qzyfpx9q4zct3sxg6rvwp68slyqsjygeyuwdjcu", "bcrt1qyg3jgffxyu5zj23t9skjutesxyerxdp4fhury6"}
	for i, u := range users {
		start(io.Discard, "agent", "--url", "stratum+tcp://"+addr, "--user", fmt.Sprintf("%s.rig%d", u, i), "--threads", "1", "--stats-interval", "1h")
	}

	led, err := pgledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	nc, err := bus.Connect(ctx, c.URLs(), "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for two PPLNS blocks in the chain paying both addresses.
	var recs []pgledger.PayoutRecord
	for {
		recs = recs[:0]
		hashes, err := led.PayoutBlocks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inChain := map[string]bool{}
		blocks, err := chainstore.Reader(js).Blocks(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			inChain[b.Hash.String()] = true
		}
		both := 0
		for _, h := range hashes {
			rec, ok, err := led.BlockPayouts(ctx, h)
			if err != nil || !ok {
				t.Fatalf("payouts of %s: %v %v", h, ok, err)
			}
			recs = append(recs, rec)
			if rec.Mode == "pplns" && len(rec.Outputs) == 3 && inChain[h.String()] {
				both++
			}
		}
		if both >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("fewer than 2 PPLNS blocks in the chain paying both addresses: %d records: %+v", len(recs), recs)
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The chain's blocks, from the CHAIN stream.
	// A payout is recorded before its block is submitted, so CHAIN may
	// not hold the newest yet; a block that lost its height to another
	// (both agents found one on the same tip) is recorded but not in it.
	byHash := map[string]store.Block{}
	byHeight := map[int64]bool{}
	for {
		blocks, err := chainstore.Reader(js).Blocks(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			byHash[b.Hash.String()] = b
			byHeight[b.Height] = true
		}
		all := true
		for _, rec := range recs {
			all = all && byHeight[rec.Height]
		}
		if all {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("CHAIN never held a block at every recorded height")
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Every share in PostgreSQL, by id.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id, worker, difficulty FROM shares ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	var shares []store.Share
	for rows.Next() {
		var id int64
		var sh store.Share
		if err := rows.Scan(&id, &sh.Worker, &sh.Difficulty); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		shares = append(shares, sh)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	rules := payouttest.Rules{Window: 2, FeeBP: 100, Dust: 546, MaxOutputs: 39,
		ScriptOf: func(w string) []byte {
			l, _, _ := strings.Cut(w, ".")
			s, err := simchain.PayoutScript(l)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}}
	rules.FeeScript, _ = simchain.PayoutScript("pool")
	pplns, stale := 0, 0
	for _, rec := range recs {
		b, ok := byHash[rec.Hash.String()]
		if !ok {
			stale++ // another block holds its height (waited for above)
			continue
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
			t.Fatal(err)
		}
		var got []payouttest.Out
		for _, o := range blk.Transactions[0].TxOut {
			if o.Value > 0 {
				got = append(got, payouttest.Out{Script: o.PkScript, Value: o.Value})
			}
		}
		var recorded []payouttest.Out
		var sum int64
		for _, o := range rec.Outputs {
			recorded = append(recorded, payouttest.Out{Script: o.Script, Value: o.Amount})
			sum += o.Amount
		}
		if fmt.Sprint(got) != fmt.Sprint(recorded) || sum != rec.Value || rec.Height != b.Height {
			t.Fatalf("block %d: coinbase pays\n%v\nrecorded (height %d, value %d, sum %d)\n%v", b.Height, got, rec.Height, rec.Value, sum, recorded)
		}
		if rec.Mode != "pplns" {
			if len(got) != 1 || rec.Cutoff != 0 {
				t.Fatalf("block %d: %s record, cutoff %d, %d outputs", b.Height, rec.Mode, rec.Cutoff, len(got))
			}
			continue
		}
		if len(got) == 3 {
			pplns++
		}
		n := 0 // shares with id up to the cutoff
		for n < len(ids) && ids[n] <= rec.Cutoff {
			n++
		}
		if n == 0 || ids[n-1] != rec.Cutoff {
			t.Fatalf("block %d: cutoff %d is no share id", b.Height, rec.Cutoff)
		}
		want, err := payouttest.Recompute(shares, int64(n), blk.Header.Bits, rec.Value, rules)
		if err != nil {
			t.Fatalf("block %d: %v", b.Height, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("block %d (cutoff id %d, %d of %d shares): coinbase pays\n%v\nthe ledger says\n%v", b.Height, rec.Cutoff, n, len(shares), got, want)
		}
		if len(got) == 3 && !bytes.Equal(got[2].Script, rules.FeeScript) {
			t.Fatalf("block %d: last output %x, want the fee to %x", b.Height, got[2].Script, rules.FeeScript)
		}
	}
	if pplns < 2 {
		t.Fatalf("%d PPLNS blocks paying both addresses in the chain, want at least 2 (%d records, %d stale)", pplns, len(recs), stale)
	}
	t.Logf("%d blocks recorded (%d stale), %d in the chain paying both addresses and the fee, checked against %d PostgreSQL shares", len(recs), stale, pplns, len(shares))
}
