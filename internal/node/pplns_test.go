package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/payout/payouttest"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
)

// regtestShareBlocks is the PPLNS window, in regtest blocks, that holds
// about a dozen shares of difficulty 6e-4: on regtest one share is worth
// over a million blocks (network difficulty 4.66e-10).
const regtestShareBlocks = 1.5e7

// pplnsRig is a coordinator in PPLNS mode on a btcd regtest node.
type pplnsRig struct {
	b     *nodetest.Btcd
	st    *store.Store
	coord *coordinator.Coordinator
	addr  string
	cfg   coordinator.Config

	mu       sync.Mutex
	accepted []coordinator.BlockEvent
	rejected []coordinator.BlockEvent
	notify   chan struct{}
	verified int // PPLNS blocks payouts verify agreed with (checkChain)
}

func newPPLNSRig(t *testing.T, ctx context.Context, pool testKey, mod func(*coordinator.Config)) *pplnsRig {
	t.Helper()
	r := &pplnsRig{b: nodetest.StartBtcd(t, "regtest"), notify: make(chan struct{}, 1)}
	src := newSource(t, ctx, r.b, pool.addr, nil)
	var err error
	r.st, err = store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.cfg = coordinator.Config{
		Source: src, Store: r.st,
		// Every share is a block on regtest: 6e-4 (about 2.6 million
		// hashes) keeps three CPU agents' blocks to what btcd takes in.
		ShareDifficulty: 6e-4, SharesPerMinute: -1,
		Payout: coordinator.PayoutPPLNS, PPLNSWindow: regtestShareBlocks,
		PoolFeeBasisPoints: 100, PoolScript: pool.script,
		Logger: testLogger(t),
		OnBlock: func(ev coordinator.BlockEvent) {
			r.mu.Lock()
			if ev.Accepted {
				r.accepted = append(r.accepted, ev)
			} else if !ev.Orphaned { // a side-chain block lost a race: no fault
				r.rejected = append(r.rejected, ev)
			}
			r.mu.Unlock()
			select {
			case r.notify <- struct{}{}:
			default:
			}
		},
	}
	if mod != nil {
		mod(&r.cfg)
	}
	r.coord, err = coordinator.New(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	var wg sync.WaitGroup
	sctx, stop := context.WithCancel(ctx)
	wg.Go(func() {
		if err := r.coord.Serve(sctx, ln); err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	return r
}

// mineUntil runs one agent per user until btcd's chain reaches height,
// then stops them and waits until btcd's tip is the coordinator's highest
// accepted block and nothing more arrives.
func (r *pplnsRig) mineUntil(t *testing.T, ctx context.Context, height int64, users ...string) int64 {
	t.Helper()
	actx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range users {
		ag, err := agent.New(agent.Config{URLs: []string{r.addr}, User: u, Pass: "x", Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ag.Run(actx) })
	}
	deadline := time.After(3 * time.Minute)
	for {
		r.mu.Lock()
		top := int64(0)
		for _, ev := range r.accepted {
			top = max(top, ev.Height)
		}
		r.mu.Unlock()
		if top >= height {
			break
		}
		select {
		case <-r.notify:
		case <-deadline:
			stopAgents()
			wg.Wait()
			t.Fatalf("btcd's chain did not reach height %d within 3 minutes (top accepted %d)", height, top)
		}
	}
	stopAgents()
	wg.Wait()
	end := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.accepted)
		top := int64(0)
		for _, ev := range r.accepted {
			top = max(top, ev.Height)
		}
		r.mu.Unlock()
		count, err := r.b.BlockCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		settled := n == len(r.accepted) && count == top
		r.mu.Unlock()
		if settled {
			return count
		}
		if time.Now().After(end) {
			t.Fatalf("btcd at height %d, the coordinator's highest accepted block at %d", count, top)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// regtestScript is the output script of a worker named by a regtest
// address (the part before the first '.').
func regtestScript(t *testing.T) func(string) []byte {
	return func(worker string) []byte {
		a, _, _ := strings.Cut(worker, ".")
		s, err := node.AddressScript(a, "regtest")
		if err != nil {
			t.Fatalf("worker %q: %v", worker, err)
		}
		return s
	}
}

// checkChain checks every block of btcd's chain 1..count: found by the
// coordinator, and its coinbase's paying outputs are the payout record,
// which is what an independent recomputation from the ledger gives, and
// what payouts verify recomputes from the block's window download (GET
// /api/blocks/{hash}/shares; a solo block has none: 404). It returns the
// total paid per script over the PPLNS blocks and their number.
func (r *pplnsRig) checkChain(t *testing.T, ctx context.Context, count int64, rules payouttest.Rules) (map[string]int64, int) {
	t.Helper()
	api := httptest.NewServer(web.New(r.coord, r.st, testLogger(t)))
	defer api.Close()
	shares, err := r.st.Shares(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	paid := map[string]int64{}
	pplns := 0
	for h := int64(1); h <= count; h++ {
		hash, err := r.b.BlockHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := r.b.RawBlock(ctx, hash)
		if err != nil {
			t.Fatal(err)
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		cb := blk.Transactions[0]
		var got []payouttest.Out
		var sum int64
		for _, o := range cb.TxOut {
			sum += o.Value
			if o.Value > 0 {
				got = append(got, payouttest.Out{Script: o.PkScript, Value: o.Value})
			}
		}
		rec, ok, err := r.st.BlockPayouts(ctx, chainmath.Hash(blk.BlockHash()))
		if err != nil || !ok {
			t.Fatalf("block %d %s: no payout record (%v)", h, hash, err)
		}
		if sum != rec.Value || rec.Value != 50e8 {
			t.Fatalf("block %d: coinbase outputs sum to %d, record's value %d, want 5000000000", h, sum, rec.Value)
		}
		if len(rec.Outputs) != len(got) {
			t.Fatalf("block %d: coinbase has %d paying outputs, record %d", h, len(got), len(rec.Outputs))
		}
		for i, o := range rec.Outputs {
			if !bytes.Equal(o.Script, got[i].Script) || o.Amount != got[i].Value {
				t.Fatalf("block %d output %d: coinbase %x %d, record %x %d", h, i, got[i].Script, got[i].Value, o.Script, o.Amount)
			}
		}
		resp, err := http.Get(api.URL + "/api/blocks/" + hash + "/shares")
		if err != nil {
			t.Fatal(err)
		}
		download, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if rec.Mode != coordinator.PayoutPPLNS {
			// The window was still empty when its job was built: the
			// finder is paid in full.
			if rec.Mode != coordinator.PayoutSolo || len(got) != 1 {
				t.Fatalf("block %d: mode %q with %d outputs", h, rec.Mode, len(got))
			}
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(download), "was paid solo") {
				t.Fatalf("block %d (solo): GET /api/blocks/%s/shares = %d %q, want 404 paid solo", h, hash, resp.StatusCode, download)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("block %d: GET /api/blocks/%s/shares = %d %q", h, hash, resp.StatusCode, download)
		}
		v, err := payout.Verify(bytes.NewReader(download))
		if err != nil {
			t.Fatalf("block %d: payouts verify: %v", h, err)
		}
		var verified []payouttest.Out
		for _, o := range v.Outputs {
			verified = append(verified, payouttest.Out{Script: o.Script, Value: o.Value})
		}
		if fmt.Sprint(verified) != fmt.Sprint(got) || v.Hash != hash || v.Height != h || v.Shares == 0 {
			t.Fatalf("block %d: payouts verify recomputes %v (block %d %s, %d shares), the coinbase pays %v", h, verified, v.Height, v.Hash, v.Shares, got)
		}
		r.verified++
		pplns++
		want, err := payouttest.Recompute(shares, rec.Cutoff, blk.Header.Bits, rec.Value, rules)
		if err != nil {
			t.Fatalf("block %d: recompute: %v", h, err)
		}
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("block %d (cutoff %d): coinbase pays\n%v\nthe ledger says\n%v", h, rec.Cutoff, got, want)
		}
		if rules.FeeScript != nil && (!bytes.Equal(got[len(got)-1].Script, rules.FeeScript) || got[len(got)-1].Value != 50e6) {
			t.Fatalf("block %d: last output %x %d, want the 1%% fee 50000000 to the pool", h, got[len(got)-1].Script, got[len(got)-1].Value)
		}
		for _, o := range got {
			paid[string(o.Script)] += o.Value
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rejected) != 0 {
		t.Fatalf("%d blocks rejected, first %+v", len(r.rejected), r.rejected[0])
	}
	return paid, pplns
}

// TestPPLNSOnBtcd: three agents with three regtest addresses mine under
// PPLNS with a 1% fee; every block of btcd's chain pays each address
// what an independent recomputation from the ledger gives, to the
// satoshi, and the fee.
func TestPPLNSOnBtcd(t *testing.T) {
	ctx := t.Context()
	pool := newKey(t, 40)
	keys := []testKey{newKey(t, 41), newKey(t, 42), newKey(t, 43)}
	r := newPPLNSRig(t, ctx, pool, nil)
	count := r.mineUntil(t, ctx, 18, keys[0].addr+".rig1", keys[1].addr+".rig2", keys[2].addr+".rig3")
	rules := payouttest.Rules{Window: regtestShareBlocks, FeeBP: 100, FeeScript: pool.script, Dust: coordinator.DefaultPayoutDust,
		MaxOutputs: coordinator.DefaultMaxPayoutOutputs, ScriptOf: regtestScript(t)}
	paid, n := r.checkChain(t, ctx, count, rules)
	if n < 10 {
		t.Fatalf("only %d of %d blocks were PPLNS blocks", n, count)
	}
	for i, k := range keys {
		if paid[string(k.script)] == 0 {
			t.Errorf("address %d (%s) was paid nothing in %d PPLNS blocks", i+1, k.addr, n)
		}
	}
	if got := paid[string(pool.script)]; got != int64(n)*50e6 {
		t.Errorf("pool fee %d over %d blocks, want %d", got, n, int64(n)*50e6)
	}
	// The per-address account agrees with the chain.
	rep, err := r.coord.Miner(ctx, keys[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range rep.Payouts {
		if p.State == store.FoundAccepted {
			sum += p.Amount
		}
	}
	if rep.PaidTotal != sum || rep.PaidTotal < paid[string(keys[0].script)] {
		t.Errorf("account of %s: paid %d (sum %d), chain's PPLNS blocks paid it %d", keys[0].addr, rep.PaidTotal, sum, paid[string(keys[0].script)])
	}
	if r.verified != n {
		t.Errorf("payouts verify agreed with %d of the %d PPLNS blocks", r.verified, n)
	}
	t.Logf("btcd height %d, %d PPLNS blocks, each verified from its window download; paid %d / %d / %d, fee %d", count, n,
		paid[string(keys[0].script)], paid[string(keys[1].script)], paid[string(keys[2].script)], paid[string(pool.script)])
}

// TestPPLNSMostOutputsOnBtcd: a ledger with work from more addresses
// than a coinbase may pay; the block pays the default maximum of
// outputs (38 miners and the fee) and btcd accepts it.
func TestPPLNSMostOutputsOnBtcd(t *testing.T) {
	ctx := t.Context()
	pool := newKey(t, 60)
	// A window big enough for all their shares and the miner's.
	const window = 1e8
	const others = 45
	// The ledger holds their work before the coordinator builds its
	// first job.
	r := newPPLNSRig(t, ctx, pool, func(c *coordinator.Config) {
		c.PPLNSWindow = window
		now := time.Now()
		for i := range others {
			k := newKey(t, byte(100+i))
			sh := ledger.Share{Time: now, Worker: k.addr + ".old", Extranonce1: "00000000", JobID: "0", Extranonce2: fmt.Sprintf("%08x", i),
				Difficulty: 6e-4 * (1 + float64(i)/100), Achieved: 1, Hash: chainmath.DoubleSHA256([]byte{byte(i)})}
			if err := c.Store.(*store.Store).RecordShare(ctx, sh); err != nil {
				t.Fatal(err)
			}
		}
	})
	miner := newKey(t, 61)
	count := r.mineUntil(t, ctx, 2, miner.addr)
	rules := payouttest.Rules{Window: window, FeeBP: 100, FeeScript: pool.script, Dust: coordinator.DefaultPayoutDust,
		MaxOutputs: coordinator.DefaultMaxPayoutOutputs, ScriptOf: regtestScript(t)}
	if _, n := r.checkChain(t, ctx, count, rules); n != int(count) {
		t.Fatalf("%d of %d blocks were PPLNS blocks", n, count)
	}
	hash, err := r.b.BlockHash(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.b.RawBlock(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	paying := 0
	for _, o := range blk.Transactions[0].TxOut {
		if o.Value > 0 {
			paying++
		}
	}
	if paying != coordinator.DefaultMaxPayoutOutputs {
		t.Fatalf("btcd's block 1 pays %d outputs, want %d", paying, coordinator.DefaultMaxPayoutOutputs)
	}
	t.Logf("btcd height %d; block 1 has %d outputs (%d paying), weight %d", count, len(blk.Transactions[0].TxOut), paying, blk.Transactions[0].SerializeSizeStripped()*3+blk.Transactions[0].SerializeSize())
}
