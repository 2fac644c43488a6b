package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/sv2"
)

// TestEndToEndV1AndV2 runs V1 and V2 agents on one coordinator until the
// embedded chain has grown and every agent has shares in the ledger; a V2
// agent given the wrong authority key refuses the pool and fails over to
// its V1 backup; a V2 agent on the --stratum address (V1 and V2 on one
// port) mines too. The stored chain and shares then re-validate.
func TestEndToEndV1AndV2(t *testing.T) {
	dir := t.TempDir()
	f := testFlags(dir)
	f.listen.V2 = "127.0.0.1:0"
	f.pool.banMinShares = -1 // every agent shares 127.0.0.1: a ban would stop them all
	// Blocks ten times rarer than testFlags' at the start: at 1e-4 six
	// agents found one every few milliseconds until the chain's
	// difficulty caught up, and on a loaded machine every share went
	// stale before the agents saw the new job (a V2 agent had none
	// accepted in 3 minutes).
	f.blockDiff = 1e-3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inst.lns.SV2URL, "stratum2+tcp://"+inst.lns.V2.Addr().String()+"/") {
		t.Fatalf("sv2 URL %q", inst.lns.SV2URL)
	}
	v1 := "stratum+tcp://" + inst.lns.V1.Addr().String()
	if !strings.HasPrefix(inst.lns.V1URL, "stratum2+tcp://"+inst.lns.V1.Addr().String()+"/") || !strings.HasSuffix(inst.lns.V1URL, inst.lns.SV2URL[strings.LastIndex(inst.lns.SV2URL, "/"):]) {
		t.Fatalf("one-port sv2 URL %q, want the --stratum address and the key of %q", inst.lns.V1URL, inst.lns.SV2URL)
	}
	other, _ := btcec.NewPrivateKey()
	wrongKey := sv2.URL(inst.lns.V2.Addr().String(), sv2.XOnly(other))
	runs := []struct {
		user string
		urls []string
	}{
		{"v1ann", []string{v1}},
		{"v1ben", []string{v1}},
		{"v2cat", []string{inst.lns.SV2URL}},
		{"v2dan", []string{inst.lns.SV2URL, v1}},
		{"v2eve", []string{wrongKey, v1}},   // refuses the V2 pool, mines on V1
		{"v2fay", []string{inst.lns.V1URL}}, // V2 on the V1 port
	}
	agents := make([]*agent.Agent, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		a, err := agent.New(agent.Config{URLs: r.urls, User: r.user, Pass: "x", Threads: 1, Logger: quietLogger(), PrimaryRetry: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = a
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, err := inst.store.BlockCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all := n >= 4
		// Blocks found over both protocols.
		blocks, _ := inst.store.Blocks(ctx, 1, 0)
		byV1, byV2 := false, false
		for _, b := range blocks {
			byV1 = byV1 || strings.HasPrefix(b.Finder, "v1")
			byV2 = byV2 || b.Finder == "v2cat" || b.Finder == "v2dan"
		}
		all = all && byV1 && byV2
		for _, r := range runs {
			if sh, _ := inst.store.Shares(ctx, r.user); len(sh) < 1 {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			for _, w := range inst.coord.Status().Workers {
				t.Logf("worker %s: accepted %d rejected %v blocks %d difficulty %v", w.Name, w.Accepted, w.Rejected, w.Blocks, w.Difficulty)
			}
			for i, r := range runs {
				t.Logf("agent %s: %+v", r.user, agents[i].Stats())
			}
			t.Fatalf("after 3 minutes: %d blocks", n)
		}
		<-time.After(50 * time.Millisecond) // polling with a deadline
	}
	checkAPI(t, inst)
	for i, r := range runs {
		st := agents[i].Stats()
		want := r.urls[0]
		if r.user == "v2eve" {
			want = r.urls[1]
		}
		if st.Pool != want || !st.Connected {
			t.Errorf("%s: on %q (connected %v), want %q", r.user, st.Pool, st.Connected, want)
		}
		if st.Accepted == 0 {
			t.Errorf("%s: no accepted shares in its stats", r.user)
		}
	}
	status := inst.coord.Status()
	seen := map[string]bool{}
	for _, w := range status.Workers {
		seen[w.Name] = true
		if w.Rejected["duplicate"] != 0 {
			t.Errorf("worker %s had %d duplicate rejections", w.Name, w.Rejected["duplicate"])
		}
	}
	for _, r := range runs {
		if !seen[r.user] {
			t.Errorf("worker %s missing from the status", r.user)
		}
	}
	cancel()
	wg.Wait()
	if err := <-inst.done; err != nil {
		t.Fatal(err)
	}
	inst.close()
	blocks, en1 := revalidate(t, dir)
	distinct := map[string]string{}
	for worker, set := range en1 {
		for e := range set {
			if o, ok := distinct[e]; ok && o != worker {
				t.Fatalf("workers %s and %s share extranonce1 %s", worker, o, e)
			}
			distinct[e] = worker
		}
	}
	finders := map[string]int{}
	for _, b := range blocks[1:] {
		finders[b.Finder]++
	}
	t.Logf("%d blocks by finder: %v", len(blocks), finders)
}
