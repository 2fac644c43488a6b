package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/payout"
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
	// Written with ctx as it is (no deadline of its own): a found block
	// waits for its record on one process (blocks.go).
	var rec ledger.PayoutRecord
	if fb.pplns != nil {
		rec = fb.pplns.rec
		rec.Hash = fb.hash
	} else {
		rec = payout.SoloRecord(blk, fb.finder)
		rec.Height = fb.tmpl.Height
	}
	if err := c.plan.Ledger().RecordPayouts(ctx, rec); err != nil {
		c.log.Error("recording the payouts of a found block", "height", fb.tmpl.Height, "hash", fb.hash.String(), "err", err)
	}
}

// MinerReport is one payout address's account (payout.MinerReport).
type MinerReport = payout.MinerReport

// MinerPayout is one block's payment to an address (payout.MinerPayout).
type MinerPayout = payout.MinerPayout

// accounts reads the payout addresses' accounts from the coordinator's
// plan and store.
func (c *Coordinator) accounts() payout.Accounts {
	current := func(context.Context) (*work.Template, error) { return c.cfg.Source.Current(), nil }
	return payout.Accounts{Plan: c.plan, Mode: c.cfg.Payout, Current: current, ScriptOf: c.cfg.Source.PayoutScript}
}

// Miner reports the account of the payout address addr (a worker label).
func (c *Coordinator) Miner(ctx context.Context, addr string) (*MinerReport, error) {
	return c.accounts().Miner(ctx, addr)
}

// MinersWindow lists every payout address in the current window with its
// work, under PPLNS what the next block would pay it, and what accepted
// blocks have paid it so far (for the dashboard; Payouts left empty).
func (c *Coordinator) MinersWindow(ctx context.Context) ([]MinerReport, error) {
	return c.accounts().MinersWindow(ctx)
}
