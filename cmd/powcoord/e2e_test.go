package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/listen"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testFlags(dir string) *coordFlags {
	return &coordFlags{
		listen:       listen.Flags{V1: "127.0.0.1:0", TLSMinDiff: -1},
		http:         "127.0.0.1:0",
		data:         dir,
		shareDiff:    2e-5,
		blockDiff:    1e-4,
		blockTime:    10 * time.Second,
		sharesPerMin: -1,
	}
}

// mine runs a coordinator on dir with n agents until the chain holds at
// least wantBlocks blocks (genesis included), then stops everything.
func mine(t *testing.T, dir string, agents int, wantBlocks int64) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, testFlags(dir), quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range agents {
		a, err := agent.New(agent.Config{
			URLs: []string{"stratum+tcp://" + inst.lns.V1.Addr().String()},
			User: []string{"ann", "ben", "cat"}[i%3], Pass: "x", Threads: 1, Logger: quietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, err := inst.store.BlockCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Every agent's worker must have had a share accepted too: on a
		// loaded machine one agent can be slow to start while the others
		// find the blocks (the tests check each worker's shares).
		workers := 0
		for _, w := range inst.coord.Status().Workers {
			if w.Accepted > 0 {
				workers++
			}
		}
		if n >= wantBlocks && workers >= min(agents, 3) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d blocks and %d workers with accepted shares after 3 minutes", n, workers)
		}
		<-time.After(50 * time.Millisecond) // polling with a deadline
	}
	// Read the API before stopping: the HTTP contract is part of the test.
	checkAPI(t, inst)
	st := inst.coord.Status()
	for _, w := range st.Workers {
		if w.Rejected["duplicate"] != 0 {
			t.Errorf("worker %s had %d duplicate rejections", w.Name, w.Rejected["duplicate"])
		}
	}
	cancel()
	wg.Wait()
	if err := <-inst.done; err != nil {
		t.Fatal(err)
	}
	inst.close()
	return inst
}

func checkAPI(t *testing.T, inst *instance) {
	t.Helper()
	resp, err := http.Get(inst.httpURL() + "api/blocks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var blocks []web.Block
	if err := json.NewDecoder(resp.Body).Decode(&blocks); err != nil {
		t.Fatal(err)
	}
	if len(blocks) < 2 {
		t.Fatalf("/api/blocks returned %d blocks", len(blocks))
	}
	for i, b := range blocks {
		raw, err := hex.DecodeString(b.Header)
		if err != nil || len(raw) != 80 {
			t.Fatalf("block %d header %q", b.Height, b.Header)
		}
		hd, _ := chainmath.ParseHeader(raw)
		if got := hd.Hash().String(); got != b.Hash {
			t.Fatalf("block %d: hash %s, header hashes to %s", b.Height, b.Hash, got)
		}
		if i > 0 && (b.Height != blocks[i-1].Height+1 || hd.PrevBlock.String() != blocks[i-1].Hash) {
			t.Fatalf("block %d does not follow %d", b.Height, blocks[i-1].Height)
		}
		if b.Finder == "" || b.Time.IsZero() {
			t.Fatalf("block %d lacks finder or time: %+v", b.Height, b)
		}
	}
	resp2, err := http.Get(inst.httpURL() + "api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var st struct {
		Height   int64 `json:"height"`
		Sessions int   `json:"sessions"`
	}
	if err := json.NewDecoder(resp2.Body).Decode(&st); err != nil || st.Height < 1 {
		t.Fatalf("/api/status: %+v %v", st, err)
	}
}

// revalidate re-validates the stored chain from its bytes, checks every
// link, and returns the blocks and the extranonce1s each worker's
// accepted shares carried.
func revalidate(t *testing.T, dir string) ([]ledger.Block, map[string]map[string]bool) {
	t.Helper()
	st, err := store.Open(dir + "/powcoord.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	blocks, err := st.Blocks(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := testFlags(dir)
	if err := simchain.ValidateChain(blocks, simchain.Config{BlockTime: f.blockTime, StartDifficulty: f.blockDiff}); err != nil {
		t.Fatalf("stored chain does not re-validate: %v", err)
	}
	for i := 1; i < len(blocks); i++ {
		h, _ := chainmath.ParseHeader(blocks[i].Header[:])
		if h.PrevBlock != blocks[i-1].Hash || blocks[i].Height != blocks[i-1].Height+1 {
			t.Fatalf("block %d is not linked to its parent", blocks[i].Height)
		}
		if h.Hash() != blocks[i].Hash {
			t.Fatalf("block %d: stored hash differs from its header's", blocks[i].Height)
		}
	}
	shares, err := st.Shares(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	en1 := map[string]map[string]bool{}
	for _, s := range shares {
		if en1[s.Worker] == nil {
			en1[s.Worker] = map[string]bool{}
		}
		en1[s.Worker][s.Extranonce1] = true
	}
	return blocks, en1
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	mine(t, dir, 3, 6)
	blocks, en1 := revalidate(t, dir)
	if len(blocks) < 6 {
		t.Fatalf("%d blocks", len(blocks))
	}
	// Three agents, three distinct extranonce1s: no two hashed the same work.
	distinct := map[string]string{}
	for worker, set := range en1 {
		for e := range set {
			if other, ok := distinct[e]; ok && other != worker {
				t.Fatalf("workers %s and %s share extranonce1 %s", worker, other, e)
			}
			distinct[e] = worker
		}
	}
	if len(en1) != 3 || len(distinct) < 3 {
		t.Fatalf("accepted shares from %d workers with %d distinct extranonce1s, want 3 and 3: %v", len(en1), len(distinct), en1)
	}
	finders := map[string]int{}
	for _, b := range blocks[1:] {
		finders[b.Finder]++
	}
	t.Logf("blocks by finder: %v", finders)
}

func TestRestartResumesAtTip(t *testing.T) {
	dir := t.TempDir()
	mine(t, dir, 1, 3)
	before, _ := revalidate(t, dir)
	tip := before[len(before)-1]

	// Start again on the same --data: the tip is the same...
	ctx, cancel := context.WithCancel(context.Background())
	inst, err := startCoordinator(ctx, testFlags(dir), quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cur := inst.source.Current()
	if cur.PrevHash != tip.Hash || cur.Height != tip.Height+1 {
		t.Fatalf("restarted on %s at height %d, want the tip %s (%d)", cur.PrevHash, cur.Height, tip.Hash, tip.Height)
	}
	cancel()
	<-inst.done
	inst.close()

	// ...and mining continues on it.
	mine(t, dir, 1, int64(len(before))+2)
	after, _ := revalidate(t, dir)
	if after[len(before)-1].Hash != tip.Hash {
		t.Fatal("the old tip is no longer in the chain")
	}
	if h, _ := chainmath.ParseHeader(after[len(before)].Header[:]); h.PrevBlock != tip.Hash {
		t.Fatal("the first block after the restart does not build on the old tip")
	}
}
