package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// BenchmarkPPLNSJob measures building a PPLNS job's payout from a ledger
// of 100,032 shares of 50 addresses when the window holds all of them
// (the worst case: a window the ledger never fills): one op is one
// pplnsFor, the work a new block or a job refresh adds.
func BenchmarkPPLNSJob(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(b.TempDir(), "powcoord.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1e6, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer chain.Close()
	const n, batch = 100_032, 64
	var wg sync.WaitGroup
	for i := 0; i < n; i += batch {
		for j := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.RecordShare(ctx, ledger.Share{Time: time.Now(), Worker: fmt.Sprintf("miner%d.rig", (i+j)%50), Difficulty: []float64{1, 2, 4}[j%3]})
			}()
		}
		wg.Wait()
	}
	c, err := New(Config{Source: chain, Store: st, Payout: PayoutPPLNS, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		pj, err := c.pplnsFor(chain.Current())
		if err != nil || pj == nil || len(pj.outputs) != DefaultMaxPayoutOutputs {
			b.Fatalf("payout: %v, %v", pj, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "shares/s")
}
