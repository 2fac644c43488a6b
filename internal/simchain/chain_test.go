package simchain

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

// testDifficulty makes a block take ~430 hashes on average.
const testDifficulty = 1e-7

const t0 = 1_700_000_000

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testConfig(s *store.Store, clk *fakeClock) Config {
	return Config{Store: s, BlockTime: 10 * time.Second, StartDifficulty: testDifficulty, Now: clk.Now, Logger: quiet}
}

func newTestChain(t *testing.T) (*Chain, *store.Store, *fakeClock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "powcoord.db")
	s := openStore(t, path)
	clk := &fakeClock{t: time.Unix(t0, 0)}
	c, err := Open(context.Background(), testConfig(s, clk))
	if err != nil {
		t.Fatal(err)
	}
	return c, s, clk, path
}

// blockSpec says how a test block departs from a valid one.
type blockSpec struct {
	height  int64  // coinbase height; 0: the template's
	value   int64  // coinbase value; 0: the template's
	bits    uint32 // 0: the template's
	time    uint32 // 0: the template's CurTime
	prev    *chainmath.Hash
	badRoot bool   // flip a bit of the merkle root
	extraTx bool   // append a non-coinbase transaction
	notCB   bool   // make the first transaction a non-coinbase
	noSolve bool   // pick a nonce whose hash misses the target
	finder  string // payout user; default "tester.1"
	tag     string // coinbase tag, to make blocks unique
}

// makeBlock builds a block for tmpl following spec and grinds its nonce
// with real sha256d until it meets (or, with noSolve, misses) the header's
// own target.
func makeBlock(t *testing.T, tmpl *work.Template, spec blockSpec) *wire.MsgBlock {
	t.Helper()
	height, value, bits, tm, prev := tmpl.Height, tmpl.CoinbaseValue, tmpl.Bits, tmpl.CurTime, tmpl.PrevHash
	if spec.height != 0 {
		height = spec.height
	}
	if spec.value != 0 {
		value = spec.value
	}
	if spec.bits != 0 {
		bits = spec.bits
	}
	if spec.time != 0 {
		tm = spec.time
	}
	if spec.prev != nil {
		prev = *spec.prev
	}
	finder := spec.finder
	if finder == "" {
		finder = "tester.1"
	}
	script, err := PayoutScript(finder)
	if err != nil {
		t.Fatal(err)
	}
	c1, c2, err := chainmath.BuildCoinbase(chainmath.CoinbaseParams{
		Height: height, ExtranonceSize: 8, Tag: []byte(spec.tag), Outputs: []*wire.TxOut{wire.NewTxOut(value, script)},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := slices.Concat(c1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, c2)
	var cb wire.MsgTx
	if err := cb.DeserializeNoWitness(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	txs := []*wire.MsgTx{&cb}
	if spec.notCB {
		cb.TxIn[0].PreviousOutPoint.Index = 0
	}
	if spec.extraTx {
		tx := wire.NewMsgTx(1)
		cbid := cb.TxHash()
		tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&cbid, 0), nil, nil))
		tx.AddTxOut(wire.NewTxOut(1000, script))
		txs = append(txs, tx)
	}
	ids := make([]chainmath.Hash, len(txs))
	for i, tx := range txs {
		ids[i] = chainmath.Hash(tx.TxHash())
	}
	h := chainmath.Header{Version: tmpl.Version, PrevBlock: prev, MerkleRoot: chainmath.MerkleRoot(ids), Time: tm, Bits: bits}
	if spec.badRoot {
		h.MerkleRoot[7] ^= 0x10
	}
	target, err := chainmath.CompactToBig(bits)
	if err != nil {
		t.Fatal(err)
	}
	tg := chainmath.TargetFromBig(target)
	for n := uint32(0); ; n++ {
		h.Nonce = n
		hash := h.Hash()
		if tg.Meets(&hash) != spec.noSolve {
			break
		}
		if n == 1<<24 {
			t.Fatal("no nonce found in 2^24 tries")
		}
	}
	hb := h.Bytes()
	blk := &wire.MsgBlock{Transactions: txs}
	if err := blk.Header.Deserialize(bytes.NewReader(hb[:])); err != nil {
		t.Fatal(err)
	}
	return blk
}

// mineOne mines and submits one valid block at the template, then advances
// the clock by one block time.
func mineOne(t *testing.T, c *Chain, clk *fakeClock, finder string) *wire.MsgBlock {
	t.Helper()
	blk := makeBlock(t, c.Current(), blockSpec{finder: finder})
	if err := c.Submit(context.Background(), blk, finder); err != nil {
		t.Fatalf("valid block at height %d rejected: %v", c.Current().Height, err)
	}
	clk.Advance(10 * time.Second)
	return blk
}

func TestGenesisAndFirstTemplate(t *testing.T) {
	c, s, _, _ := newTestChain(t)
	ctx := context.Background()
	blocks, err := s.Blocks(ctx, 0, 0)
	if err != nil || len(blocks) != 1 {
		t.Fatalf("stored blocks: %d %v", len(blocks), err)
	}
	g := blocks[0]
	wantBits, _ := startBits(testDifficulty)
	h, _ := chainmath.ParseHeader(g.Header[:])
	if g.Height != 0 || g.Finder != "genesis" || g.Time != t0 || h.Time != t0 || h.Bits != wantBits || h.Nonce != 0 ||
		h.PrevBlock != (chainmath.Hash{}) || h.Hash() != g.Hash || h.Version != BlockVersion {
		t.Fatalf("genesis %+v header %+v", g, h)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(g.Raw)); err != nil {
		t.Fatal(err)
	}
	out := blk.Transactions[0].TxOut
	wantScript := append([]byte{0x6a, 16}, "powcoord:genesis"...)
	if len(out) != 1 || out[0].Value != 50*100_000_000 || !bytes.Equal(out[0].PkScript, wantScript) {
		t.Fatalf("genesis outputs %+v", out[0])
	}
	tmpl := c.Current()
	if tmpl.Height != 1 || tmpl.PrevHash != g.Hash || tmpl.Bits != wantBits || tmpl.Version != 0x20000000 ||
		tmpl.CurTime != t0+1 || tmpl.MinTime != t0+1 || tmpl.MaxTime != t0+31 || tmpl.CoinbaseValue != 5_000_000_000 || len(tmpl.Txs) != 0 ||
		tmpl.WitnessCommitment != nil || !tmpl.Created.Equal(time.Unix(t0, 0)) {
		t.Fatalf("first template %+v", tmpl)
	}
	st := c.Status()
	if st.Kind != "embedded" || !st.Healthy || st.TipHeight != 0 || st.TipHash != g.Hash.String() ||
		st.Difficulty < testDifficulty*0.9999 || st.Difficulty > testDifficulty*1.0001 {
		t.Fatalf("status %+v", st)
	}
}

func TestMineRestartResumes(t *testing.T) {
	c, s, clk, path := newTestChain(t)
	ctx := context.Background()
	for i := range 25 {
		before := c.Current()
		mineOne(t, c, clk, "alice.rig")
		select {
		case <-c.Updates():
		default:
			t.Fatalf("block %d: no update signalled", i+1)
		}
		if now := c.Current(); now.Height != before.Height+1 || now == before {
			t.Fatalf("block %d: template height %d after %d", i+1, now.Height, before.Height)
		}
	}
	tipBefore := c.Status()
	tmplBefore := c.Current()
	if tipBefore.TipHeight != 25 {
		t.Fatalf("tip height %d", tipBefore.TipHeight)
	}
	blocks, _ := s.Blocks(ctx, 0, 0)
	if err := ValidateChain(blocks, testConfig(s, clk)); err != nil {
		t.Fatalf("ValidateChain: %v", err)
	}
	if blocks[7].Finder != "alice.rig" || blocks[7].Height != 7 {
		t.Fatalf("stored block 7: %+v", blocks[7])
	}
	s.Close()

	s2 := openStore(t, path)
	// A different configured start difficulty must not change a stored chain.
	cfg := testConfig(s2, clk)
	cfg.StartDifficulty = 0.5
	// Nor a different block time or half-life: the chain keeps its own.
	cfg.BlockTime = 30 * time.Second
	cfg.HalfLife = time.Hour
	c2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2.BlockTime() != 10*time.Second || c2.HalfLife() != 120*time.Second {
		t.Fatalf("reopened chain: block time %v, half-life %v; want the stored 10s and 2m0s", c2.BlockTime(), c2.HalfLife())
	}
	st := c2.Status()
	if st.TipHeight != tipBefore.TipHeight || st.TipHash != tipBefore.TipHash || st.Difficulty != tipBefore.Difficulty {
		t.Fatalf("after restart %+v, before %+v", st, tipBefore)
	}
	tm := c2.Current()
	if tm.Height != 26 || tm.PrevHash != tmplBefore.PrevHash || tm.Bits != tmplBefore.Bits || tm.MinTime != tmplBefore.MinTime {
		t.Fatalf("template after restart %+v, before %+v", tm, tmplBefore)
	}
	mineOne(t, c2, clk, "bob")
	if n, _ := s2.BlockCount(ctx); n != 27 {
		t.Fatalf("%d blocks stored, want 27", n)
	}
}

func TestValidateChainDetectsTampering(t *testing.T) {
	c, s, clk, _ := newTestChain(t)
	for range 6 {
		mineOne(t, c, clk, "x")
	}
	blocks, _ := s.Blocks(context.Background(), 0, 0)
	cfg := testConfig(s, clk)
	if err := ValidateChain(blocks, cfg); err != nil {
		t.Fatal(err)
	}
	tamper := []struct {
		name string
		f    func(bs []ledger.Block)
	}{
		{"raw coinbase byte", func(bs []ledger.Block) { bs[3].Raw = slices.Clone(bs[3].Raw); bs[3].Raw[len(bs[3].Raw)-10] ^= 1 }},
		{"stored hash", func(bs []ledger.Block) { bs[2].Hash[0] ^= 1 }},
		{"missing block", func(bs []ledger.Block) { copy(bs[3:], bs[4:]) }},
		{"stored header", func(bs []ledger.Block) { bs[4].Header[70] ^= 1 }},
		{"genesis raw", func(bs []ledger.Block) { bs[0].Raw = slices.Clone(bs[0].Raw); bs[0].Raw[100] ^= 1 }},
	}
	for _, tc := range tamper {
		bs := slices.Clone(blocks)
		tc.f(bs)
		if err := ValidateChain(bs, cfg); err == nil {
			t.Errorf("%s: tampered chain validated", tc.name)
		}
	}
	// A different block time changes the schedule: bits no longer match.
	cfg.BlockTime = 20 * time.Second
	if err := ValidateChain(blocks, cfg); err == nil {
		t.Error("chain validated under a different block time")
	}
}

func TestSubmitRejections(t *testing.T) {
	c, s, clk, _ := newTestChain(t)
	ctx := context.Background()
	for range 12 { // enough blocks for a full median-time window
		mineOne(t, c, clk, "x")
	}
	select { // drain the signal of the blocks above
	case <-c.Updates():
	default:
	}
	tmpl := c.Current()
	tipHeight := c.Status().TipHeight
	headers := c.Headers()
	randomPrev := chainmath.DoubleSHA256([]byte("nowhere"))
	mtp := medianTimePast(headers)
	easierBits := chainmath.BigToCompact(func() *bigInt { t, _ := chainmath.CompactToBig(tmpl.Bits); return t.Lsh(t, 1) }())

	cases := []struct {
		reason string
		spec   blockSpec
	}{
		{"bad-prevblk", blockSpec{prev: &randomPrev}},
		{"stale", blockSpec{prev: &headers[tipHeight-1].PrevBlock}}, // builds on the tip's grandparent
		{"high-hash", blockSpec{noSolve: true}},
		{"bad-diffbits", blockSpec{bits: easierBits}},
		{"time-too-old", blockSpec{time: mtp}},
		{"time-too-new", blockSpec{time: tmpl.MaxTimeAt(clk.Now()) + 1}},
		{"bad-cb-height", blockSpec{height: tmpl.Height + 1}},
		{"bad-txnmrklroot", blockSpec{badRoot: true}},
		{"bad-cb-amount", blockSpec{value: tmpl.CoinbaseValue + 1}},
		{"bad-txns-unexpected", blockSpec{extraTx: true}},
		{"bad-cb-missing", blockSpec{notCB: true}},
	}
	for _, tc := range cases {
		blk := makeBlock(t, tmpl, tc.spec)
		err := c.Submit(ctx, blk, "mallory")
		var rej *work.RejectedError
		if !errors.As(err, &rej) || rej.Reason != tc.reason {
			t.Errorf("%s: got %v", tc.reason, err)
			continue
		}
		if want := blk.BlockHash(); rej.Hash != chainmath.Hash(want) {
			t.Errorf("%s: rejection names hash %s, want %s", tc.reason, rej.Hash, want)
		}
	}
	if st := c.Status(); st.TipHeight != tipHeight {
		t.Fatalf("tip moved to %d after rejections", st.TipHeight)
	}
	if n, _ := s.BlockCount(ctx); n != tipHeight+1 {
		t.Fatalf("%d blocks stored after rejections, want %d", n, tipHeight+1)
	}
	select {
	case <-c.Updates():
		t.Fatal("update signalled for a rejected block")
	default:
	}
	// Boundary cases that are valid: time exactly MTP+1, exactly the
	// template's limit (now + 30 s), coinbase value below the subsidy.
	if got, want := tmpl.MaxTimeAt(clk.Now()), uint32(clk.Now().Unix())+30; got != want {
		t.Fatalf("template limit MaxTimeAt(now) = %d, want now+30s = %d", got, want)
	}
	for _, spec := range []blockSpec{
		{time: mtp + 1, tag: "a"},
		{time: c.Current().MaxTimeAt(clk.Now()), value: 1, tag: "b"},
	} {
		tm := c.Current()
		if err := c.Submit(ctx, makeBlock(t, tm, spec), "ok"); err != nil {
			t.Fatalf("boundary block %+v rejected: %v", spec, err)
		}
	}
	// Resubmitting an accepted block is a duplicate.
	last := mineOne(t, c, clk, "x")
	if err := c.Submit(ctx, last, "x"); !isReason(err, "duplicate") {
		t.Fatalf("resubmitted block: %v", err)
	}
}

type bigInt = big.Int

func isReason(err error, reason string) bool {
	var rej *work.RejectedError
	return errors.As(err, &rej) && rej.Reason == reason
}

// Many goroutines submit the same solved block; exactly one wins, and
// readers run alongside (checked by -race).
func TestConcurrentSubmit(t *testing.T) {
	c, s, _, _ := newTestChain(t)
	blk := makeBlock(t, c.Current(), blockSpec{})
	const n = 8
	results := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			results <- c.Submit(context.Background(), blk, "racer")
		}()
		go func() {
			defer wg.Done()
			_ = c.Current().Height + c.Status().TipHeight
		}()
	}
	wg.Wait()
	close(results)
	wins := 0
	for err := range results {
		switch {
		case err == nil:
			wins++
		case isReason(err, "duplicate"):
		default:
			t.Errorf("unexpected result %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d submissions accepted, want 1", wins)
	}
	if n, _ := s.BlockCount(context.Background()); n != 2 {
		t.Fatalf("%d blocks stored", n)
	}
}

func TestSubsidy(t *testing.T) {
	for _, c := range []struct{ h, v int64 }{
		{0, 5_000_000_000}, {209_999, 5_000_000_000}, {210_000, 2_500_000_000},
		{420_000, 1_250_000_000}, {6_929_999, 1}, {6_930_000, 0}, {64 * 210_000, 0},
	} {
		if got := Subsidy(c.h); got != c.v {
			t.Errorf("Subsidy(%d) = %d, want %d", c.h, got, c.v)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "x.db"))
	ctx := context.Background()
	for _, cfg := range []Config{
		{},
		{Store: s, BlockTime: 500 * time.Millisecond},
		{Store: s, BlockTime: 1500 * time.Millisecond},
		{Store: s, HalfLife: -time.Second},
		{Store: s, StartDifficulty: -1},
		{Store: s, StartDifficulty: 1e-12}, // easier than powLimit
	} {
		if _, err := Open(ctx, cfg); err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
	if n, _ := s.BlockCount(ctx); n != 0 {
		t.Fatalf("a refused config stored %d blocks", n)
	}
}

// A stored chain that was altered on disk is refused at Open.
func TestOpenRefusesCorruptStore(t *testing.T) {
	c, s, clk, path := newTestChain(t)
	for range 3 {
		mineOne(t, c, clk, "x")
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// Change the coinbase's output value (8 bytes before the script) of
	// block 2 without touching its header: the merkle root no longer fits.
	var raw []byte
	if err := db.QueryRow(`SELECT raw FROM blocks WHERE height = 2`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-30] ^= 0x01
	if _, err := db.Exec(`UPDATE blocks SET raw = ? WHERE height = 2`, raw); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s2 := openStore(t, path)
	_, err = Open(context.Background(), testConfig(s2, clk))
	if err == nil || !strings.Contains(err.Error(), "block 2") {
		t.Fatalf("Open on a corrupted chain: %v", err)
	}
}
