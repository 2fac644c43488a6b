package node_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
)

// TestBlockOnStaleJobCountedOrphaned: on a regtest btcd, a miner solves a
// block on a job that an outside block has just made stale. The
// coordinator submits it (right: it might win a race), btcd takes it onto
// a side chain, and it is counted orphaned, not found: status, event,
// found-block record, blocks list and the finder's paid total say so.
// A block found next on the current job stays accepted. Then a reorg
// (two outside blocks on the side chain) swaps them: the side-chain
// block is back on the best chain and accepted, the other is orphaned.
// The old code counted every block btcd took as found (2 found, 0
// orphaned, 100 BTC paid).
func TestBlockOnStaleJobCountedOrphaned(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 21)
	outsider := newKey(t, 22)
	src := newSource(t, ctx, b, "", func(c *node.Config) { c.PollInterval = 50 * time.Millisecond })
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events := make(chan coordinator.BlockEvent, 4)
	reg := prometheus.NewRegistry()
	coord, err := coordinator.New(coordinator.Config{
		Source: src, Store: st, ShareDifficulty: 1e-9, SharesPerMinute: -1, Logger: testLogger(t), Registerer: reg,
		OnBlock: func(ev coordinator.BlockEvent) { events <- ev },
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
	nextEvent := func() coordinator.BlockEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(30 * time.Second): // failure only: the event comes within a second
			t.Fatal("no block event after 30 s")
			return coordinator.BlockEvent{}
		}
	}
	counts := func(found, orphaned int64) func() bool {
		return func() bool {
			s := coord.Status()
			return s.BlocksFound == found && s.BlocksOrphaned == orphaned && s.BlocksRejected == 0
		}
	}
	wantState := func(hash chainmath.Hash, state string) {
		t.Helper()
		if got := foundState(ctx, st, hash); !strings.HasPrefix(got, state+" ") {
			t.Fatalf("found block %s: %s, want %s", hash, got, state)
		}
	}

	stale := dialMiner(t, ln.Addr().String(), key.addr)
	h := src.Current().Height
	// An outside block at h: the miner's job is stale.
	outside := mine(t, ctx, src, outsider.script, 1)
	waitFor(t, 30*time.Second, "the coordinator's work on the outside block", func() bool { return coord.Status().Height == h+1 })

	submit, sideHash := stale.solveBlock(t)
	stale.call(t, submit) // the share is stale; the block is submitted all the same
	ev := nextEvent()
	if ev.Accepted || !ev.Orphaned || ev.Hash != sideHash.String() || ev.Height != h || !strings.Contains(ev.Reason, "side chain") {
		t.Fatalf("block event %+v, want block %s at height %d not accepted, on a side chain", ev, sideHash, h)
	}
	if at, err := b.BlockHash(ctx, h); err != nil || at != chainmath.Hash(outside.BlockHash()).String() {
		t.Fatalf("btcd's block at height %d: %s (%v), want the outside block", h, at, err)
	}
	if s := coord.Status(); s.BlocksFound != 0 || s.BlocksOrphaned != 1 || s.BlocksRejected != 0 {
		t.Fatalf("status: %d found, %d orphaned, %d rejected; want 0, 1, 0", s.BlocksFound, s.BlocksOrphaned, s.BlocksRejected)
	}
	wantState(sideHash, store.FoundOrphaned)

	// A block on the current job: on the best chain, accepted.
	fresh := dialMiner(t, ln.Addr().String(), key.addr)
	submit, mainHash := fresh.solveBlock(t)
	if res := fresh.call(t, submit); string(res.Result) != "true" {
		t.Fatalf("block share on the current job: %s %s, want true", res.Result, res.Error)
	}
	if ev := nextEvent(); !ev.Accepted || ev.Hash != mainHash.String() || ev.Height != h+1 {
		t.Fatalf("block event %+v, want block %s at height %d accepted", ev, mainHash, h+1)
	}
	if s := coord.Status(); s.BlocksFound != 1 || s.BlocksOrphaned != 1 || s.BlocksRejected != 0 {
		t.Fatalf("status: %d found, %d orphaned, %d rejected; want 1, 1, 0", s.BlocksFound, s.BlocksOrphaned, s.BlocksRejected)
	}
	wantState(mainHash, store.FoundAccepted)
	wantState(sideHash, store.FoundOrphaned)
	rep, err := coord.Miner(ctx, key.addr)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PaidTotal != 50e8 || len(rep.Payouts) != 2 {
		t.Fatalf("finder's account: paid %d sat in %+v; want 50 BTC (one accepted block of two)", rep.PaidTotal, rep.Payouts)
	}
	if o, a := metricSum(t, reg, "powcoord_blocks_total", "orphaned"), metricSum(t, reg, "powcoord_blocks_total", "accepted"); o != 1 || a != 1 {
		t.Fatalf("powcoord_blocks_total: %v orphaned, %v accepted; want 1 and 1", o, a)
	}
	listed, err := st.Blocks(ctx, h, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range listed {
		if l.Hash == sideHash {
			t.Fatalf("blocks list holds the orphaned block %s at height %d", sideHash, h)
		}
	}

	// A reorg: two outside blocks on the side-chain block make its branch
	// the best chain (h+2 against h+1).
	tip := *src.Current()
	prev := sideHash
	for i := range int64(2) {
		tmpl := tip
		tmpl.PrevHash, tmpl.Height = prev, h+1+i
		tmpl.CurTime += uint32(60 * (i + 1)) // after the median time of the side branch
		blk, err := nodetest.Solve(&tmpl, outsider.script, uint64(10+i))
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Submit(ctx, blk, "outsider"); err != nil {
			t.Fatalf("side-chain block at height %d: %v", h+1+i, err)
		}
		prev = chainmath.Hash(blk.BlockHash())
	}
	if at, err := b.BlockHash(ctx, h); err != nil || at != sideHash.String() {
		t.Fatalf("btcd's block at height %d after the reorg: %s (%v), want the side-chain block %s", h, at, err, sideHash)
	}
	waitFor(t, 30*time.Second, "1 found and 1 orphaned after the reorg", counts(1, 1))
	waitFor(t, 30*time.Second, "the reorg's states in the ledger", func() bool {
		return strings.HasPrefix(foundState(ctx, st, sideHash), store.FoundAccepted+" ") &&
			strings.HasPrefix(foundState(ctx, st, mainHash), store.FoundOrphaned+" ")
	})
	if o := metricSum(t, reg, "powcoord_blocks_total", "orphaned"); o != 2 {
		t.Fatalf("powcoord_blocks_total: %v orphaned after the reorg, want 2 (each orphaning counts)", o)
	}
	if rep, err := coord.Miner(ctx, key.addr); err != nil || rep.PaidTotal != 50e8 {
		t.Fatalf("finder's account after the reorg: paid %d sat (%v); want 50 BTC", rep.PaidTotal, err)
	}
}
