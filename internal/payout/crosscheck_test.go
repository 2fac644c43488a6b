package payout_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/payout/payouttest"
)

// TestAgainstReference: on 2,000 random ledgers and rules, the window and
// split of package payout give exactly what payouttest's separate
// implementation recomputes, and the outputs sum to the value.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	bitsChoices := []uint32{0x207fffff, 0x1d00ffff, 0x1b0404cb, 0x1f00ffff, 0x1e0fffff}
	diffs := []float64{1e-9, 3.3e-7, 0.001, 0.5, 1, 7, 1024, 65536.25}
	for iter := range 2000 {
		n := 1 + rng.IntN(200)
		shares := make([]ledger.Share, n)
		for i := range shares {
			d := diffs[rng.IntN(len(diffs))]
			if rng.IntN(3) == 0 {
				d = rng.Float64()*100 + 1e-6
			}
			shares[i] = ledger.Share{Worker: fmt.Sprintf("m%d.rig%d", rng.IntN(14), rng.IntN(3)), Difficulty: d}
		}
		cutoff := int64(1 + rng.IntN(n))
		bits := bitsChoices[rng.IntN(len(bitsChoices))]
		target, _ := chainmath.CompactToBig(bits)
		// Windows from a fraction of one share to all of them.
		window := []float64{8, 1, 0.5, 1e-3, 1e6, 1e9, 1e12}[rng.IntN(7)]
		value := rng.Int64N(7_000_000_000)
		feeScript := []byte(nil)
		if rng.IntN(2) == 0 {
			feeScript = []byte("pool")
		}
		rules := payouttest.Rules{Window: window, FeeBP: rng.Int64N(500), FeeScript: feeScript, Dust: []int64{0, 1, 546, 100_000}[rng.IntN(4)],
			MaxOutputs: 1 + rng.IntN(16), ScriptOf: func(w string) []byte { l, _, _ := strings.Cut(w, "."); return []byte(l) }}

		size, err := payout.WindowUnits(window, target)
		if err != nil {
			t.Fatal(err)
		}
		win := payout.NewWindow(size)
		for i := cutoff - 1; i >= 0; i-- {
			more, err := win.Add(rules.ScriptOf(shares[i].Worker), shares[i].Difficulty)
			if err != nil {
				t.Fatal(err)
			}
			if !more {
				break
			}
		}
		got, err := payout.Split(win.Work(), payout.Params{Value: value, FeeBasisPoints: rules.FeeBP, FeeScript: feeScript, Dust: rules.Dust, MaxOutputs: rules.MaxOutputs})
		want, werr := payouttest.Recompute(shares, cutoff, bits, value, rules)
		if errors.Is(err, payout.ErrNoWork) != (werr != nil) {
			t.Fatalf("iteration %d: split %v, reference %v", iter, err, werr)
		}
		if err != nil {
			continue
		}
		var sum int64
		var outs []payouttest.Out
		for _, o := range got {
			sum += o.Value
			outs = append(outs, payouttest.Out{Script: o.Script, Value: o.Value})
		}
		if sum != value {
			t.Fatalf("iteration %d: outputs sum to %d, value %d", iter, sum, value)
		}
		if fmt.Sprint(outs) != fmt.Sprint(want) {
			t.Fatalf("iteration %d (window %g, bits %08x, value %d, rules %+v):\nsplit     %v\nreference %v", iter, window, bits, value, rules, outs, want)
		}
	}
}
