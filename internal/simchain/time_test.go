package simchain

import (
	"context"
	"math"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// The block-time rules against the difficulty algorithm (docs/embedded-chain.md,
// "Time rules"). Every test here runs the default parameters for a 10 s block
// time: half-life 120 s, so a block may be at most 30 s ahead of the clock.

// openTimeChain opens an empty chain with genesis at t0 + offset on a fake
// clock.
func openTimeChain(t *testing.T, startDiff float64, offset time.Duration) (*Chain, *fakeClock) {
	t.Helper()
	s := openStore(t, filepath.Join(t.TempDir(), "powcoord.db"))
	clk := &fakeClock{t: time.Unix(t0, 0).Add(offset)}
	cfg := testConfig(s, clk)
	cfg.StartDifficulty = startDiff
	c, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

// mineOnSchedule mines n blocks exactly on the ASERT schedule: block i is
// stamped t0 + 10·i and submitted with the clock at that second (plus the
// clock's offset). Every one of them keeps the genesis target, so the tip
// ends at t0 + 10·n and the next block is due at t0 + 10·(n+1).
func mineOnSchedule(t *testing.T, c *Chain, clk *fakeClock, n int) {
	t.Helper()
	genesisBits := c.Headers()[0].Bits
	for i := 1; i <= n; i++ {
		clk.Advance(10 * time.Second)
		tmpl := c.Current()
		if tmpl.Bits != genesisBits {
			t.Fatalf("block %d on schedule: template bits %08x, want the genesis bits %08x", i, tmpl.Bits, genesisBits)
		}
		blk := makeBlock(t, tmpl, blockSpec{time: uint32(t0 + 10*i)})
		if err := c.Submit(context.Background(), blk, "steady"); err != nil {
			t.Fatalf("block %d on schedule: %v", i, err)
		}
	}
}

// targetRatio is target(bits)/target(base) as a float64.
func targetRatio(t *testing.T, bits, base uint32) float64 {
	t.Helper()
	a, err := chainmath.CompactToBig(bits)
	if err != nil {
		t.Fatal(err)
	}
	b, err := chainmath.CompactToBig(base)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := new(big.Float).Quo(new(big.Float).SetInt(a), new(big.Float).SetInt(b)).Float64()
	return r
}

// Issue 9, defect 2: one block stamped 7,000 s ahead (the coordinator
// accepted that much) used to move the next difficulty from 1e-5 to the
// chain's minimum, because with a 120 s half-life 7,000 s is 58 halvings of
// the difficulty. The chain now refuses it.
func TestFutureBlock7000sAheadCannotCollapseDifficulty(t *testing.T) {
	c, clk := openTimeChain(t, 1e-5, 0)
	ctx := context.Background()
	clk.Advance(10 * time.Second) // block 1 is due now
	tmpl := c.Current()
	ahead := uint32(clk.Now().Unix()) + 7000

	// What such a tip would do to the next block: the easiest target there is.
	if bits := c.params.nextBits(1, ahead); bits != PowLimitBits {
		t.Fatalf("a tip stamped 7000 s ahead would give next bits %08x; the defect expects powLimit %08x", bits, PowLimitBits)
	}
	if d, _ := chainmath.CompactToDifficulty(PowLimitBits); math.Abs(d-4.6566e-10) > 1e-14 {
		t.Fatalf("minimum difficulty %.5g", d)
	}

	blk := makeBlock(t, tmpl, blockSpec{time: ahead})
	err := c.Submit(ctx, blk, "mallory")
	if !isReason(err, ReasonTimeTooNew) {
		next, _ := chainmath.CompactToDifficulty(c.Current().Bits)
		t.Fatalf("block 7000 s ahead: got %v (next difficulty now %.4g), want rejection %q", err, next, ReasonTimeTooNew)
	}
	if got := c.Current(); got != tmpl || got.Bits != tmpl.Bits {
		t.Fatalf("template changed after the refused block: bits %08x, want %08x", got.Bits, tmpl.Bits)
	}
	if d := c.Status().Difficulty; math.Abs(d/1e-5-1) > 1e-4 {
		t.Fatalf("next difficulty %.6g after the refused block, want 1e-5", d)
	}
}

// A block at the latest allowed time (30 s ahead of the clock) makes the
// next block at most 2^(30/120) = 1.189 times easier than the same block
// stamped with the clock; one second later is refused.
func TestFutureBlockMovesDifficultyAtMostTwofold(t *testing.T) {
	c, clk := openTimeChain(t, testDifficulty, 0)
	ctx := context.Background()
	mineOnSchedule(t, c, clk, 11)
	clk.Advance(10 * time.Second) // block 12 is due now, at t0+120
	genesisBits := c.Headers()[0].Bits
	tmpl := c.Current()
	if got := c.MaxFuture(); got != 30*time.Second {
		t.Fatalf("MaxFuture %v, want 30s (a quarter of the 120 s half-life)", got)
	}
	limit := uint32(t0 + 120 + 30)
	if got := tmpl.MaxTimeAt(clk.Now()); got != limit {
		t.Fatalf("template MaxTimeAt(now) = %d, want t0+150 = %d", got, limit)
	}

	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: limit + 1}), "mallory"); !isReason(err, ReasonTimeTooNew) {
		t.Fatalf("block one second past the limit: got %v, want %q", err, ReasonTimeTooNew)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: limit}), "edge"); err != nil {
		t.Fatalf("block at the limit: %v", err)
	}
	next := c.Current().Bits
	// On schedule the next block would keep the genesis target (20009895)
	// exactly; 30 s ahead, ASERT's exponent is 30·65536/120 = 16384 (a
	// quarter), the cubic approximation's factor 77938/65536 = 1.18924.
	const wantBits = 0x2000b574
	if next != wantBits {
		t.Fatalf("next bits after the block at the limit %08x, want %08x", next, wantBits)
	}
	r := targetRatio(t, next, genesisBits)
	if math.Abs(r-math.Pow(2, 0.25)) > 2e-4 || r >= 2 {
		t.Fatalf("next target / on-schedule target = %.6f, want 2^(1/4) = %.6f, and below 2", r, math.Pow(2, 0.25))
	}
	t.Logf("block at the limit: next target ×%.5f (difficulty ÷%.5f)", r, r)
}

// The template's MaxTime and the chain's own limit agree to the second,
// also with a clock between seconds: the coordinator's check
// ntime <= MaxTimeAt(now) accepts exactly the times the chain accepts.
func TestMaxTimeMatchesChainLimitAtSecondBoundary(t *testing.T) {
	c, clk := openTimeChain(t, testDifficulty, 600*time.Millisecond)
	ctx := context.Background()
	mineOnSchedule(t, c, clk, 11) // clock at t0+110.6
	tmpl := c.Current()
	if !tmpl.Created.Equal(time.Unix(t0+110, 0)) || tmpl.CurTime != t0+110 || tmpl.MaxTime != t0+140 {
		t.Fatalf("template Created %v CurTime %d MaxTime %d; want Created t0+110 (whole second), CurTime t0+110, MaxTime t0+140",
			tmpl.Created, tmpl.CurTime, tmpl.MaxTime)
	}
	clk.Advance(10*time.Second + 399*time.Millisecond) // t0+120.999
	if got := tmpl.MaxTimeAt(clk.Now()); got != t0+150 {
		t.Fatalf("at t0+120.999 MaxTimeAt = t0%+d, want t0+150", int64(got)-t0)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: t0 + 151}), "early"); !isReason(err, ReasonTimeTooNew) {
		t.Fatalf("at t0+120.999 a block at t0+151: got %v, want %q", err, ReasonTimeTooNew)
	}
	clk.Advance(time.Millisecond) // t0+121.000: the limit moves on by one
	if got := tmpl.MaxTimeAt(clk.Now()); got != t0+151 {
		t.Fatalf("at t0+121 MaxTimeAt = t0%+d, want t0+151", int64(got)-t0)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: t0 + 151}), "edge"); err != nil {
		t.Fatalf("at t0+121 a block at t0+151 (exactly the limit): %v", err)
	}

	// A clock that steps back keeps the limit where the template left it,
	// for the coordinator and the chain alike.
	tmpl = c.Current() // made at t0+121: MaxTime t0+151
	clk.Advance(-5 * time.Second)
	if got := tmpl.MaxTimeAt(clk.Now()); got != t0+151 || tmpl.MaxTime != t0+151 {
		t.Fatalf("clock stepped back: MaxTime t0%+d, MaxTimeAt t0%+d; want t0+151", int64(tmpl.MaxTime)-t0, int64(got)-t0)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: t0 + 152}), "back"); !isReason(err, ReasonTimeTooNew) {
		t.Fatalf("clock stepped back, block at t0+152: got %v, want %q", err, ReasonTimeTooNew)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: t0 + 151}), "back"); err != nil {
		t.Fatalf("clock stepped back, block at t0+151: %v", err)
	}
}

// A block at the earliest allowed time, one second after the median of the
// last 11 block times, makes the next block harder; on a chain that runs on
// schedule by at most 2^(59/120) = 1.41 (the median lags the clock by six
// block times: 60 s, minus the one second).
func TestEarliestBlockMovesDifficultyAtMostTwofold(t *testing.T) {
	c, clk := openTimeChain(t, testDifficulty, 0)
	ctx := context.Background()
	mineOnSchedule(t, c, clk, 11)
	clk.Advance(10 * time.Second) // block 12 is due now, at t0+120
	genesisBits := c.Headers()[0].Bits
	tmpl := c.Current()
	if mtp := medianTimePast(c.Headers()); mtp != t0+60 || tmpl.MinTime != t0+61 {
		t.Fatalf("median time past t0%+d, MinTime t0%+d; want t0+60 and t0+61", int64(mtp)-t0, int64(tmpl.MinTime)-t0)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: t0 + 60}), "mallory"); !isReason(err, ReasonTimeTooOld) {
		t.Fatalf("block at the median time past: got %v, want %q", err, ReasonTimeTooOld)
	}
	if err := c.Submit(ctx, makeBlock(t, tmpl, blockSpec{time: t0 + 61}), "edge"); err != nil {
		t.Fatalf("block at MTP+1: %v", err)
	}
	next := c.Current().Bits
	// Exponent (61 − 120)·65536/120 = −32221 (truncated toward zero):
	// one halving times the factor 93212/65536 for the fraction 33315.
	const wantBits = 0x1f6c8246
	if next != wantBits {
		t.Fatalf("next bits after the block at MTP+1 %08x, want %08x", next, wantBits)
	}
	r := targetRatio(t, next, genesisBits)
	if want := math.Pow(2, -59.0/120); math.Abs(r-want) > 2e-4 || r <= 0.5 {
		t.Fatalf("next target / on-schedule target = %.6f, want 2^(-59/120) = %.6f, and above 1/2", r, want)
	}
	t.Logf("block at MTP+1: next target ×%.5f (difficulty ×%.5f)", r, 1/r)
}

// After a stall the earliest time is further behind the clock, and a block
// stamped there denies the next block the drop in difficulty that the
// stall earned: the documented exception to the twofold bound (the factor
// is 2^((now − MTP − 1)/halfLife), here 2^(649/120) ≈ 42). Measured against
// the difficulty the block itself was mined at, the next one is still only
// 2^(59/120) harder, and ASERT reads only the tip, so the next block stamped
// with the clock restores the schedule in full.
func TestEarliestBlockAfterStallWithholdsOneDrop(t *testing.T) {
	c, clk := openTimeChain(t, testDifficulty, 0)
	ctx := context.Background()
	mineOnSchedule(t, c, clk, 11)
	clk.Advance(10 * time.Minute) // nobody finds block 12 for 10 minutes: now t0+710
	genesisBits := c.Headers()[0].Bits
	honest := c.params.nextBits(12, uint32(clk.Now().Unix())) // the block stamped with the clock
	if err := c.Submit(ctx, makeBlock(t, c.Current(), blockSpec{time: t0 + 61}), "mallory"); err != nil {
		t.Fatalf("block at MTP+1 after the stall: %v", err)
	}
	held := c.Current().Bits
	if r := targetRatio(t, held, genesisBits); math.Abs(r/math.Pow(2, -59.0/120)-1) > 3e-4 {
		t.Fatalf("after the stall, next target / the block's own target = %.6f, want 2^(-59/120)", r)
	}
	if r, want := targetRatio(t, honest, held), math.Pow(2, 649.0/120); math.Abs(r/want-1) > 5e-4 {
		t.Fatalf("the clock's stamp would give a next target ×%.3f that of MTP+1, want 2^(649/120) = %.3f", r, want)
	}
	// The next block, stamped with the clock, gets the drop back in full.
	clk.Advance(10 * time.Second) // t0+720
	if err := c.Submit(ctx, makeBlock(t, c.Current(), blockSpec{time: t0 + 720}), "honest"); err != nil {
		t.Fatalf("honest block after mallory's: %v", err)
	}
	// Block 13 at t0+720 is 590 s behind schedule (due at t0+130).
	if r, want := targetRatio(t, c.Current().Bits, genesisBits), math.Pow(2, 590.0/120); math.Abs(r/want-1) > 5e-4 {
		t.Fatalf("after the honest block the next target is ×%.3f the genesis target, want 2^(590/120) = %.3f", r, want)
	}
}

// The future limit is a quarter of the half-life in whole seconds, for
// every block time (--block-time sets the half-life to 12 block times).
func TestMaxFutureBlockTimeIsQuarterHalfLife(t *testing.T) {
	for _, tc := range []struct{ halfLife, want time.Duration }{
		{120 * time.Second, 30 * time.Second}, // default: 10 s blocks
		{12 * time.Second, 3 * time.Second},   // --block-time 1s
		{24 * time.Second, 6 * time.Second},   // --block-time 2s
		{121 * time.Second, 30 * time.Second}, // rounded down: the bound stays below 2^(1/4)
		{3 * time.Second, 0},                  // no time ahead of the clock at all
		{time.Hour, 15 * time.Minute},
	} {
		if got := MaxFutureBlockTime(tc.halfLife); got != tc.want {
			t.Errorf("MaxFutureBlockTime(%v) = %v, want %v", tc.halfLife, got, tc.want)
		}
	}
	// A chain opened with a 1 s block time gets it in its templates.
	s := openStore(t, filepath.Join(t.TempDir(), "powcoord.db"))
	clk := &fakeClock{t: time.Unix(t0, 0)}
	cfg := testConfig(s, clk)
	cfg.BlockTime = time.Second
	c, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl := c.Current(); c.HalfLife() != 12*time.Second || c.MaxFuture() != 3*time.Second || tmpl.MaxTime != tmpl.CurTime+3 {
		t.Fatalf("1 s chain: half-life %v, MaxFuture %v, template CurTime %d MaxTime %d; want 12s, 3s, MaxTime = CurTime+3",
			c.HalfLife(), c.MaxFuture(), tmpl.CurTime, tmpl.MaxTime)
	}
}
