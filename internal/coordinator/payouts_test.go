package coordinator

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

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
		if err := st.RecordShare(ctx, store.Share{Time: time.Now(), Worker: sh.w, Difficulty: sh.d}); err != nil {
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
