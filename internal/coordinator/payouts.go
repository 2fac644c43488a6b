package coordinator

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
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
	PayoutSolo = "solo"
	// PayoutPPLNS pays every block to the miners of the last
	// Config.PPLNSWindow blocks' worth of share work, in proportion
	// (docs/payouts.md).
	PayoutPPLNS = "pplns"
)

// PayoutLedger is the part of a ledger PPLNS needs: the newest share work
// and a durable record of what each found block pays. *store.Store
// implements it; a cluster ledger implements it over its shared store so
// that the window comes from the ledger, not from one process's memory.
type PayoutLedger interface {
	// ScanRecentShares calls fn for each share from the newest to the
	// oldest until fn returns false, and returns the ledger position of
	// the newest share it walked (see store.Store.ScanRecentShares).
	ScanRecentShares(ctx context.Context, fn func(worker string, difficulty float64) bool) (cutoff int64, err error)
	// RecordPayouts stores what a found block pays, idempotently.
	RecordPayouts(ctx context.Context, rec ledger.PayoutRecord) error
}

// DefaultMaxPayoutOutputs caps a PPLNS coinbase's paying outputs (fee
// output included) unless Config.MaxPayoutOutputs says otherwise: 39 of
// the largest standard outputs fit in the 8,000 weight Bitcoin Core
// leaves for header and coinbase by default (-blockreservedweight). The
// template's room in the block can lower it further (docs/payouts.md).
const DefaultMaxPayoutOutputs = 39

// DefaultPayoutDust is the smallest PPLNS output (satoshis): Bitcoin
// Core's dust threshold for a P2PKH output, the largest of the standard
// output types' thresholds.
const DefaultPayoutDust = 546

// coinbaseBaseWeight bounds the weight of a coinbase without its paying
// outputs: version, one input with a scriptSig of at most 100 bytes,
// sequence, a 3-byte output count, the witness commitment output (47
// bytes), lock time, all times 4, plus the segwit marker, flag and the
// 32-byte witness reserved value.
const coinbaseBaseWeight = 4*(4+1+32+4+1+100+4+3+47+4) + (2 + 1 + 1 + 32)

// pplnsJob is the payout an epoch's coinbase carries under PPLNS.
type pplnsJob struct {
	outputs []*wire.TxOut
	rec     ledger.PayoutRecord // Hash unset: filled in when a block is found
	fixed   bool                // outputs from the template (work.Template.CoinbaseOutputs): recorded by the source, not here
}

func (c *Config) checkPayout() error {
	switch c.Payout {
	case "":
		c.Payout = PayoutSolo
	case PayoutSolo, PayoutPPLNS:
	default:
		return fmt.Errorf("payout mode %q: want %q or %q", c.Payout, PayoutSolo, PayoutPPLNS)
	}
	if c.PPLNSWindow == 0 {
		c.PPLNSWindow = 8
	}
	if !(c.PPLNSWindow > 0) || c.PPLNSWindow > 1e12 {
		return fmt.Errorf("PPLNS window %v blocks: must be above 0 and at most 1e12", c.PPLNSWindow)
	}
	if c.PoolFeeBasisPoints < 0 || c.PoolFeeBasisPoints > 10000 {
		return fmt.Errorf("pool fee %d basis points: must be 0..10000", c.PoolFeeBasisPoints)
	}
	if c.PoolFeeBasisPoints > 0 && len(c.PoolScript) == 0 {
		return fmt.Errorf("pool fee of %d basis points without a pool payout script", c.PoolFeeBasisPoints)
	}
	if c.PayoutDust == 0 {
		c.PayoutDust = DefaultPayoutDust
	}
	if c.PayoutDust < 0 {
		return fmt.Errorf("payout dust %d: must not be negative", c.PayoutDust)
	}
	if c.MaxPayoutOutputs == 0 {
		c.MaxPayoutOutputs = DefaultMaxPayoutOutputs
	}
	if c.MaxPayoutOutputs < 1 || c.MaxPayoutOutputs > 20000 {
		return fmt.Errorf("max payout outputs %d: must be 1..20000", c.MaxPayoutOutputs)
	}
	if c.Payout == PayoutPPLNS {
		if _, ok := c.Store.(PayoutLedger); !ok {
			return fmt.Errorf("payout mode %q: the store (%T) cannot list recent shares", c.Payout, c.Store)
		}
	}
	return nil
}

// payoutScripts caches the payout script of each worker label.
type payoutScripts struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *Coordinator) scriptOf(worker string) ([]byte, error) {
	l := ledger.AccountOf(worker)
	c.scripts.mu.Lock()
	s, ok := c.scripts.m[l]
	c.scripts.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := c.cfg.Source.PayoutScript(l)
	if err != nil {
		return nil, err
	}
	c.scripts.mu.Lock()
	if c.scripts.m == nil {
		c.scripts.m = make(map[string][]byte)
	}
	if len(c.scripts.m) < 1<<16 {
		c.scripts.m[l] = s
	}
	c.scripts.mu.Unlock()
	return s, nil
}

// PayoutMode returns PayoutSolo or PayoutPPLNS.
func (c *Coordinator) PayoutMode() string { return c.cfg.Payout }

// Window is the PPLNS window at one moment: each payout script's work in
// it and the split of a coinbase over it.
type Window struct {
	Height  int64 // the block the window would pay
	Value   int64 // that block's coinbase value
	Cutoff  int64 // ledger position of the newest share in it
	Size    *big.Int
	Total   *big.Int // work in it (Size once the ledger holds that much)
	Work    []payout.Work
	Outputs []payout.Output   // nil when there is no work
	Labels  map[string]string // script (as a string) → a worker label paying to it
	MaxOuts int
	Skipped int // ledger shares in the walk that cannot be paid
}

// window scans the ledger for the window of t and splits t's coinbase
// value over it.
func (c *Coordinator) window(ctx context.Context, t *work.Template) (*Window, error) {
	led, ok := c.cfg.Store.(PayoutLedger)
	if !ok {
		return nil, errors.New("coordinator: the ledger cannot list recent shares (PPLNS needs a PayoutLedger)")
	}
	return computeWindow(ctx, &c.cfg, led, t, c.scriptOf, c.txWeight(t), c.log)
}

// computeWindow is the PPLNS window of t in led and the split of t's
// coinbase value over it, under cfg's payout settings (docs/payouts.md):
// the one computation of both the single coordinator and a cluster
// leader (PPLNS). scriptOf maps a worker name to its payout script;
// weight is the weight of t's transactions.
func computeWindow(ctx context.Context, cfg *Config, led PayoutLedger, t *work.Template, scriptOf func(string) ([]byte, error), weight int64, log *slog.Logger) (*Window, error) {
	target, err := t.Target()
	if err != nil {
		return nil, err
	}
	size, err := payout.WindowUnits(cfg.PPLNSWindow, target.Big())
	if err != nil {
		return nil, err
	}
	win := payout.NewWindow(size)
	labels := make(map[string]string)
	skipped := 0
	var firstSkip error
	cutoff, err := led.ScanRecentShares(ctx, func(worker string, d float64) bool {
		// A share that cannot be paid (its worker has no payout script
		// any more, say --payout-address was dropped, or a difficulty
		// that is not a positive number) is skipped, not fatal: one bad
		// row must not stop the pool (docs/payouts.md).
		script, err := scriptOf(worker)
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
		return nil, fmt.Errorf("coordinator: PPLNS window for height %d: %w", t.Height, err)
	}
	if skipped > 0 {
		log.Warn("PPLNS window: ledger shares skipped, they cannot be paid", "height", t.Height, "skipped", skipped, "first", firstSkip)
	}
	w := &Window{Height: t.Height, Value: t.CoinbaseValue, Cutoff: cutoff, Size: size, Total: win.Total(), Work: win.Work(), Labels: labels, Skipped: skipped}
	w.MaxOuts = payout.FitOutputs(cfg.MaxPayoutOutputs, weight, coinbaseBaseWeight)
	if w.MaxOuts < 1 {
		return nil, fmt.Errorf("coordinator: template at height %d leaves no room in the block for a payout output", t.Height)
	}
	outs, err := payout.Split(w.Work, payout.Params{
		Value: t.CoinbaseValue, FeeBasisPoints: cfg.PoolFeeBasisPoints, FeeScript: cfg.PoolScript,
		Dust: cfg.PayoutDust, MaxOutputs: w.MaxOuts,
	})
	if err != nil && !errors.Is(err, payout.ErrNoWork) {
		return nil, fmt.Errorf("coordinator: PPLNS split for height %d: %w", t.Height, err)
	}
	w.Outputs = outs
	return w, nil
}

// templateTxWeight is the weight of t's transactions.
func templateTxWeight(t *work.Template) int64 {
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

// PPLNS computes PPLNS payouts from a ledger outside a Coordinator: a
// cluster leader fixes each published job's coinbase outputs with it,
// with the same rules, limits and defaults as a single coordinator
// (docs/payouts.md, "In a cluster").
type PPLNS struct {
	cfg      Config
	led      PayoutLedger
	scriptOf func(string) ([]byte, error)
	scripts  payoutScripts
	log      *slog.Logger
}

// NewPPLNS checks cfg's payout settings (Payout, PPLNSWindow,
// PoolFeeBasisPoints, PoolScript, PayoutDust, MaxPayoutOutputs; zero
// values take the defaults, other fields are ignored) and returns a
// PPLNS over led; scriptOf maps a payout label (a worker name up to its
// first '.') to its output script, as work.Source.PayoutScript does.
func NewPPLNS(cfg Config, led PayoutLedger, scriptOf func(label string) ([]byte, error), log *slog.Logger) (*PPLNS, error) {
	if led == nil || scriptOf == nil {
		return nil, errors.New("coordinator: PPLNS needs a ledger and a payout script rule")
	}
	// Checked as solo: the ledger check is led's, not cfg.Store's.
	cfg.Payout, cfg.Store = PayoutSolo, nil
	if err := cfg.checkPayout(); err != nil {
		return nil, err
	}
	cfg.Payout = PayoutPPLNS
	if log == nil {
		log = slog.Default()
	}
	return &PPLNS{cfg: cfg, led: led, scriptOf: scriptOf, log: log}, nil
}

func (p *PPLNS) script(worker string) ([]byte, error) {
	l := ledger.AccountOf(worker)
	p.scripts.mu.Lock()
	s, ok := p.scripts.m[l]
	p.scripts.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := p.scriptOf(l)
	if err != nil {
		return nil, err
	}
	p.scripts.mu.Lock()
	if p.scripts.m == nil {
		p.scripts.m = make(map[string][]byte)
	}
	if len(p.scripts.m) < 1<<16 {
		p.scripts.m[l] = s
	}
	p.scripts.mu.Unlock()
	return s, nil
}

// Job returns the coinbase outputs (in order) a job on t pays and the
// payout record of a block found on it (Hash unset), from the ledger as
// it is now; nil outputs and record when the window holds no work yet
// (the job then pays its finder, as solo).
func (p *PPLNS) Job(ctx context.Context, t *work.Template) ([]*wire.TxOut, *ledger.PayoutRecord, error) {
	w, err := computeWindow(ctx, &p.cfg, p.led, t, p.script, templateTxWeight(t), p.log)
	if err != nil {
		return nil, nil, err
	}
	pj := payoutJob(w, t)
	if pj == nil {
		return nil, nil, nil
	}
	return pj.outputs, &pj.rec, nil
}

// txWeight returns the weight of t's transactions, cached for the last
// template.
func (c *Coordinator) txWeight(t *work.Template) int64 {
	c.weightMu.Lock()
	defer c.weightMu.Unlock()
	if c.weightOf == t {
		return c.weight
	}
	sum := templateTxWeight(t)
	c.weightOf, c.weight = t, sum
	return sum
}

// pplnsFor builds the PPLNS payout of a new epoch on t: nil when the
// window holds no work yet (each block then pays its finder, as solo).
func (c *Coordinator) pplnsFor(t *work.Template) (*pplnsJob, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := c.window(ctx, t)
	if err != nil {
		return nil, err
	}
	return payoutJob(w, t), nil
}

// payoutJob is the PPLNS payout of window w on t: nil when it holds no
// work.
func payoutJob(w *Window, t *work.Template) *pplnsJob {
	if w.Outputs == nil {
		return nil
	}
	pj := &pplnsJob{rec: ledger.PayoutRecord{Height: t.Height, Mode: PayoutPPLNS, Cutoff: w.Cutoff, Window: w.Size.String(), Value: t.CoinbaseValue}}
	for _, o := range w.Outputs {
		pj.outputs = append(pj.outputs, wire.NewTxOut(o.Value, o.Script))
		po := ledger.PayoutOutput{Script: o.Script, Amount: o.Value, Fee: o.Fee}
		if !o.Fee {
			po.Label = w.Labels[string(o.Script)]
		}
		if o.Units != nil {
			po.Work = o.Units.String()
		}
		pj.rec.Outputs = append(pj.rec.Outputs, po)
	}
	return pj
}

// recordPayouts stores what the found block blk pays: the PPLNS record of
// its job, or for a solo block its coinbase's paying outputs.
func (c *Coordinator) recordPayouts(ctx context.Context, fb *foundBlock, blk *wire.MsgBlock) {
	led, ok := c.cfg.Store.(PayoutLedger)
	if !ok {
		return
	}
	var rec ledger.PayoutRecord
	if fb.pplns != nil && fb.pplns.fixed {
		return
	}
	if fb.pplns != nil {
		rec = fb.pplns.rec
	} else {
		rec = ledger.PayoutRecord{Height: fb.tmpl.Height, Mode: PayoutSolo, Value: fb.tmpl.CoinbaseValue}
		for _, o := range blk.Transactions[0].TxOut {
			if o.Value > 0 {
				rec.Outputs = append(rec.Outputs, ledger.PayoutOutput{Script: o.PkScript, Amount: o.Value, Label: ledger.AccountOf(fb.finder)})
			}
		}
	}
	rec.Hash = fb.hash
	if err := led.RecordPayouts(ctx, rec); err != nil {
		c.log.Error("recording the payouts of a found block", "height", rec.Height, "hash", fb.hash.String(), "err", err)
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
	led, ok := c.cfg.Store.(PayoutLedger)
	if !ok {
		return rep, nil
	}
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
	led, ok := c.cfg.Store.(PayoutLedger)
	if !ok {
		return nil, nil
	}
	sp, _ := led.(scriptPayouts)
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
