package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

// Payout modes (Config.Payout).
const (
	// PayoutSolo pays each block to the payout script of the worker that
	// found it (the default).
	PayoutSolo = payout.Solo
	// PayoutPPLNS pays every block to the miners of the last
	// Config.PPLNSWindow blocks' worth of share work, in proportion
	// (docs/payouts.md).
	PayoutPPLNS = payout.PPLNS
)

// PayoutLedger is the part of a ledger PPLNS needs (payout.Ledger):
// *store.Store implements it.
type PayoutLedger = payout.Ledger

// DefaultMaxPayoutOutputs caps a PPLNS coinbase's paying outputs, fee
// output included, unless Config.MaxPayoutOutputs says otherwise
// (payout.DefaultMaxOutputs).
const DefaultMaxPayoutOutputs = payout.DefaultMaxOutputs

// DefaultPayoutDust is the smallest PPLNS output (satoshis) unless
// Config.PayoutDust says otherwise (payout.DefaultDust).
const DefaultPayoutDust = payout.DefaultDust

// pplnsJob is the payout an epoch's coinbase carries under PPLNS.
type pplnsJob struct {
	outputs []*wire.TxOut
	rec     ledger.PayoutRecord // Hash unset: filled in when a block is found
	fixed   bool                // outputs from the template (work.Template.CoinbaseOutputs): recorded by the source, not here
}

// PayoutRules returns c's payout settings (PPLNSWindow, PoolFeeBasisPoints,
// PoolScript, PayoutDust, MaxPayoutOutputs) as package payout's rules.
func (c *Config) PayoutRules() payout.Rules {
	return payout.Rules{Window: c.PPLNSWindow, FeeBasisPoints: c.PoolFeeBasisPoints, FeeScript: c.PoolScript, Dust: c.PayoutDust, MaxOutputs: c.MaxPayoutOutputs}
}

func (c *Config) checkPayout() error {
	switch c.Payout {
	case "":
		c.Payout = PayoutSolo
	case PayoutSolo, PayoutPPLNS:
	default:
		return fmt.Errorf("payout mode %q: want %q or %q", c.Payout, PayoutSolo, PayoutPPLNS)
	}
	r := c.PayoutRules()
	if err := r.Check(); err != nil {
		return err
	}
	c.PPLNSWindow, c.PayoutDust, c.MaxPayoutOutputs = r.Window, r.Dust, r.MaxOutputs
	if c.Payout == PayoutPPLNS {
		if _, ok := c.Store.(PayoutLedger); !ok {
			return fmt.Errorf("payout mode %q: the store (%T) cannot list recent shares", c.Payout, c.Store)
		}
	}
	return nil
}

// scriptOf returns the payout script of worker (cached by the plan).
func (c *Coordinator) scriptOf(worker string) ([]byte, error) {
	if c.plan != nil {
		return c.plan.ScriptOf(worker)
	}
	return c.cfg.Source.PayoutScript(ledger.AccountOf(worker))
}

// PayoutMode returns PayoutSolo or PayoutPPLNS.
func (c *Coordinator) PayoutMode() string { return c.cfg.Payout }

// Plan returns the coordinator's payout plan over its store (nil when the
// store is no payout.Ledger).
func (c *Coordinator) Plan() *payout.Plan { return c.plan }

// newPlan is the payout plan over cfg's store, nil when the store is no
// payout.Ledger.
func newPlan(cfg *Config) (*payout.Plan, error) {
	led, ok := cfg.Store.(PayoutLedger)
	if !ok {
		return nil, nil
	}
	return payout.NewPlan(cfg.PayoutRules(), led, cfg.Source.PayoutScript, cfg.Logger)
}

// window is the PPLNS window of t in the coordinator's store.
func (c *Coordinator) window(ctx context.Context, t *work.Template) (*payout.Snapshot, error) {
	if c.plan == nil {
		return nil, errors.New("coordinator: the ledger cannot list recent shares (PPLNS needs a payout.Ledger)")
	}
	return c.plan.Window(ctx, t)
}

// pplnsFor builds the PPLNS payout of a new epoch on t: nil when the
// window holds no work yet (each block then pays its finder, as solo).
func (c *Coordinator) pplnsFor(t *work.Template) (*pplnsJob, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	outs, rec, err := c.plan.Job(ctx, t)
	if err != nil || rec == nil {
		return nil, err
	}
	return &pplnsJob{outputs: outs, rec: *rec}, nil
}

// recordPayouts stores what the found block blk pays: the PPLNS record of
// its job, or for a solo block its coinbase's paying outputs.
func (c *Coordinator) recordPayouts(ctx context.Context, fb *foundBlock, blk *wire.MsgBlock) {
	if c.plan == nil || fb.pplns != nil && fb.pplns.fixed {
		return
	}
	var err error
	if fb.pplns != nil {
		err = c.plan.Record(ctx, blk, fb.finder, &fb.pplns.rec)
	} else {
		rec := payout.SoloRecord(blk, fb.finder)
		rec.Height = fb.tmpl.Height
		err = c.plan.Ledger().RecordPayouts(ctx, rec)
	}
	if err != nil {
		c.log.Error("recording the payouts of a found block", "height", fb.tmpl.Height, "hash", fb.hash.String(), "err", err)
	}
}

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

// unitsPerDifficulty converts work units to difficulty for reports.
var unitsPerDifficulty = new(big.Float).SetInt(new(big.Int).Lsh(big.NewInt(1), 64))

func unitsToDiff(u *big.Int) float64 {
	f, _ := new(big.Float).Quo(new(big.Float).SetInt(u), unitsPerDifficulty).Float64()
	return f
}

// Miner reports the account of the payout address addr (a worker label).
func (c *Coordinator) Miner(ctx context.Context, addr string) (*MinerReport, error) {
	if addr == "" || strings.Contains(addr, ".") {
		return nil, fmt.Errorf("address %q: want a payout address (a worker name without its .suffix)", addr)
	}
	script, err := c.cfg.Source.PayoutScript(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	rep := &MinerReport{Address: addr, Script: fmt.Sprintf("%x", script), Mode: c.cfg.Payout, Payouts: []MinerPayout{}}
	if c.plan == nil {
		return rep, nil
	}
	led := c.plan.Ledger()
	t := c.cfg.Source.Current()
	w, err := c.window(ctx, t)
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
	if c.cfg.Payout == PayoutPPLNS {
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
	if sl, ok := led.(scriptPayouts); ok {
		pays, err := sl.ScriptPayouts(ctx, script, addr)
		if err != nil {
			return nil, err
		}
		for _, p := range pays {
			rep.Payouts = append(rep.Payouts, MinerPayout{Height: p.Height, Hash: p.Hash.String(), Amount: p.Amount, State: p.State})
			if p.State == store.FoundAccepted {
				rep.PaidTotal += p.Amount
			}
		}
	}
	return rep, nil
}

// scriptPayouts is the part of a ledger that lists payouts by script.
type scriptPayouts interface {
	ScriptPayouts(ctx context.Context, script []byte, label string) ([]store.ScriptPayout, error)
}

// MinersWindow lists every payout address in the current window with its
// work, under PPLNS what the next block would pay it, and what accepted
// blocks have paid it so far (for the dashboard; Payouts left empty).
func (c *Coordinator) MinersWindow(ctx context.Context) ([]MinerReport, error) {
	if c.plan == nil {
		return nil, nil
	}
	sp, _ := c.plan.Ledger().(scriptPayouts)
	w, err := c.window(ctx, c.cfg.Source.Current())
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
		r := MinerReport{Address: w.Labels[string(wk.Script)], Script: fmt.Sprintf("%x", wk.Script), Mode: c.cfg.Payout,
			WindowHeight: w.Height, WindowSize: unitsToDiff(w.Size), WindowTotal: unitsToDiff(w.Total), WindowWork: unitsToDiff(wk.Units), NextValue: w.Value}
		if w.Total.Sign() > 0 {
			r.WindowShare, _ = new(big.Rat).SetFrac(wk.Units, w.Total).Float64()
		}
		if c.cfg.Payout == PayoutPPLNS {
			r.NextAmount = amount[string(wk.Script)]
			if w.Value > 0 {
				r.NextFraction = float64(r.NextAmount) / float64(w.Value)
			}
		} else {
			r.NextFraction = r.WindowShare
		}
		if sp != nil {
			pays, err := sp.ScriptPayouts(ctx, wk.Script, r.Address)
			if err != nil {
				return nil, err
			}
			for _, p := range pays {
				if p.State == store.FoundAccepted {
					r.PaidTotal += p.Amount
				}
			}
		}
		out = append(out, r)
	}
	return out, nil
}
