package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// TestClusterSoloRecordOfUnstorableFinder: a found block whose finder
// name PostgreSQL cannot store (a NUL, invalid UTF-8: a name that got
// past authorize on an older front-end) is still recorded, at once, with
// the label quoted, so the leader submits it instead of retrying the
// record for ever (issue 20).
func TestClusterSoloRecordOfUnstorableFinder(t *testing.T) {
	pg := clustertest.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	led, err := pgledger.Open(ctx, pg.CreateDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1e6, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var pc jobs.PublisherConfig
	if err := pplnsPublisher(payout.Rules{}, led, log)(chain, &pc); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ finder, label string }{
		{"evil\x00.rig", `"evil\x00"`},
		{"bad\xff.rig", `"bad\xff"`},
		{"good.rig", "good"},
	} {
		blk := wire.NewMsgBlock(&wire.BlockHeader{Version: 0x20000000, Nonce: uint32(i)})
		cb := wire.NewMsgTx(1)
		cb.AddTxIn(&wire.TxIn{SignatureScript: []byte{0x01, byte(7 + i)}, Sequence: 0xffffffff})
		cb.AddTxOut(&wire.TxOut{Value: 5_000_000_000, PkScript: []byte{0x51, byte(i)}})
		blk.AddTransaction(cb)
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		err := pc.RecordPayout(rctx, blk, c.finder, nil)
		rcancel()
		if err != nil {
			t.Fatalf("finder %q: recording the solo payout failed (the block would be retried for ever): %v", c.finder, err)
		}
		rec, ok, err := led.BlockPayouts(ctx, chainmath.Hash(blk.BlockHash()))
		if err != nil || !ok {
			t.Fatalf("finder %q: payout record %v, %v", c.finder, ok, err)
		}
		if rec.Mode != coordinator.PayoutSolo || rec.Height != int64(7+i) || rec.Value != 5_000_000_000 || len(rec.Outputs) != 1 ||
			rec.Outputs[0].Label != c.label || rec.Outputs[0].Amount != 5_000_000_000 {
			t.Fatalf("finder %q: record %+v, want solo at height %d paying 5000000000 sat to label %q", c.finder, rec, 7+i, c.label)
		}
	}
}
