package node_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
)

// TestCoordinatorAndAgentOnBtcd runs the whole system on a real btcd:
// the coordinator on a node source, one agent over Stratum on loopback,
// until btcd has taken at least 20 of its blocks.
func TestCoordinatorAndAgentOnBtcd(t *testing.T) {
	const want = 20
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 7)
	src := newSource(t, ctx, b, key.addr, nil)

	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var mu sync.Mutex
	var accepted []coordinator.BlockEvent
	var rejected []coordinator.BlockEvent
	enough := make(chan struct{})
	closed := false
	coord, err := coordinator.New(coordinator.Config{
		Source: src, Store: st,
		// On regtest every other hash is a block. The agent only sends
		// hashes that meet its share target, so a share difficulty of
		// 2e-4 (about 860,000 hashes a share) keeps the stream of blocks
		// to what a node takes in, as a real pool's vardiff would.
		ShareDifficulty: 2e-4, SharesPerMinute: -1,
		Logger: testLogger(t),
		OnBlock: func(ev coordinator.BlockEvent) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Orphaned {
				return // found on a job that just went stale: a side chain's
			}
			if !ev.Accepted {
				rejected = append(rejected, ev)
				return
			}
			accepted = append(accepted, ev)
			// Count heights: a block accepted now may yet be
			// replaced by a reorg.
			if ev.Height >= want && !closed {
				closed = true
				close(enough)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := coord.Serve(ctx, ln); err != nil {
			t.Errorf("coordinator: %v", err)
		}
	}()
	ag, err := agent.New(agent.Config{URLs: []string{ln.Addr().String()}, User: "worker1", Pass: "x", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	go func() {
		defer wg.Done()
		ag.Run(actx)
	}()

	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		t.Fatalf("only %d blocks accepted within 2 minutes, none at height %d", n, want)
	}
	stopAgent()
	// Blocks the agent found just before it stopped may still be in
	// flight: wait until btcd's tip is the highest block the coordinator
	// was told was accepted and nothing more arrives.
	var top coordinator.BlockEvent
	var count int64
	var best string
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		top = accepted[0]
		for _, ev := range accepted {
			if ev.Height > top.Height {
				top = ev
			}
		}
		n := len(accepted)
		mu.Unlock()
		count, err = b.BlockCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		best, err = b.BestBlockHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		settled := n == len(accepted) && count == top.Height
		mu.Unlock()
		if settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("btcd at height %d, coordinator's highest accepted block at %d", count, top.Height)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}

	mu.Lock()
	defer mu.Unlock()
	if len(rejected) != 0 {
		t.Errorf("%d blocks rejected, first: %+v", len(rejected), rejected[0])
	}
	if count < want {
		t.Fatalf("btcd height %d, want at least %d", count, want)
	}
	// The last found block is btcd's tip (several blocks at the top
	// height would be a race between stale jobs; the tip must be one).
	tipOK := false
	byHash := map[string]coordinator.BlockEvent{}
	for _, ev := range accepted {
		byHash[ev.Hash] = ev
		if ev.Height == top.Height && ev.Hash == best {
			tipOK = true
		}
	}
	if !tipOK {
		t.Fatalf("btcd best %s at %d is not a block the coordinator found at that height", best, count)
	}
	// Every block of btcd's chain, heights 1..count, is one the
	// coordinator found (contiguous), and its coinbase pays the address.
	for h := int64(1); h <= count; h++ {
		hash, err := b.BlockHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if ev, ok := byHash[hash]; !ok || ev.Height != h || ev.Finder != "worker1" {
			t.Fatalf("btcd's block %s at %d: not found by the coordinator at that height (%+v)", hash, h, ev)
		}
		raw, err := b.RawBlock(ctx, hash)
		if err != nil {
			t.Fatal(err)
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		cb := blk.Transactions[0]
		if ht, err := chainmath.ParseCoinbaseHeight(cb.TxIn[0].SignatureScript); err != nil || ht != h {
			t.Fatalf("block %d: coinbase height %d (%v)", h, ht, err)
		}
		if !bytes.Equal(cb.TxOut[0].PkScript, key.script) || cb.TxOut[0].Value != 50e8 {
			t.Fatalf("block %d: coinbase pays %d to %x, want 5000000000 to %x", h, cb.TxOut[0].Value, cb.TxOut[0].PkScript, key.script)
		}
	}
	if acc, rej := src.Counts(); acc < int64(count) || rej != 0 {
		t.Fatalf("source counts %d accepted, %d rejected; want at least %d, 0", acc, rej, count)
	}
	if n, err := st.BlockCount(ctx); err != nil || n < count {
		t.Fatalf("store holds %d blocks (%v), want at least %d", n, err, count)
	}
	t.Logf("btcd height %d; coordinator found %d blocks (%d on side chains)", count, len(accepted), int64(len(accepted))-count)
}
