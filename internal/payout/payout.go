// Package payout is the coinbase plan of the pool, solo and PPLNS ("pay
// per last N shares": the block reward split among the miners of the
// last N × network difficulty of accepted share work, each in proportion
// to its work, with an optional pool fee). Window and Split are pure
// arithmetic on integers, so that anyone holding the share ledger can
// recompute a block's outputs to the satoshi; Plan applies them to a
// ledger for a single coordinator and a cluster's active coordinator
// alike (a job's outputs, the record of what a found block paid);
// Accounts reports per address; WriteWindow and Verify let anyone check
// a block from its window download. The rules are written out in
// docs/payouts.md.
//
// Work is counted in units of 2^-64 difficulty: a share of difficulty d is
// round(d·2^64) units (half away from zero), and the window for N blocks
// at network target T is floor(N·diff1·2^64 / T) units, with diff1 the
// difficulty-1 target 0xffff·2^208. Both are exact big integers.
package payout

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// unitShift is the number of fractional bits of a work unit.
const unitShift = 64

var diff1 = new(big.Int).Lsh(big.NewInt(0xffff), 208)

// ShareUnits returns the work of a share of difficulty d in units of 2^-64
// difficulty, rounded to the nearest unit (half away from zero). d must be
// positive and finite.
func ShareUnits(d float64) (*big.Int, error) {
	if !(d > 0) || math.IsInf(d, 0) {
		return nil, fmt.Errorf("payout: share difficulty %v: must be positive and finite", d)
	}
	r := new(big.Rat).SetFloat64(d)
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), unitShift)))
	r.Add(r, big.NewRat(1, 2))
	q := new(big.Int).Quo(r.Num(), r.Denom()) // floor, r > 0
	return q, nil
}

// WindowUnits returns the size of the PPLNS window, n times the work of
// one block at target (the block's nBits expanded), in units of 2^-64
// difficulty: floor(n·diff1·2^64 / target). n must be positive and finite.
func WindowUnits(n float64, target *big.Int) (*big.Int, error) {
	if !(n > 0) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("payout: window %v blocks: must be positive and finite", n)
	}
	if target == nil || target.Sign() <= 0 {
		return nil, fmt.Errorf("payout: block target %v: must be positive", target)
	}
	r := new(big.Rat).SetFloat64(n)
	num := new(big.Int).Mul(r.Num(), diff1)
	num.Lsh(num, unitShift)
	den := new(big.Int).Mul(r.Denom(), target)
	return num.Quo(num, den), nil
}

// Work is the work one payout script has in the window.
type Work struct {
	Script []byte
	Units  *big.Int
}

// Window sums share work newest first until it holds a fixed amount: the
// share that crosses the boundary counts only with the part of its work
// inside the window.
type Window struct {
	need  *big.Int
	total *big.Int
	by    map[string]*big.Int
	order []string // scripts in the order first seen
	full  bool
	units map[float64]*big.Int // ShareUnits by difficulty: vardiff repeats a few values
}

// NewWindow returns an empty window of size units.
func NewWindow(size *big.Int) *Window {
	return &Window{need: new(big.Int).Set(size), total: new(big.Int), by: make(map[string]*big.Int), units: make(map[float64]*big.Int)}
}

// Add counts a share of difficulty d paying script, the next older share
// of the ledger. It returns false once the window is full (the share
// that filled it is counted with the part that fitted); shares added
// after that are ignored.
func (w *Window) Add(script []byte, d float64) (more bool, err error) {
	if w.full {
		return false, nil
	}
	u, ok := w.units[d]
	if !ok {
		var err error
		if u, err = ShareUnits(d); err != nil {
			return true, err
		}
		if len(w.units) < 4096 {
			w.units[d] = u
		}
	}
	room := new(big.Int).Sub(w.need, w.total)
	if u.Cmp(room) >= 0 {
		u = room
		w.full = true
	}
	if u.Sign() > 0 {
		k := string(script)
		acc, ok := w.by[k]
		if !ok {
			acc = new(big.Int)
			w.by[k] = acc
			w.order = append(w.order, k)
		}
		acc.Add(acc, u)
		w.total.Add(w.total, u)
	}
	return !w.full, nil
}

// Full reports whether the window holds its whole size.
func (w *Window) Full() bool { return w.full }

// Total returns the units in the window (its size once Full).
func (w *Window) Total() *big.Int { return new(big.Int).Set(w.total) }

// Work returns the work per script, most work first (ties: script bytes
// ascending).
func (w *Window) Work() []Work {
	out := make([]Work, 0, len(w.by))
	for _, k := range w.order {
		out = append(out, Work{Script: []byte(k), Units: new(big.Int).Set(w.by[k])})
	}
	sortWork(out)
	return out
}

func sortWork(ws []Work) {
	slices.SortStableFunc(ws, func(a, b Work) int {
		if c := b.Units.Cmp(a.Units); c != 0 {
			return c
		}
		return cmp.Compare(string(a.Script), string(b.Script))
	})
}

// Params are the rules of one split.
type Params struct {
	// Value is the coinbase value to pay out (subsidy plus fees), in
	// satoshis.
	Value int64
	// FeeBasisPoints is the pool fee in hundredths of a percent (100 is
	// 1%), paid to FeeScript; 0 or a nil FeeScript: no fee.
	FeeBasisPoints int64
	FeeScript      []byte
	// Dust is the smallest output worth creating: a miner whose amount
	// would be below it is not paid in this block (docs/payouts.md).
	Dust int64
	// MaxOutputs caps the outputs, the fee output included (the witness
	// commitment is not counted). At least 1.
	MaxOutputs int
}

// Output is one coinbase output of the split.
type Output struct {
	Script []byte
	Value  int64
	Units  *big.Int // the window work it pays for; nil for the fee
	Fee    bool
}

// ErrNoWork is returned by Split when no miner has work to pay.
var ErrNoWork = errors.New("payout: no share work in the window")

// Split divides p.Value among the miners of work (see docs/payouts.md for
// every rule): the fee, floor(Value·FeeBasisPoints/10000), goes to
// p.FeeScript unless it is below p.Dust (then it stays with the miners);
// the miners with the most work, as many as fit in MaxOutputs, are paid
// floor(R·w/W) each for reward R and paid work W, and the satoshis left
// by rounding go one each to the largest remainders (ties: more work,
// then script bytes ascending); while a paid miner's amount is below
// p.Dust the paid miner with the least work is dropped and the split
// redone, down to one miner, who is always paid. Outputs are the miners,
// most work first, then the fee; their values sum to p.Value.
func Split(work []Work, p Params) ([]Output, error) {
	if p.Value < 0 {
		return nil, fmt.Errorf("payout: coinbase value %d: negative", p.Value)
	}
	if p.FeeBasisPoints < 0 || p.FeeBasisPoints > 10000 {
		return nil, fmt.Errorf("payout: fee %d basis points: must be 0..10000", p.FeeBasisPoints)
	}
	if p.MaxOutputs < 1 {
		return nil, fmt.Errorf("payout: at most %d outputs: must be at least 1", p.MaxOutputs)
	}
	miners := make([]Work, 0, len(work))
	for _, w := range work {
		if w.Units == nil || w.Units.Sign() < 0 {
			return nil, fmt.Errorf("payout: script %x: work %v: must be non-negative", w.Script, w.Units)
		}
		if w.Units.Sign() > 0 {
			miners = append(miners, w)
		}
	}
	sortWork(miners)
	for i := 1; i < len(miners); i++ {
		if string(miners[i].Script) == string(miners[i-1].Script) {
			return nil, fmt.Errorf("payout: script %x listed twice", miners[i].Script)
		}
	}
	if len(miners) == 0 {
		return nil, ErrNoWork
	}
	var fee int64
	if p.FeeScript != nil && p.FeeBasisPoints > 0 {
		f := new(big.Int).Mul(big.NewInt(p.Value), big.NewInt(p.FeeBasisPoints))
		fee = f.Quo(f, big.NewInt(10000)).Int64()
		if fee < p.Dust {
			fee = 0
		}
	}
	slots := p.MaxOutputs
	if fee > 0 {
		slots--
		if slots < 1 { // one output: the miners before the fee
			slots, fee = 1, 0
		}
	}
	reward := p.Value - fee
	dust := max(p.Dust, 1) // a zero output is never made
	paid := miners[:min(slots, len(miners))]
	var amounts []int64
	for {
		amounts = share(reward, paid)
		if len(paid) == 1 || slices.Min(amounts) >= dust {
			break
		}
		paid = paid[:len(paid)-1]
	}
	out := make([]Output, 0, len(paid)+1)
	for i, m := range paid {
		out = append(out, Output{Script: m.Script, Value: amounts[i], Units: new(big.Int).Set(m.Units)})
	}
	if fee > 0 {
		out = append(out, Output{Script: p.FeeScript, Value: fee, Fee: true})
	}
	return out, nil
}

// share splits reward over paid (sorted, most work first) by largest
// remainder.
func share(reward int64, paid []Work) []int64 {
	total := new(big.Int)
	for _, m := range paid {
		total.Add(total, m.Units)
	}
	R := big.NewInt(reward)
	amounts := make([]int64, len(paid))
	rems := make([]*big.Int, len(paid))
	left := reward
	for i, m := range paid {
		q, r := new(big.Int).QuoRem(new(big.Int).Mul(R, m.Units), total, new(big.Int))
		amounts[i] = q.Int64()
		rems[i] = r
		left -= amounts[i]
	}
	idx := make([]int, len(paid))
	for i := range idx {
		idx[i] = i
	}
	// paid is already in (work desc, script asc) order, so a stable sort
	// by remainder keeps that order among equal remainders.
	slices.SortStableFunc(idx, func(a, b int) int { return rems[b].Cmp(rems[a]) })
	for _, i := range idx[:left] {
		amounts[i]++
	}
	return amounts
}

// ParseFee reads a pool fee such as "1%", "0.5%" or "0" into basis points
// (hundredths of a percent).
func ParseFee(s string) (int64, error) {
	v := strings.TrimSpace(s)
	v = strings.TrimSuffix(v, "%")
	whole, frac, _ := strings.Cut(v, ".")
	if whole == "" && frac == "" || len(frac) > 2 || strings.HasPrefix(whole, "-") || strings.HasPrefix(whole, "+") {
		return 0, fmt.Errorf("pool fee %q: want a percentage with at most two decimals, such as 1%% or 0.25%%", s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	if whole == "" {
		whole = "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("pool fee %q: want a percentage with at most two decimals, such as 1%% or 0.25%%", s)
	}
	if n > 10000 {
		return 0, fmt.Errorf("pool fee %q: above 100%%", s)
	}
	return n, nil
}

// OutputWeight is the weight of the largest standard output a payout may
// use (P2TR or P2WSH: 8-byte value, 1-byte length, 34-byte script, all
// non-witness bytes, so 43 × 4).
const OutputWeight = 43 * 4

// MaxBlockWeight is the consensus block weight limit.
const MaxBlockWeight = 4_000_000

// FitOutputs returns how many payout outputs of OutputWeight fit in a
// block next to txWeight of template transactions, given the weight of
// the coinbase with no payout output (base, the witness commitment output
// and coinbase witness included) and the rest of the block: the 80-byte
// header and a 3-byte transaction count (332 weight). It never returns
// more than limit, nor less than 0.
func FitOutputs(limit int, txWeight, base int64) int {
	room := int64(MaxBlockWeight) - 332 - txWeight - base
	// The output count grows from one byte to three past 252 outputs.
	room -= 2 * 4
	if room <= 0 {
		return 0
	}
	return int(min(int64(limit), room/OutputWeight))
}
