// Package payouttest recomputes a PPLNS coinbase from a share ledger with
// code of its own, written from the rules in docs/payouts.md and not
// sharing package payout's code: tests compare what the coordinator put
// in a block with it, to the satoshi.
package payouttest

import (
	"fmt"
	"math"
	"math/big"
	"sort"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Rules are the settings a block's payout was computed with.
type Rules struct {
	Window     float64 // blocks of network work
	FeeBP      int64   // basis points
	FeeScript  []byte
	Dust       int64
	MaxOutputs int
	// ScriptOf maps a ledger worker name to the script it is paid to;
	// nil: the share cannot be paid and is skipped.
	ScriptOf func(worker string) []byte
}

// Out is one expected output.
type Out struct {
	Script []byte
	Value  int64
}

// Recompute returns the outputs a block at nBits bits with coinbase value
// value pays, from the ledger shares (oldest first) of which the first
// cutoff were in the window's snapshot.
func Recompute(shares []ledger.Share, cutoff int64, bits uint32, value int64, r Rules) ([]Out, error) {
	if cutoff > int64(len(shares)) {
		return nil, fmt.Errorf("cutoff %d beyond the %d shares of the ledger", cutoff, len(shares))
	}
	target, err := chainmath.CompactToBig(bits)
	if err != nil {
		return nil, err
	}
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	// size = floor(Window · 0xffff·2^208 · 2^64 / target)
	size := new(big.Rat).SetFloat64(r.Window)
	size.Mul(size, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(0xffff), 208+64)))
	size.Quo(size, new(big.Rat).SetInt(target))
	left := new(big.Int).Quo(size.Num(), size.Denom())

	work := map[string]*big.Int{}
	for i := cutoff - 1; i >= 0 && left.Sign() > 0; i-- {
		k := string(r.ScriptOf(shares[i].Worker))
		if k == "" || !(shares[i].Difficulty > 0) || math.IsInf(shares[i].Difficulty, 0) {
			continue // cannot be paid: skipped
		}
		d := new(big.Rat).SetFloat64(shares[i].Difficulty)
		d.Mul(d, new(big.Rat).SetInt(two64))
		d.Add(d, big.NewRat(1, 2))
		units := new(big.Int).Quo(d.Num(), d.Denom())
		if units.Cmp(left) > 0 {
			units.Set(left)
		}
		left.Sub(left, units)
		if work[k] == nil {
			work[k] = new(big.Int)
		}
		work[k].Add(work[k], units)
	}
	type miner struct {
		script string
		w      *big.Int
	}
	var ms []miner
	for k, w := range work {
		if w.Sign() > 0 {
			ms = append(ms, miner{k, w})
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no work in the window")
	}
	sort.Slice(ms, func(i, j int) bool {
		if c := ms[i].w.Cmp(ms[j].w); c != 0 {
			return c > 0
		}
		return ms[i].script < ms[j].script
	})
	fee := int64(0)
	if r.FeeScript != nil {
		fee = value * r.FeeBP / 10000
		if fee < r.Dust || r.MaxOutputs < 2 {
			fee = 0
		}
	}
	n := r.MaxOutputs
	if fee > 0 {
		n--
	}
	if len(ms) > n {
		ms = ms[:n]
	}
	reward := value - fee
	dust := max(r.Dust, 1)
	for {
		total := new(big.Int)
		for _, m := range ms {
			total.Add(total, m.w)
		}
		vals := make([]int64, len(ms))
		fracs := make([]*big.Rat, len(ms))
		sum := int64(0)
		for i, m := range ms {
			exact := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(reward), m.w), total)
			fl := new(big.Int).Quo(exact.Num(), exact.Denom())
			vals[i] = fl.Int64()
			sum += vals[i]
			fracs[i] = new(big.Rat).Sub(exact, new(big.Rat).SetInt(fl))
		}
		order := make([]int, len(ms))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return fracs[order[a]].Cmp(fracs[order[b]]) > 0 })
		for k := int64(0); k < reward-sum; k++ {
			vals[order[k]]++
		}
		low := false
		for _, v := range vals {
			low = low || v < dust
		}
		if !low || len(ms) == 1 {
			out := make([]Out, 0, len(ms)+1)
			for i, m := range ms {
				out = append(out, Out{[]byte(m.script), vals[i]})
			}
			if fee > 0 {
				out = append(out, Out{r.FeeScript, fee})
			}
			return out, nil
		}
		ms = ms[:len(ms)-1]
	}
}
