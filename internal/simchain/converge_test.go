package simchain

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// A simulated miner with a fixed hashrate finds each block after an
// exponentially distributed time whose mean is (expected hashes)/(hashrate),
// expected hashes being 2^256/(target+1). The chain runs ASERT with the
// default parameters (10 s blocks, half-life 12 blocks) from a start
// difficulty three times too low, then the hashrate doubles, then halves
// back. In every phase, once past the transition, the mean interval must
// stay within 10% of the block time, and the difficulty must follow the
// hashrate.
func TestASERTConverges(t *testing.T) {
	const (
		spacing  = 10
		halfLife = DefaultHalfLifeBlocks * spacing
		warmup   = 150 // blocks skipped after each change (≈ 12 half-lives)
		measured = 1500
	)
	startTarget, _ := chainmath.DifficultyToTarget(1e-6)
	genesisBits := chainmath.BigToCompact(startTarget)
	genesisTime := uint32(1_700_000_000)
	anchor, _ := chainmath.CompactToBig(genesisBits)
	p := params{spacing: spacing, halfLife: halfLife, anchorTarget: anchor, anchorPTime: int64(genesisTime) - spacing}

	// Hashrate that makes difficulty 3e-6 take exactly one block time.
	base := 3e-6 * math.Exp2(32) / spacing
	rng := rand.New(rand.NewPCG(1, 2))
	two256 := new(big.Float).SetMantExp(big.NewFloat(1), 256)

	headers := []chainmath.Header{{Time: genesisTime, Bits: genesisBits}}
	clock := float64(genesisTime)
	var meanDiff [3]float64
	for phase, rate := range []float64{base, 2 * base, base} {
		var sumInterval, sumDiff float64
		for i := range warmup + measured {
			tip := headers[len(headers)-1]
			bits := p.nextBits(int64(len(headers)-1), tip.Time)
			target, _ := chainmath.CompactToBig(bits)
			hashes, _ := new(big.Float).Quo(two256, new(big.Float).SetInt(new(big.Int).Add(target, big.NewInt(1)))).Float64()
			clock += rng.ExpFloat64() * hashes / rate
			tm := uint32(clock) // header times are whole seconds
			if mtp := medianTimePast(headers); tm <= mtp {
				tm = mtp + 1 // what a real miner's ntime does
			}
			if i >= warmup {
				sumInterval += float64(tm) - float64(tip.Time)
				sumDiff += chainmath.TargetToDifficulty(target)
			}
			headers = append(headers, chainmath.Header{Time: tm, Bits: bits})
		}
		mean := sumInterval / measured
		meanDiff[phase] = sumDiff / measured
		t.Logf("phase %d: hashrate %.0f H/s, mean interval %.2f s, mean difficulty %.3g", phase, rate, mean, meanDiff[phase])
		if mean < 0.9*spacing || mean > 1.1*spacing {
			t.Errorf("phase %d: mean interval %.2f s, want %d s ± 10%%", phase, mean, spacing)
		}
	}
	// Difficulty tracks hashrate: about 3e-6, then twice that, then back.
	for phase, want := range []float64{3e-6, 6e-6, 3e-6} {
		if r := meanDiff[phase] / want; r < 0.85 || r > 1.15 {
			t.Errorf("phase %d: mean difficulty %.3g, want ≈ %.3g", phase, meanDiff[phase], want)
		}
	}
}
