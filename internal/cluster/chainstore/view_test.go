package chainstore_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/simchain"
)

// TestView: a View made before the chain exists reads the genesis, then
// each block a leader appends (with a term marker and settings between
// them in the stream), and answers Blocks, LastBlocks and Tip as the
// chain is; a second leader's block after its claim comes in order.
func TestView(t *testing.T) {
	cl := clustertest.StartNATSCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, cl.URLs(), "chainstore-view-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 1}); err != nil {
		t.Fatalf("%v\n%s", err, cl.Logs())
	}
	v := chainstore.NewView(js)
	if _, ok, err := v.Tip(ctx); ok || err != nil {
		t.Fatalf("tip of an empty stream: %v %v", ok, err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := func(st simchain.BlockStore) simchain.Config {
		return simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1e-6, Logger: log}
	}
	a, err := chainstore.Open(ctx, js, 1, "coord-a")
	if err != nil {
		t.Fatal(err)
	}
	chainA, err := simchain.Open(ctx, cfg(a))
	if err != nil {
		t.Fatal(err)
	}
	want := []chainmath.Hash{chainA.Current().PrevHash} // genesis
	check := func(step string) {
		t.Helper()
		tip, ok, err := v.Tip(ctx)
		if err != nil || !ok || tip.Height != int64(len(want)-1) || tip.Hash != want[len(want)-1] {
			t.Fatalf("%s: tip %d %s (%v %v), want %d %s", step, tip.Height, tip.Hash, ok, err, len(want)-1, want[len(want)-1])
		}
		all, err := v.Blocks(ctx, 0, 0)
		if err != nil || len(all) != len(want) {
			t.Fatalf("%s: %d blocks (%v), want %d", step, len(all), err, len(want))
		}
		for i, b := range all {
			if b.Height != int64(i) || b.Hash != want[i] {
				t.Fatalf("%s: block %d is %d %s, want %s", step, i, b.Height, b.Hash, want[i])
			}
		}
		ref, err := chainstore.Reader(js).Blocks(ctx, 0, 0)
		if err != nil || len(ref) != len(all) || ref[len(ref)-1].Raw == nil || string(ref[len(ref)-1].Raw) != string(all[len(all)-1].Raw) {
			t.Fatalf("%s: Reader has %d blocks (%v), the View %d", step, len(ref), err, len(all))
		}
		last, err := v.LastBlocks(ctx, 2)
		if n := min(2, len(want)); err != nil || len(last) != n || last[n-1].Hash != want[len(want)-1] || last[0].Hash != want[len(want)-n] {
			t.Fatalf("%s: LastBlocks(2) %d blocks (%v)", step, len(last), err)
		}
		if len(want) >= 3 {
			some, err := v.Blocks(ctx, 1, 1)
			if err != nil || len(some) != 1 || some[0].Hash != want[1] {
				t.Fatalf("%s: Blocks(1, 1): %d blocks (%v)", step, len(some), err)
			}
			if rest, err := v.Blocks(ctx, int64(len(want)), 5); err != nil || len(rest) != 0 {
				t.Fatalf("%s: Blocks past the tip: %d (%v)", step, len(rest), err)
			}
		}
	}
	check("genesis")
	for i := range 3 {
		h, err := mineOn(t, ctx, chainA, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, h)
		check("A's block")
	}
	b, err := chainstore.Open(ctx, js, 2, "coord-b")
	if err != nil {
		t.Fatal(err)
	}
	check("B's claim")
	chainB, err := simchain.Open(ctx, cfg(b))
	if err != nil {
		t.Fatal(err)
	}
	h, err := mineOn(t, ctx, chainB, 9)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, h)
	check("B's block")
	if got, err := v.LastBlocks(ctx, 0); err != nil || len(got) != 0 {
		t.Fatalf("LastBlocks(0): %d (%v)", len(got), err)
	}
}

// BenchmarkChainTip reads the tip of a 200-block chain in CHAIN as
// GET /api/status on a standby does, each second: by reading the whole
// stream (Reader) and through a View (one stream info request once
// loaded).
func BenchmarkChainTip(b *testing.B) {
	cl := clustertest.StartNATSCluster(b, 1)
	ctx := context.Background()
	nc, err := bus.Connect(ctx, cl.URLs(), "chainstore-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 1}); err != nil {
		b.Fatal(err)
	}
	st, err := chainstore.Open(ctx, js, 1, "bench")
	if err != nil {
		b.Fatal(err)
	}
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: time.Hour, StartDifficulty: 1e-9, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 199 {
		blk, err := nodetest.Solve(chain.Current(), []byte{0x51}, uint64(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := chain.Submit(ctx, blk, "miner"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Reader", func(b *testing.B) {
		for b.Loop() {
			if bs, err := chainstore.Reader(js).Blocks(ctx, 0, 0); err != nil || len(bs) != 200 {
				b.Fatal(len(bs), err)
			}
		}
	})
	b.Run("View", func(b *testing.B) {
		v := chainstore.NewView(js)
		for b.Loop() {
			if tip, ok, err := v.Tip(ctx); err != nil || !ok || tip.Height != 199 {
				b.Fatal(tip.Height, err)
			}
		}
	})
}
