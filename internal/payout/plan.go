package payout

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/work"
)

// Payout modes.
const (
	// Solo pays each block to the payout script of the worker that found
	// it.
	Solo = "solo"
	// PPLNS pays every block to the miners of the last Rules.Window
	// blocks' worth of share work, in proportion (docs/payouts.md).
	PPLNS = "pplns"
)

// DefaultWindow is the PPLNS window in blocks of network work unless
// Rules.Window says otherwise.
const DefaultWindow = 8

// DefaultMaxOutputs caps a PPLNS coinbase's paying outputs (fee output
// included) unless Rules.MaxOutputs says otherwise: 39 of the largest
// standard outputs fit in the 8,000 weight Bitcoin Core leaves for header
// and coinbase by default (-blockreservedweight). The template's room in
// the block can lower it further (docs/payouts.md).
const DefaultMaxOutputs = 39

// DefaultDust is the smallest PPLNS output (satoshis) unless Rules.Dust
// says otherwise: Bitcoin Core's dust threshold for a P2PKH output, the
// largest of the standard output types' thresholds.
const DefaultDust = 546

// CoinbaseBaseWeight bounds the weight of a coinbase without its paying
// outputs: version, one input with a scriptSig of at most 100 bytes,
// sequence, a 3-byte output count, the witness commitment output (47
// bytes), lock time, all times 4, plus the segwit marker, flag and the
// 32-byte witness reserved value.
const CoinbaseBaseWeight = 4*(4+1+32+4+1+100+4+3+47+4) + (2 + 1 + 1 + 32)

// Rules are a pool's PPLNS settings: the same for a single coordinator
// and a cluster's active coordinator.
type Rules struct {
	// Window is the PPLNS window in blocks of network work
	// (DefaultWindow when 0).
	Window float64
	// FeeBasisPoints (hundredths of a percent) of every PPLNS block go
	// to FeeScript; 0: no fee.
	FeeBasisPoints int64
	FeeScript      []byte
	// Dust is the smallest output in satoshis (DefaultDust when 0).
	Dust int64
	// MaxOutputs caps a coinbase's paying outputs, the fee included
	// (DefaultMaxOutputs when 0).
	MaxOutputs int
}

// Check fills in the defaults of r's zero fields and reports the first
// setting that is out of range, naming it and its value.
func (r *Rules) Check() error {
	if r.Window == 0 {
		r.Window = DefaultWindow
	}
	if !(r.Window > 0) || r.Window > 1e12 {
		return fmt.Errorf("PPLNS window %v blocks: must be above 0 and at most 1e12", r.Window)
	}
	if r.FeeBasisPoints < 0 || r.FeeBasisPoints > 10000 {
		return fmt.Errorf("pool fee %d basis points: must be 0..10000", r.FeeBasisPoints)
	}
	if r.FeeBasisPoints > 0 && len(r.FeeScript) == 0 {
		return fmt.Errorf("pool fee of %d basis points without a pool payout script", r.FeeBasisPoints)
	}
	if r.Dust == 0 {
		r.Dust = DefaultDust
	}
	if r.Dust < 0 {
		return fmt.Errorf("payout dust %d: must not be negative", r.Dust)
	}
	if r.MaxOutputs == 0 {
		r.MaxOutputs = DefaultMaxOutputs
	}
	if r.MaxOutputs < 1 || r.MaxOutputs > 20000 {
		return fmt.Errorf("max payout outputs %d: must be 1..20000", r.MaxOutputs)
	}
	return nil
}

// Ledger is the part of a share ledger a payout plan needs: the newest
// share work and a durable record of what each found block pays. The
// SQLite store and the cluster's PostgreSQL ledger implement it, so the
// window comes from the ledger, never from one process's memory.
type Ledger interface {
	// ScanRecentShares calls fn for each share from the newest to the
	// oldest until fn returns false, and returns the ledger position of
	// the newest share it walked (the block's Cutoff).
	ScanRecentShares(ctx context.Context, fn func(worker string, difficulty float64) bool) (cutoff int64, err error)
	// RecordPayouts stores what a found block pays, idempotently.
	RecordPayouts(ctx context.Context, rec ledger.PayoutRecord) error
}

// Plan computes coinbase payouts from a ledger under one set of rules:
// the PPLNS window and split of a template, the outputs a job's coinbase
// pays and the record of what a found block paid. A single coordinator
// and a cluster's active coordinator use it alike. It is safe for
// concurrent use.
type Plan struct {
	rules    Rules
	led      Ledger
	scriptOf func(string) ([]byte, error)
	log      *slog.Logger

	mu       sync.Mutex
	scripts  map[string][]byte // payout label → script
	weightOf *work.Template    // the template weight was computed for
	weight   int64
}

// NewPlan checks r (Rules.Check) and returns a plan over led; scriptOf
// maps a payout label (ledger.AccountOf a worker name) to its output
// script, as work.Source.PayoutScript does. log may be nil.
func NewPlan(r Rules, led Ledger, scriptOf func(label string) ([]byte, error), log *slog.Logger) (*Plan, error) {
	if led == nil || scriptOf == nil {
		return nil, errors.New("payout: a plan needs a ledger and a payout script rule")
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Plan{rules: r, led: led, scriptOf: scriptOf, log: log}, nil
}

// Rules returns the plan's rules, defaults filled in.
func (p *Plan) Rules() Rules { return p.rules }

// Ledger returns the ledger the plan reads and records in.
func (p *Plan) Ledger() Ledger { return p.led }

// ScriptOf returns the payout script of worker (the script of its
// ledger.AccountOf label), cached.
func (p *Plan) ScriptOf(worker string) ([]byte, error) {
	l := ledger.AccountOf(worker)
	p.mu.Lock()
	s, ok := p.scripts[l]
	p.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := p.scriptOf(l)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.scripts == nil {
		p.scripts = make(map[string][]byte)
	}
	if len(p.scripts) < 1<<16 {
		p.scripts[l] = s
	}
	p.mu.Unlock()
	return s, nil
}

// Snapshot is the PPLNS window of a template at one moment: each payout
// script's work in it and the split of the template's coinbase over it.
type Snapshot struct {
	Height  int64 // the block the window would pay
	Value   int64 // that block's coinbase value
	Bits    uint32
	Cutoff  int64 // ledger position of the newest share in it
	Size    *big.Int
	Total   *big.Int // work in it (Size once the ledger holds that much)
	Work    []Work
	Outputs []Output          // nil when there is no work
	Labels  map[string]string // script (as a string) → a worker label paying to it
	MaxOuts int
	Skipped int // ledger shares in the walk that cannot be paid
}

// Window scans the ledger for the window of t and splits t's coinbase
// value over it (docs/payouts.md). A share that cannot be paid (its
// worker has no payout script, or its difficulty is not a positive
// number) is skipped and counted, never fatal.
func (p *Plan) Window(ctx context.Context, t *work.Template) (*Snapshot, error) {
	target, err := t.Target()
	if err != nil {
		return nil, err
	}
	size, err := WindowUnits(p.rules.Window, target.Big())
	if err != nil {
		return nil, err
	}
	win := NewWindow(size)
	labels := make(map[string]string)
	skipped := 0
	var firstSkip error
	cutoff, err := p.led.ScanRecentShares(ctx, func(worker string, d float64) bool {
		script, err := p.ScriptOf(worker)
		if err != nil {
			skipped++
			firstSkip = cmp.Or(firstSkip, fmt.Errorf("worker %q: %w", worker, err))
			return true
		}
		more, err := win.Add(script, d)
		if err != nil {
			skipped++
			firstSkip = cmp.Or(firstSkip, fmt.Errorf("worker %q: %w", worker, err))
			return true
		}
		if _, ok := labels[string(script)]; !ok {
			labels[string(script)] = ledger.AccountOf(worker)
		}
		return more
	})
	if err != nil {
		return nil, fmt.Errorf("payout: PPLNS window for height %d: %w", t.Height, err)
	}
	if skipped > 0 {
		p.log.Warn("PPLNS window: ledger shares skipped, they cannot be paid", "height", t.Height, "skipped", skipped, "first", firstSkip)
	}
	s := &Snapshot{Height: t.Height, Value: t.CoinbaseValue, Bits: t.Bits, Cutoff: cutoff, Size: size, Total: win.Total(), Work: win.Work(), Labels: labels, Skipped: skipped}
	s.MaxOuts = FitOutputs(p.rules.MaxOutputs, p.txWeight(t), CoinbaseBaseWeight)
	if s.MaxOuts < 1 {
		return nil, fmt.Errorf("payout: template at height %d leaves no room in the block for a payout output", t.Height)
	}
	outs, err := Split(s.Work, p.params(t.CoinbaseValue, s.MaxOuts))
	if err != nil && !errors.Is(err, ErrNoWork) {
		return nil, fmt.Errorf("payout: PPLNS split for height %d: %w", t.Height, err)
	}
	s.Outputs = outs
	return s, nil
}

func (p *Plan) params(value int64, maxOuts int) Params {
	return Params{Value: value, FeeBasisPoints: p.rules.FeeBasisPoints, FeeScript: p.rules.FeeScript, Dust: p.rules.Dust, MaxOutputs: maxOuts}
}

// txWeight returns the weight of t's transactions, cached for the last
// template.
func (p *Plan) txWeight(t *work.Template) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.weightOf == t {
		return p.weight
	}
	sum := TemplateTxWeight(t)
	p.weightOf, p.weight = t, sum
	return sum
}

// TemplateTxWeight is the weight of t's transactions.
func TemplateTxWeight(t *work.Template) int64 {
	var sum int64
	for _, tx := range t.Txs {
		var m wire.MsgTx
		if err := m.Deserialize(bytes.NewReader(tx.Raw)); err != nil {
			// Cannot be mined anyway; count its raw size fully.
			sum += 4 * int64(len(tx.Raw))
			continue
		}
		sum += 3*int64(m.SerializeSizeStripped()) + int64(m.SerializeSize())
	}
	return sum
}

// Job returns the coinbase outputs (in order) a job on t pays under
// PPLNS and the payout record of a block found on it (Hash unset), from
// the ledger as it is now; nil outputs and record when the window holds
// no work yet (the job then pays its finder, as solo).
func (p *Plan) Job(ctx context.Context, t *work.Template) ([]*wire.TxOut, *ledger.PayoutRecord, error) {
	s, err := p.Window(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	if s.Outputs == nil {
		return nil, nil, nil
	}
	rec := &ledger.PayoutRecord{Height: t.Height, Mode: PPLNS, Cutoff: s.Cutoff, Window: s.Size.String(), Value: t.CoinbaseValue,
		Rules: p.recordRules(s).encode()}
	outs := make([]*wire.TxOut, 0, len(s.Outputs))
	for _, o := range s.Outputs {
		outs = append(outs, wire.NewTxOut(o.Value, o.Script))
		po := ledger.PayoutOutput{Script: o.Script, Amount: o.Value, Fee: o.Fee}
		if !o.Fee {
			po.Label = s.Labels[string(o.Script)]
		}
		if o.Units != nil {
			po.Work = o.Units.String()
		}
		rec.Outputs = append(rec.Outputs, po)
	}
	return outs, rec, nil
}

// SoloRecord is the record of a found block that pays no PPLNS job: its
// coinbase's outputs of positive value, each labelled with the finder's
// account (ledger.Printable, so that any name can be stored), its value
// their sum, its height the coinbase's BIP 34 height.
func SoloRecord(blk *wire.MsgBlock, finder string) ledger.PayoutRecord {
	rec := ledger.PayoutRecord{Hash: chainmath.Hash(blk.BlockHash()), Height: BlockHeight(blk), Mode: Solo}
	label := ledger.Printable(ledger.AccountOf(finder))
	if len(blk.Transactions) > 0 {
		for _, o := range blk.Transactions[0].TxOut {
			if o.Value > 0 {
				rec.Value += o.Value
				rec.Outputs = append(rec.Outputs, ledger.PayoutOutput{Script: o.PkScript, Amount: o.Value, Label: label})
			}
		}
	}
	return rec
}

// Record stores what the found block blk pays in the plan's ledger: rec,
// the record of the PPLNS job it was found on (Hash set to blk's), or
// when rec is nil the block's SoloRecord. A write is given at most 10 s.
func (p *Plan) Record(ctx context.Context, blk *wire.MsgBlock, finder string, rec *ledger.PayoutRecord) error {
	var r ledger.PayoutRecord
	if rec != nil {
		r = *rec
		r.Hash = chainmath.Hash(blk.BlockHash())
	} else {
		r = SoloRecord(blk, finder)
		if len(r.Outputs) > 1 {
			p.log.Warn("found block pays no PPLNS job of this plan: recorded as its coinbase pays, without a window", "hash", r.Hash.String(), "outputs", len(r.Outputs))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.led.RecordPayouts(rctx, r)
}

// BlockHeight reads the BIP 34 height from blk's coinbase (-1 if it has
// none).
func BlockHeight(blk *wire.MsgBlock) int64 {
	if len(blk.Transactions) == 0 || len(blk.Transactions[0].TxIn) == 0 {
		return -1
	}
	h, err := chainmath.ParseCoinbaseHeight(blk.Transactions[0].TxIn[0].SignatureScript)
	if err != nil {
		return -1
	}
	return h
}
