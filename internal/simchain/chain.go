// Package simchain is the embedded chain: a self-contained, Bitcoin-shaped
// block chain that the coordinator mines on by default (a work.Source).
//
// Blocks are real Bitcoin blocks — an 80-byte header and a coinbase with a
// BIP34 height, paying 50 BTC halving every 210,000 blocks to the finder —
// without other transactions. Difficulty follows aserti3-2d (see asert.go)
// anchored at genesis, so it chases whatever hashrate the agents bring.
// Every block is validated in full before it is accepted, and stored
// durably (package store) before the chain moves to it; on restart the
// stored chain is re-validated and mining resumes at its tip.
package simchain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/work"
)

// Defaults for Config.
const (
	DefaultBlockTime       = 10 * time.Second
	DefaultStartDifficulty = 0.0001
	// DefaultHalfLifeBlocks is the ASERT half-life in block intervals when
	// Config.HalfLife is zero: 12 × BlockTime (2 minutes at the default 10 s).
	// When hashrate doubles, the difficulty has caught up after roughly one
	// to two half-lives, while the block-to-block noise of the difficulty
	// stays around 15%.
	DefaultHalfLifeBlocks = 12
)

// BlockVersion is the version of every block template (BIP9 top bits).
const BlockVersion = 0x20000000

// PowLimitBits is the easiest target the chain allows, 0x7fffff·2^232.
const PowLimitBits = 0x207fffff

// MaxFutureBlockTime is how far ahead of the chain's clock a block's time
// may be on a chain with the given ASERT half-life: a quarter of it, in
// whole seconds (30 s for the default 10 s block time, whose half-life is
// 120 s).
//
// The bound exists because ASERT reads only the tip's time: a tip stamped d
// seconds later makes the next block's target 2^(d/halfLife) times larger
// (its difficulty that much lower). A block at most halfLife/4 ahead of
// the clock therefore moves the next difficulty by at most 2^(1/4) ≈ 1.19
// against the same block stamped with the clock, and since the effect
// lasts only until the next tip, a run of such blocks never adds up to
// more. The earliest time a block may carry stays median time past + 1;
// see docs/embedded-chain.md for what that can do in the other direction.
//
// Honest miners need far less than this: the coordinator stamps each job
// with the clock it shares with the chain, and miners that roll ntime move
// it by seconds.
func MaxFutureBlockTime(halfLife time.Duration) time.Duration {
	return (halfLife / 4).Truncate(time.Second)
}

// Subsidy constants: 50 BTC, halving every 210,000 blocks.
const (
	InitialSubsidy   = 50 * 100_000_000
	HalvingInterval  = 210_000
	medianTimeBlocks = 11
)

// Meta keys under which the chain parameters are kept in the store.
const (
	metaBlockTime = "simchain.block_time_seconds"
	metaHalfLife  = "simchain.half_life_seconds"
)

var powLimit = func() *big.Int {
	t, err := chainmath.CompactToBig(PowLimitBits)
	if err != nil {
		panic(err)
	}
	return t
}()

// Subsidy returns the coinbase value allowed at height.
func Subsidy(height int64) int64 {
	halvings := height / HalvingInterval
	if halvings >= 64 {
		return 0
	}
	return InitialSubsidy >> halvings
}

// BlockStore keeps the chain's blocks and two settings. *store.Store (a
// SQLite file) implements it for one process; in a cluster a JetStream
// stream does (package chainstore), so every coordinator can read the
// chain and only the elected one can extend it.
type BlockStore interface {
	// AddBlock stores b durably; it fails when it cannot (for a fenced
	// cluster store: when another coordinator has taken over).
	AddBlock(ctx context.Context, b ledger.Block) error
	// Blocks returns the stored blocks from fromHeight on, oldest first,
	// at most limit (<= 0: all).
	Blocks(ctx context.Context, fromHeight int64, limit int) ([]ledger.Block, error)
	// SetMeta and Meta keep the chain's settings (block time, half-life).
	SetMeta(ctx context.Context, key, value string) error
	Meta(ctx context.Context, key string) (value string, ok bool, err error)
}

// Config configures the embedded chain.
type Config struct {
	// Store keeps the blocks. Required.
	Store BlockStore
	// BlockTime is the target interval between blocks; default 10 s, at
	// least 1 s, whole seconds (header times are seconds).
	BlockTime time.Duration
	// StartDifficulty is the difficulty of genesis, the ASERT anchor
	// (--block-difficulty); default 0.0001. Only used when the store is
	// empty: a stored chain keeps its own genesis.
	StartDifficulty float64
	// HalfLife is the ASERT half-life; default DefaultHalfLifeBlocks ×
	// BlockTime, whole seconds.
	HalfLife time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the chain's events; default slog.Default().
	Logger *slog.Logger
}

// withDefaults fills the zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.BlockTime == 0 {
		c.BlockTime = DefaultBlockTime
	}
	if c.BlockTime < time.Second || c.BlockTime%time.Second != 0 {
		return c, fmt.Errorf("simchain: block time %v: must be a whole number of seconds, at least 1s", c.BlockTime)
	}
	if c.HalfLife == 0 {
		c.HalfLife = DefaultHalfLifeBlocks * c.BlockTime
	}
	if c.HalfLife < time.Second || c.HalfLife%time.Second != 0 {
		return c, fmt.Errorf("simchain: ASERT half-life %v: must be a whole number of seconds, at least 1s", c.HalfLife)
	}
	if c.StartDifficulty == 0 {
		c.StartDifficulty = DefaultStartDifficulty
	}
	if _, err := startBits(c.StartDifficulty); err != nil {
		return c, err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// startBits is the compact target of the genesis difficulty.
func startBits(d float64) (uint32, error) {
	t, err := chainmath.DifficultyToTarget(d)
	if err != nil {
		return 0, fmt.Errorf("simchain: start difficulty: %w", err)
	}
	if t.Cmp(powLimit) > 0 {
		return 0, fmt.Errorf("simchain: start difficulty %v is below the chain's minimum %.6g (target above powLimit %08x)",
			d, chainmath.TargetToDifficulty(powLimit), PowLimitBits)
	}
	return chainmath.BigToCompact(t), nil
}

// params are the consensus rules of one chain.
type params struct {
	spacing      int64 // seconds
	halfLife     int64 // seconds
	maxFuture    int64 // seconds, MaxFutureBlockTime(halfLife)
	anchorTarget *big.Int
	anchorPTime  int64 // genesis time − spacing
}

// nextBits is the nBits the block after a parent at (height, time) must carry.
func (p *params) nextBits(parentHeight int64, parentTime uint32) uint32 {
	t := asertTarget(p.anchorTarget, powLimit, p.spacing, p.halfLife, int64(parentTime)-p.anchorPTime, parentHeight)
	return chainmath.BigToCompact(t)
}

// Chain is the embedded chain. It implements work.Source and is safe for
// concurrent use.
type Chain struct {
	cfg    Config
	st     BlockStore
	log    *slog.Logger
	now    func() time.Time
	params params

	submitMu sync.Mutex // serializes Submit: validate, store, advance

	mu      sync.RWMutex
	headers []chainmath.Header // by height
	hashes  []chainmath.Hash   // by height
	byHash  map[chainmath.Hash]int64
	tmpl    *work.Template
	updates chan struct{}
}

var (
	_ work.Source      = (*Chain)(nil)
	_ work.ChainLookup = (*Chain)(nil)
)

// Open loads the chain from cfg.Store, re-validating every stored block, or
// creates and stores a genesis block when the store holds none.
func Open(ctx context.Context, cfg Config) (*Chain, error) {
	if cfg.Store == nil {
		return nil, errors.New("simchain: Config.Store is nil")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Chain{
		cfg:     cfg,
		st:      cfg.Store,
		log:     cfg.Logger,
		now:     cfg.Now,
		byHash:  make(map[chainmath.Hash]int64),
		updates: make(chan struct{}, 1),
	}
	blocks, err := c.st.Blocks(ctx, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("simchain: load chain: %w", err)
	}
	if len(blocks) == 0 {
		if err := c.createGenesis(ctx); err != nil {
			return nil, err
		}
	} else {
		if err := c.load(ctx, blocks); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	c.tmpl = c.buildTemplateLocked()
	c.mu.Unlock()
	tip := c.tipHeight()
	c.log.Info("embedded chain ready", "tip_height", tip, "tip_hash", c.hashes[tip].String(),
		"next_difficulty", c.Status().Difficulty, "block_time", time.Duration(c.params.spacing)*time.Second,
		"half_life", time.Duration(c.params.halfLife)*time.Second, "max_future", c.MaxFuture())
	return c, nil
}

// createGenesis builds, stores and adopts the genesis block.
func (c *Chain) createGenesis(ctx context.Context) error {
	bits, err := startBits(c.cfg.StartDifficulty)
	if err != nil {
		return err
	}
	spacing := int64(c.cfg.BlockTime / time.Second)
	halfLife := int64(c.cfg.HalfLife / time.Second)
	if err := c.st.SetMeta(ctx, metaBlockTime, strconv.FormatInt(spacing, 10)); err != nil {
		return fmt.Errorf("simchain: %w", err)
	}
	if err := c.st.SetMeta(ctx, metaHalfLife, strconv.FormatInt(halfLife, 10)); err != nil {
		return fmt.Errorf("simchain: %w", err)
	}
	now := c.now()
	blk, err := GenesisBlock(uint32(now.Unix()), bits)
	if err != nil {
		return err
	}
	raw, err := serialize(blk)
	if err != nil {
		return err
	}
	h := headerOf(&blk.Header)
	b := ledger.Block{Height: 0, Hash: h.Hash(), Header: h.Bytes(), Raw: raw, Finder: "genesis", Time: h.Time, FoundAt: now}
	if err := c.st.AddBlock(ctx, b); err != nil {
		return fmt.Errorf("simchain: store genesis: %w", err)
	}
	c.params = newParams(h, spacing, halfLife)
	c.headers = []chainmath.Header{h}
	c.hashes = []chainmath.Hash{b.Hash}
	c.byHash[b.Hash] = 0
	c.log.Info("embedded chain created genesis", "hash", b.Hash.String(), "bits", fmt.Sprintf("%08x", bits),
		"difficulty", c.cfg.StartDifficulty)
	return nil
}

func newParams(genesis chainmath.Header, spacing, halfLife int64) params {
	t, _ := chainmath.CompactToBig(genesis.Bits) // checked by the caller
	return params{
		spacing:      spacing,
		halfLife:     halfLife,
		maxFuture:    int64(MaxFutureBlockTime(time.Duration(halfLife)*time.Second) / time.Second),
		anchorTarget: t,
		anchorPTime:  int64(genesis.Time) - spacing,
	}
}

// load adopts a stored chain after validating it. The chain keeps the block
// time and half-life it was created with.
func (c *Chain) load(ctx context.Context, blocks []ledger.Block) error {
	spacing := int64(c.cfg.BlockTime / time.Second)
	halfLife := int64(c.cfg.HalfLife / time.Second)
	if v, ok, err := c.st.Meta(ctx, metaBlockTime); err != nil {
		return fmt.Errorf("simchain: %w", err)
	} else if ok {
		stored, err := strconv.ParseInt(v, 10, 64)
		if err != nil || stored < 1 {
			return fmt.Errorf("simchain: stored block time %q is not a positive number of seconds", v)
		}
		if stored != spacing {
			c.log.Warn("embedded chain keeps its stored block time", "stored", time.Duration(stored)*time.Second, "configured", c.cfg.BlockTime)
		}
		spacing = stored
	}
	if v, ok, err := c.st.Meta(ctx, metaHalfLife); err != nil {
		return fmt.Errorf("simchain: %w", err)
	} else if ok {
		stored, err := strconv.ParseInt(v, 10, 64)
		if err != nil || stored < 1 {
			return fmt.Errorf("simchain: stored ASERT half-life %q is not a positive number of seconds", v)
		}
		if stored != halfLife {
			c.log.Warn("embedded chain keeps its stored half-life", "stored", time.Duration(stored)*time.Second, "configured", c.cfg.HalfLife)
		}
		halfLife = stored
	}
	cfg := c.cfg
	cfg.BlockTime = time.Duration(spacing) * time.Second
	cfg.HalfLife = time.Duration(halfLife) * time.Second
	headers, err := validateChain(blocks, cfg)
	if err != nil {
		return err
	}
	c.params = newParams(headers[0], spacing, halfLife)
	c.headers = headers
	c.hashes = make([]chainmath.Hash, len(blocks))
	for i := range blocks {
		c.hashes[i] = blocks[i].Hash
		c.byHash[blocks[i].Hash] = int64(i)
	}
	if bits, _ := startBits(c.cfg.StartDifficulty); bits != headers[0].Bits {
		d, _ := chainmath.CompactToDifficulty(headers[0].Bits)
		c.log.Info("embedded chain keeps its stored genesis difficulty", "stored", d, "configured", c.cfg.StartDifficulty)
	}
	return nil
}

// GenesisBlock returns the genesis block of a chain started at time t with
// target bits: a coinbase at height 0 paying the subsidy to the "genesis"
// OP_RETURN script, nonce 0 (genesis need not meet its own target).
func GenesisBlock(t uint32, bits uint32) (*wire.MsgBlock, error) {
	script, err := PayoutScript("genesis")
	if err != nil {
		return nil, err
	}
	c1, c2, err := chainmath.BuildCoinbase(chainmath.CoinbaseParams{
		Height:         0,
		ExtranonceSize: 8,
		Tag:            []byte("/powcoord embedded chain/"),
		Outputs:        []*wire.TxOut{wire.NewTxOut(Subsidy(0), script)},
	})
	if err != nil {
		return nil, fmt.Errorf("simchain: genesis coinbase: %w", err)
	}
	raw := slices.Concat(c1, make([]byte, 8), c2)
	var cb wire.MsgTx
	if err := cb.DeserializeNoWitness(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("simchain: genesis coinbase: %w", err)
	}
	h := chainmath.Header{Version: BlockVersion, MerkleRoot: chainmath.DoubleSHA256(raw), Time: t, Bits: bits}
	blk := &wire.MsgBlock{Transactions: []*wire.MsgTx{&cb}}
	hb := h.Bytes()
	if err := blk.Header.Deserialize(bytes.NewReader(hb[:])); err != nil {
		return nil, fmt.Errorf("simchain: genesis header: %w", err)
	}
	return blk, nil
}

func serialize(blk *wire.MsgBlock) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(blk.SerializeSize())
	if err := blk.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("simchain: serialize block: %w", err)
	}
	return buf.Bytes(), nil
}

func headerOf(h *wire.BlockHeader) chainmath.Header {
	return chainmath.Header{
		Version:    uint32(h.Version),
		PrevBlock:  chainmath.Hash(h.PrevBlock),
		MerkleRoot: chainmath.Hash(h.MerkleRoot),
		Time:       uint32(h.Timestamp.Unix()),
		Bits:       h.Bits,
		Nonce:      h.Nonce,
	}
}

func (c *Chain) tipHeight() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return int64(len(c.headers) - 1)
}

// medianTimePast returns the median time of the last 11 headers of hs (all
// of them when there are fewer).
func medianTimePast(hs []chainmath.Header) uint32 {
	n := min(len(hs), medianTimeBlocks)
	times := make([]uint32, n)
	for i := range n {
		times[i] = hs[len(hs)-1-i].Time
	}
	slices.Sort(times)
	return times[n/2]
}

// buildTemplateLocked makes the template for tip+1; c.mu must be held.
//
// The template also carries the chain's upper time limit, and Submit reads
// the limit back from it (Template.MaxTimeAt), so the coordinator's check
// and the chain's agree to the second by construction. MaxTime is CurTime
// + MaxFuture and Created is the clock truncated to its second, so while
// the clock is past the median time, MaxTimeAt(now) is exactly now's
// second + MaxFuture. (When the clock is behind MTP+1, CurTime is MTP+1
// and the limit MTP+1 + MaxFuture, moving on with the clock: the window of
// valid times is never empty.)
func (c *Chain) buildTemplateLocked() *work.Template {
	tipH := int64(len(c.headers) - 1)
	tip := &c.headers[tipH]
	mtp := medianTimePast(c.headers)
	now := c.now().Truncate(time.Second)
	cur := uint32(max(now.Unix(), int64(mtp)+1))
	return &work.Template{
		Height:        tipH + 1,
		PrevHash:      c.hashes[tipH],
		Version:       BlockVersion,
		Bits:          c.params.nextBits(tipH, tip.Time),
		CurTime:       cur,
		MinTime:       mtp + 1,
		MaxTime:       uint32(min(int64(cur)+c.params.maxFuture, int64(^uint32(0)))),
		CoinbaseValue: Subsidy(tipH + 1),
		Created:       now,
	}
}

// Current returns the template for the block after the tip. It changes
// only when the tip does.
func (c *Chain) Current() *work.Template {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.tmpl
}

// Updates delivers a value whenever Current has changed (coalesced).
func (c *Chain) Updates() <-chan struct{} { return c.updates }

// Status reports the tip and the next block's difficulty.
func (c *Chain) Status() work.Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	tipH := int64(len(c.headers) - 1)
	st := work.Status{Kind: "embedded", Healthy: true, TipHeight: tipH, TipHash: c.hashes[tipH].String()}
	if c.tmpl != nil {
		st.LastUpdate = c.tmpl.Created
		if t, err := chainmath.CompactToBig(c.tmpl.Bits); err == nil {
			st.Difficulty = chainmath.TargetToDifficulty(t)
			st.BlockTarget = fmt.Sprintf("%064x", t)
		}
	}
	return st
}

// Headers returns a copy of the chain's headers, genesis first.
func (c *Chain) Headers() []chainmath.Header {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.headers)
}

// BlockTime returns the chain's target block interval (the stored one for
// a chain loaded from disk).
func (c *Chain) BlockTime() time.Duration { return time.Duration(c.params.spacing) * time.Second }

// HalfLife returns the chain's ASERT half-life.
func (c *Chain) HalfLife() time.Duration { return time.Duration(c.params.halfLife) * time.Second }

// MaxFuture returns how far ahead of the clock a block's time may be:
// MaxFutureBlockTime of the chain's half-life.
func (c *Chain) MaxFuture() time.Duration { return time.Duration(c.params.maxFuture) * time.Second }

// Submit validates blk in full and, when it extends the tip, stores it
// durably and then makes it the new tip, signalling Updates. A block that
// breaks a rule is refused with a *work.RejectedError whose Reason names
// the rule (one of the Reason constants); a store failure is returned as a
// plain error. The block's time must lie in [MinTime, MaxTimeAt(now)] of
// the current template (see MaxFutureBlockTime).
func (c *Chain) Submit(ctx context.Context, blk *wire.MsgBlock, finder string) error {
	if blk == nil {
		return &work.RejectedError{Reason: ReasonBlockMissing}
	}
	c.submitMu.Lock()
	defer c.submitMu.Unlock()

	c.mu.RLock()
	hs := c.headers
	byHash := c.byHash
	p := c.params
	tmpl := c.tmpl // the template for the block after hs's tip
	c.mu.RUnlock()

	h := headerOf(&blk.Header)
	hash := h.Hash()
	maxTime := tmpl.MaxTimeAt(c.now())
	reject := func(reason string) error {
		c.log.Info("embedded chain rejected block", "hash", hash.String(), "finder", finder, "reason", reason,
			"block_time", h.Time, "min_time", tmpl.MinTime, "max_time", maxTime)
		return &work.RejectedError{Hash: hash, Reason: reason}
	}
	c.mu.RLock()
	_, dup := byHash[hash]
	prevHeight, prevKnown := byHash[h.PrevBlock]
	c.mu.RUnlock()
	tipH := int64(len(hs) - 1)
	switch {
	case dup:
		return reject(ReasonDuplicate)
	case !prevKnown:
		return reject(ReasonBadPrevBlock)
	case prevHeight != tipH:
		return reject(ReasonStale)
	}
	if reason := checkBlock(blk, h, hash, hs, &p, maxTime, true); reason != "" {
		return reject(reason)
	}
	raw, err := serialize(blk)
	if err != nil {
		return err
	}
	now := c.now()
	sb := ledger.Block{Height: tipH + 1, Hash: hash, Header: h.Bytes(), Raw: raw, Finder: finder, Time: h.Time, FoundAt: now}
	if err := c.st.AddBlock(ctx, sb); err != nil {
		return fmt.Errorf("simchain: store block %s at height %d: %w", hash, tipH+1, err)
	}
	c.mu.Lock()
	c.headers = append(c.headers, h)
	c.hashes = append(c.hashes, hash)
	c.byHash[hash] = tipH + 1
	c.tmpl = c.buildTemplateLocked()
	next := c.tmpl.Bits
	c.mu.Unlock()
	select {
	case c.updates <- struct{}{}:
	default:
	}
	c.log.Debug("embedded chain accepted block", "height", tipH+1, "hash", hash.String(), "finder", finder,
		"next_bits", fmt.Sprintf("%08x", next))
	return nil
}

// CheckBlock judges blk as Submit would but for its proof of work, and
// stores nothing (work.BlockChecker): nil, or a *work.RejectedError
// naming the rule it breaks (one of the Reason constants).
func (c *Chain) CheckBlock(ctx context.Context, blk *wire.MsgBlock) error {
	if blk == nil {
		return &work.RejectedError{Reason: ReasonBlockMissing}
	}
	c.mu.RLock()
	hs := c.headers
	tip := c.hashes[len(c.hashes)-1]
	p := c.params
	tmpl := c.tmpl
	c.mu.RUnlock()
	h := headerOf(&blk.Header)
	hash := h.Hash()
	if h.PrevBlock != tip {
		return &work.RejectedError{Hash: hash, Reason: ReasonStale}
	}
	if reason := checkBlock(blk, h, hash, hs, &p, tmpl.MaxTimeAt(c.now()), false); reason != "" {
		return &work.RejectedError{Hash: hash, Reason: reason}
	}
	return nil
}

// InBestChain reports whether hash is the block at height on the chain
// (work.ChainLookup). A height above the tip is not in the chain (yet).
func (c *Chain) InBestChain(ctx context.Context, hash chainmath.Hash, height int64) (bool, error) {
	if height < 0 {
		return false, fmt.Errorf("simchain: block %s: height %d is negative", hash, height)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return height < int64(len(c.hashes)) && c.hashes[height] == hash, nil
}

// Close releases nothing of its own: the chain's blocks live in the store
// it was given, which its owner closes. It returns nil.
func (c *Chain) Close() error { return nil }
