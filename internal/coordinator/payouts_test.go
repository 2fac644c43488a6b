package coordinator

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// TestWindowSkipsUnpayableShares: a ledger row that cannot be paid (a
// worker with no payout script, a difficulty that is not positive) is
// skipped and counted, and the rest of the window is paid as usual: one
// bad row must not stop every job.
func TestWindowSkipsUnpayableShares(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	for _, sh := range []struct {
		w string
		d float64
	}{{"alice.a", 1}, {".rig", 1}, {"bob", 0}, {"bob", 3}} {
		if err := st.RecordShare(ctx, ledger.Share{Time: time.Now(), Worker: sh.w, Difficulty: sh.d}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Config{Source: chain, Store: st, Payout: PayoutPPLNS, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.window(ctx, chain.Current())
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := simchain.PayoutScript("alice")
	bob, _ := simchain.PayoutScript("bob")
	one, _ := payout.ShareUnits(1)
	three, _ := payout.ShareUnits(3)
	if w.Skipped != 2 || w.Cutoff != 4 || len(w.Work) != 2 || string(w.Work[0].Script) != string(bob) || w.Work[0].Units.Cmp(three) != 0 ||
		string(w.Work[1].Script) != string(alice) || w.Work[1].Units.Cmp(one) != 0 {
		t.Fatalf("window: skipped %d cutoff %d work %v", w.Skipped, w.Cutoff, w.Work)
	}
	// 50 BTC split 3:1.
	if len(w.Outputs) != 2 || w.Outputs[0].Value != 3_750_000_000 || w.Outputs[1].Value != 1_250_000_000 {
		t.Fatalf("outputs %+v", w.Outputs)
	}
	// The job built at New carries them.
	pj := c.jobs.current().pplns
	if pj == nil || len(pj.outputs) != 2 || pj.rec.Cutoff != 4 || pj.rec.Outputs[0].Label != "bob" || pj.rec.Outputs[1].Label != "alice" {
		t.Fatalf("job payout %+v", pj)
	}
}

// TestPPLNSAndFixedOutputs: a payout.Plan of its own (a cluster
// leader's computation) gives
// the outputs and record a single coordinator's job has on the same
// ledger, and a solo coordinator whose template carries fixed coinbase
// outputs (a cluster front-end) pays exactly those for every worker and
// records nothing itself.
func TestPPLNSAndFixedOutputs(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	for i, w := range []string{"alice.a", "bob.b", "bob.c", "carol"} {
		if err := st.RecordShare(ctx, ledger.Share{Time: time.Now(), Worker: w, Difficulty: float64(1 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	pool, _ := simchain.PayoutScript("pool")
	cfg := Config{Source: chain, Store: st, Payout: PayoutPPLNS, PoolFeeBasisPoints: 150, PoolScript: pool, Logger: log}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := payout.NewPlan(payout.Rules{FeeBasisPoints: 150, FeeScript: pool}, st, chain.PayoutScript, log)
	if err != nil {
		t.Fatal(err)
	}
	outs, rec, err := pp.Job(ctx, chain.Current())
	if err != nil {
		t.Fatal(err)
	}
	pj := c.jobs.current().pplns
	if pj == nil || rec == nil || !reflect.DeepEqual(outs, pj.outputs) || !reflect.DeepEqual(*rec, pj.rec) || len(outs) != 3 {
		t.Fatalf("Plan.Job = %v %+v, the coordinator's job %+v", outs, rec, pj)
	}
	if _, err := payout.NewPlan(payout.Rules{FeeBasisPoints: 100}, st, chain.PayoutScript, log); err == nil {
		t.Fatal("NewPlan took a fee without a pool script")
	}

	// A solo coordinator on a template with those outputs fixed.
	solo, err := New(Config{Source: chain, Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *chain.Current()
	tmpl.CoinbaseOutputs = outs
	if _, err := solo.jobs.update(&tmpl); err != nil {
		t.Fatal(err)
	}
	ep := solo.jobs.current()
	if ep.pplns == nil || !ep.pplns.fixed {
		t.Fatalf("epoch payout %+v, want the fixed outputs", ep.pplns)
	}
	for _, w := range []string{"dave", "alice"} {
		script, _ := simchain.PayoutScript(w)
		cb, err := ep.coinbase(script, 0)
		if err != nil {
			t.Fatal(err)
		}
		raw := append(append(append([]byte(nil), cb.coinb1...), make([]byte, ep.en1Size+ep.en2Size)...), cb.coinb2...)
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		var paying []*wire.TxOut
		for _, o := range tx.TxOut {
			if o.Value > 0 {
				paying = append(paying, o)
			}
		}
		if !reflect.DeepEqual(paying, outs) {
			t.Fatalf("worker %s: coinbase pays %v, want %v", w, paying, outs)
		}
	}
}
