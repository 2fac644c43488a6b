package chainstore_test

import (
	"context"
	"errors"
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
	"github.com/powcoord/powcoord/internal/work"
)

func mineOn(t *testing.T, ctx context.Context, c *simchain.Chain, en uint64) (chainmath.Hash, error) {
	t.Helper()
	blk, err := nodetest.Solve(c.Current(), []byte{0x51}, en)
	if err != nil {
		t.Fatal(err)
	}
	return chainmath.Hash(blk.BlockHash()), c.Submit(ctx, blk, "miner")
}

// TestTwoLeadersCannotForkTheChain: coordinator A extends the embedded
// chain in CHAIN; B is elected and claims the stream; A's next block is
// refused (fenced) and never stored, B reloads the chain — A's blocks
// included, re-validated — and extends it. The stream holds one linear
// chain.
func TestTwoLeadersCannotForkTheChain(t *testing.T) {
	cl := clustertest.StartNATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, cl.URLs(), "chainstore-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 3}); err != nil {
		t.Fatalf("%v\n%s", err, cl.Logs())
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
	var aHashes []chainmath.Hash
	for i := range 2 {
		h, err := mineOn(t, ctx, chainA, uint64(i))
		if err != nil {
			t.Fatalf("A's block %d: %v", i+1, err)
		}
		aHashes = append(aHashes, h)
	}

	b, err := chainstore.Open(ctx, js, 2, "coord-b")
	if err != nil {
		t.Fatal(err)
	}
	// A, deposed, finds another block: the stream refuses it.
	_, err = mineOn(t, ctx, chainA, 7)
	if err == nil || !errors.Is(err, bus.ErrFenced) || work.IsRejected(err) {
		t.Fatalf("deposed leader's block: %v, want an error wrapping bus.ErrFenced", err)
	}
	chainB, err := simchain.Open(ctx, cfg(b))
	if err != nil {
		t.Fatalf("B loading the chain A left: %v", err)
	}
	if tip := chainB.Current(); tip.Height != 3 || tip.PrevHash != aHashes[1] {
		t.Fatalf("B's next height %d on %s, want 3 on A's last block %s", tip.Height, tip.PrevHash, aHashes[1])
	}
	bHash, err := mineOn(t, ctx, chainB, 9)
	if err != nil {
		t.Fatalf("B's block: %v", err)
	}
	blocks, err := chainstore.Reader(js).Blocks(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 4 {
		t.Fatalf("stream holds %d blocks, want genesis + 2 of A + 1 of B", len(blocks))
	}
	for i, blk := range blocks {
		if blk.Height != int64(i) {
			t.Fatalf("block %d has height %d", i, blk.Height)
		}
	}
	if blocks[1].Hash != aHashes[0] || blocks[2].Hash != aHashes[1] || blocks[3].Hash != bHash {
		t.Fatal("stream blocks are not A's two then B's one")
	}
	// The chain's settings travel with it: B kept A's genesis settings.
	if v, ok, err := chainstore.Reader(js).Meta(ctx, "simchain.block_time_seconds"); err != nil || !ok || v != "10" {
		t.Fatalf("block time setting %q (stored %v, err %v), want 10", v, ok, err)
	}
	if _, err := chainstore.Reader(js).Blocks(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := chainstore.Reader(js).AddBlock(ctx, blocks[0]); err == nil {
		t.Fatal("a read-only store took a block")
	}
}
