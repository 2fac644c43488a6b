package node_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
)

// TestCoordinatorBlockPendingAcrossNodeRestart is issue 9's defect 3 end
// to end: a miner finds a block through the coordinator while the only
// btcd is down. The coordinator records it, tells the miner true, keeps
// it pending and retries; once btcd is back (simnet keeps its chain over
// a clean stop) the block is submitted and becomes btcd's tip.
func TestCoordinatorBlockPendingAcrossNodeRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "simnet")
	key := newKey(t, 11)
	a, err := address.NewAddressWitnessPubKeyHash(address.Hash160(key.priv.PubKey().SerializeCompressed()), &chaincfg.SimNetParams)
	if err != nil {
		t.Fatal(err)
	}
	user := a.EncodeAddress() // a simnet address: the payout of the block
	src := newSource(t, ctx, b, "", func(c *node.Config) { c.PollInterval = 50 * time.Millisecond })
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	coord, err := coordinator.New(coordinator.Config{
		Source: src, Store: st, ShareDifficulty: 1e-9, SharesPerMinute: -1, Logger: testLogger(t),
		BlockRetryMin: 20 * time.Millisecond, BlockRetryMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()

	m := dialMiner(t, ln.Addr().String(), user)
	submit, hash := m.solveBlock(t)
	height := src.Current().Height

	b.Stop()
	if res := m.call(t, submit); string(res.Result) != "true" {
		t.Fatalf("block share while the node is down: %s %s, want true (the share is valid)", res.Result, res.Error)
	}
	fb, ok, err := st.FoundBlock(ctx, hash)
	if err != nil || !ok || fb.State != store.FoundPending || fb.Height != height {
		t.Fatalf("found block while btcd is down: %+v ok=%v err=%v, want pending at height %d", fb, ok, err, height)
	}
	if coord.PendingBlocks() != 1 {
		t.Fatalf("pending blocks %d, want 1", coord.PendingBlocks())
	}

	b.Start()
	waitFor(t, 30*time.Second, "btcd's tip to be the pending block", func() bool {
		best, err := b.BestBlockHash(ctx)
		return err == nil && best == hash.String()
	})
	waitFor(t, 10*time.Second, "the found block to be settled accepted", func() bool {
		fb, ok, err := st.FoundBlock(ctx, hash)
		return err == nil && ok && fb.State == store.FoundAccepted
	})
	fb, _, _ = st.FoundBlock(ctx, hash)
	if fb.Attempts < 2 || coord.PendingBlocks() != 0 {
		t.Fatalf("found block accepted after %d attempts with %d still pending; want at least 2 attempts, none pending", fb.Attempts, coord.PendingBlocks())
	}
	blocks, err := st.Blocks(ctx, 0, 0)
	if err != nil || len(blocks) != 1 || blocks[0].Hash != hash {
		t.Fatalf("blocks list %d (%v), want the accepted block", len(blocks), err)
	}
	t.Logf("block %s at height %d accepted by the restarted btcd after %d attempts", hash, height, fb.Attempts)
}
