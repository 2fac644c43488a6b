package payout

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"strings"

	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/work"
)

// MinerReport is one payout address's account (GET /api/miners/{address}).
type MinerReport struct {
	Address string `json:"address"`
	Script  string `json:"script"` // hex output script it is paid to
	Mode    string `json:"payout_mode"`
	// Window: the work of the next block's PPLNS window, as of now.
	WindowHeight int64         `json:"window_height"`
	WindowSize   float64       `json:"window_size"`   // difficulty units
	WindowTotal  float64       `json:"window_total"`  // work in it so far
	WindowWork   float64       `json:"window_work"`   // this address's part
	WindowShare  float64       `json:"window_share"`  // WindowWork / WindowTotal
	NextAmount   int64         `json:"next_amount"`   // satoshis the next block would pay it (PPLNS), 0 in solo
	NextFraction float64       `json:"next_fraction"` // NextAmount / coinbase value; in solo its chance to find the next block (its work share)
	NextValue    int64         `json:"next_value"`    // the next block's coinbase value
	Payouts      []MinerPayout `json:"payouts"`
	PaidTotal    int64         `json:"paid_total"` // sum over accepted blocks
}

// MinerPayout is one block's payment to an address.
type MinerPayout struct {
	Height int64  `json:"height"`
	Hash   string `json:"hash"`
	Amount int64  `json:"amount"`
	State  string `json:"state"` // the found block's state: only "accepted" was paid
}

// PaymentLister is a ledger that lists what found blocks paid a script:
// the SQLite store and the cluster's PostgreSQL ledger.
type PaymentLister interface {
	// ScriptPayouts returns every found block's payment to script or to
	// a miner with payout label label (when not empty), oldest first.
	ScriptPayouts(ctx context.Context, script []byte, label string) ([]ledger.ScriptPayout, error)
}

// Accounts reads payout addresses' accounts: their work in the next
// block's window, what it would pay them and what found blocks paid
// them. A single coordinator and a cluster coordinator fill it alike
// (web.MinerReader).
type Accounts struct {
	// Plan is the payout plan over the ledger; nil: no ledger, so
	// accounts hold the address alone.
	Plan *Plan
	Mode string // Solo or PPLNS
	// Current returns the template the next block is built on.
	Current func(ctx context.Context) (*work.Template, error)
	// ScriptOf maps a payout address to its script (the work source's
	// rule); it refuses what is not an address.
	ScriptOf func(addr string) ([]byte, error)
	// Chain, when set, gives a paid block's state instead of the
	// ledger (a cluster's ledger keeps none): FoundAccepted on the best
	// chain, "orphaned" otherwise.
	Chain work.ChainLookup
}

// window is the PPLNS window of the next block.
func (a Accounts) window(ctx context.Context) (*Snapshot, error) {
	t, err := a.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("payout: the next block's template: %w", err)
	}
	return a.Plan.Window(ctx, t)
}

// unitsPerDifficulty converts work units to difficulty for reports.
var unitsPerDifficulty = new(big.Float).SetInt(new(big.Int).Lsh(big.NewInt(1), unitShift))

func unitsToDiff(u *big.Int) float64 {
	f, _ := new(big.Float).Quo(new(big.Float).SetInt(u), unitsPerDifficulty).Float64()
	return f
}

func (a Accounts) payouts(ctx context.Context, script []byte, label string) ([]ledger.ScriptPayout, error) {
	if a.Plan == nil {
		return nil, nil
	}
	pl, ok := a.Plan.Ledger().(PaymentLister)
	if !ok {
		return nil, nil
	}
	pays, err := pl.ScriptPayouts(ctx, script, label)
	if err != nil || a.Chain == nil {
		return pays, err
	}
	for i := range pays {
		in, err := a.Chain.InBestChain(ctx, pays[i].Hash, pays[i].Height)
		if err != nil {
			return nil, fmt.Errorf("payout: is block %s on the best chain: %w", pays[i].Hash, err)
		}
		pays[i].State = "orphaned"
		if in {
			pays[i].State = ledger.FoundAccepted
		}
	}
	return pays, nil
}

// Miner reports the account of the payout address addr (a worker
// label); an address with a '.', or one the work source cannot pay, is
// an error naming it.
func (a Accounts) Miner(ctx context.Context, addr string) (*MinerReport, error) {
	if addr == "" || strings.Contains(addr, ".") {
		return nil, fmt.Errorf("address %q: want a payout address (a worker name without its .suffix)", addr)
	}
	script, err := a.ScriptOf(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	rep := &MinerReport{Address: addr, Script: fmt.Sprintf("%x", script), Mode: a.Mode, Payouts: []MinerPayout{}}
	if a.Plan == nil {
		return rep, nil
	}
	w, err := a.window(ctx)
	if err != nil {
		return nil, err
	}
	rep.WindowHeight, rep.NextValue = w.Height, w.Value
	rep.WindowSize, rep.WindowTotal = unitsToDiff(w.Size), unitsToDiff(w.Total)
	for _, wk := range w.Work {
		if bytes.Equal(wk.Script, script) {
			rep.WindowWork = unitsToDiff(wk.Units)
			if w.Total.Sign() > 0 {
				f, _ := new(big.Rat).SetFrac(wk.Units, w.Total).Float64()
				rep.WindowShare = f
			}
		}
	}
	if a.Mode == PPLNS {
		for _, o := range w.Outputs {
			if !o.Fee && bytes.Equal(o.Script, script) {
				rep.NextAmount = o.Value
			}
		}
		if w.Value > 0 {
			rep.NextFraction = float64(rep.NextAmount) / float64(w.Value)
		}
	} else {
		rep.NextFraction = rep.WindowShare
	}
	pays, err := a.payouts(ctx, script, addr)
	if err != nil {
		return nil, err
	}
	for _, p := range pays {
		rep.Payouts = append(rep.Payouts, MinerPayout{Height: p.Height, Hash: p.Hash.String(), Amount: p.Amount, State: p.State})
		if p.State == ledger.FoundAccepted {
			rep.PaidTotal += p.Amount
		}
	}
	return rep, nil
}

// MinersWindow lists every payout address in the current window with its
// work, under PPLNS what the next block would pay it, and what accepted
// blocks have paid it so far (for the dashboard; Payouts left empty).
func (a Accounts) MinersWindow(ctx context.Context) ([]MinerReport, error) {
	if a.Plan == nil {
		return nil, nil
	}
	w, err := a.window(ctx)
	if err != nil {
		return nil, err
	}
	amount := map[string]int64{}
	for _, o := range w.Outputs {
		if !o.Fee {
			amount[string(o.Script)] = o.Value
		}
	}
	out := make([]MinerReport, 0, len(w.Work))
	for _, wk := range w.Work {
		r := MinerReport{Address: w.Labels[string(wk.Script)], Script: fmt.Sprintf("%x", wk.Script), Mode: a.Mode,
			WindowHeight: w.Height, WindowSize: unitsToDiff(w.Size), WindowTotal: unitsToDiff(w.Total), WindowWork: unitsToDiff(wk.Units), NextValue: w.Value}
		if w.Total.Sign() > 0 {
			r.WindowShare, _ = new(big.Rat).SetFrac(wk.Units, w.Total).Float64()
		}
		if a.Mode == PPLNS {
			r.NextAmount = amount[string(wk.Script)]
			if w.Value > 0 {
				r.NextFraction = float64(r.NextAmount) / float64(w.Value)
			}
		} else {
			r.NextFraction = r.WindowShare
		}
		pays, err := a.payouts(ctx, wk.Script, r.Address)
		if err != nil {
			return nil, err
		}
		for _, p := range pays {
			if p.State == ledger.FoundAccepted {
				r.PaidTotal += p.Amount
			}
		}
		out = append(out, r)
	}
	return out, nil
}
