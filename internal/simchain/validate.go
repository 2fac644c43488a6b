package simchain

import (
	"bytes"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/store"
)

// checkBlock applies every rule except the link to the tip (the caller
// checks that blk builds on hs[len(hs)-1]). It returns "" for a valid
// block and otherwise the rejection reason. now bounds the block time from
// above; the zero time skips that check (re-validating a stored chain).
func checkBlock(blk *wire.MsgBlock, h chainmath.Header, hash chainmath.Hash, hs []chainmath.Header, p *params, now time.Time) string {
	height := int64(len(hs))
	parent := &hs[height-1]

	// Proof of work against the header's own bits, then the bits the
	// schedule demands.
	target, err := chainmath.CompactToBig(h.Bits)
	if err != nil || target.Sign() <= 0 || target.Cmp(powLimit) > 0 {
		return "bad-diffbits"
	}
	if chainmath.HashToBig(hash).Cmp(target) > 0 {
		return "high-hash"
	}
	if h.Bits != p.nextBits(height-1, parent.Time) {
		return "bad-diffbits"
	}

	if h.Time <= medianTimePast(hs) {
		return "time-too-old"
	}
	if !now.IsZero() && int64(h.Time) > now.Add(MaxFutureBlockTime).Unix() {
		return "time-too-new"
	}

	// Transactions: exactly one, the coinbase.
	if len(blk.Transactions) == 0 {
		return "bad-cb-missing"
	}
	cb := blk.Transactions[0]
	if !isCoinbase(cb) {
		return "bad-cb-missing"
	}
	if len(blk.Transactions) > 1 {
		for _, tx := range blk.Transactions[1:] {
			if isCoinbase(tx) {
				return "bad-cb-multiple"
			}
		}
		return "bad-txns-unexpected" // the embedded chain carries coinbases only
	}
	for _, tx := range blk.Transactions {
		if tx.HasWitness() {
			return "unexpected-witness"
		}
	}
	sig := cb.TxIn[0].SignatureScript
	if len(sig) < 2 || len(sig) > 100 {
		return "bad-cb-length"
	}
	want, err := txscript.NewScriptBuilder().AddInt64(height).Script()
	if err != nil || !bytes.HasPrefix(sig, want) {
		return "bad-cb-height"
	}

	txids := make([]chainmath.Hash, len(blk.Transactions))
	for i, tx := range blk.Transactions {
		txids[i] = chainmath.Hash(tx.TxHash())
	}
	if chainmath.MerkleRoot(txids) != h.MerkleRoot {
		return "bad-txnmrklroot"
	}

	var total int64
	for _, out := range cb.TxOut {
		if out.Value < 0 || out.Value > InitialSubsidy {
			return "bad-cb-amount"
		}
		total += out.Value
	}
	if total > Subsidy(height) {
		return "bad-cb-amount"
	}
	return ""
}

func isCoinbase(tx *wire.MsgTx) bool {
	if len(tx.TxIn) != 1 {
		return false
	}
	prev := tx.TxIn[0].PreviousOutPoint
	return prev.Index == wire.MaxPrevOutIndex && prev.Hash == [32]byte{}
}

// ValidateChain re-validates a stored chain from its raw bytes: heights
// count up from 0, every stored hash and header match the raw block, the
// genesis block is well formed, and every later block links to its parent
// and passes every rule Submit applies (except the time-too-new bound,
// which depends on when the block was found). cfg supplies BlockTime and
// HalfLife (defaults as in Open); the ASERT anchor is the stored genesis.
func ValidateChain(blocks []store.Block, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	_, err = validateChain(blocks, cfg)
	return err
}

func validateChain(blocks []store.Block, cfg Config) ([]chainmath.Header, error) {
	if len(blocks) == 0 {
		return nil, fmt.Errorf("simchain: chain is empty: no genesis block")
	}
	spacing := int64(cfg.BlockTime / time.Second)
	halfLife := int64(cfg.HalfLife / time.Second)
	headers := make([]chainmath.Header, 0, len(blocks))
	var p params
	for i := range blocks {
		b := &blocks[i]
		if b.Height != int64(i) {
			return nil, fmt.Errorf("simchain: stored block %d (%s) has height %d", i, b.Hash, b.Height)
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
			return nil, fmt.Errorf("simchain: block %d (%s): raw block does not parse: %w", i, b.Hash, err)
		}
		h := headerOf(&blk.Header)
		if h.Bytes() != b.Header {
			return nil, fmt.Errorf("simchain: block %d (%s): stored header differs from the raw block's", i, b.Hash)
		}
		hash := h.Hash()
		if hash != b.Hash {
			return nil, fmt.Errorf("simchain: block %d: stored hash %s, header hashes to %s", i, b.Hash, hash)
		}
		if h.Time != b.Time {
			return nil, fmt.Errorf("simchain: block %d (%s): stored time %d, header time %d", i, b.Hash, b.Time, h.Time)
		}
		if i == 0 {
			if err := checkGenesis(&blk, h); err != nil {
				return nil, err
			}
			p = newParams(h, spacing, halfLife)
			headers = append(headers, h)
			continue
		}
		if h.PrevBlock != blocks[i-1].Hash {
			return nil, fmt.Errorf("simchain: block %d (%s): previous block %s, want %s: bad-prevblk", i, hash, h.PrevBlock, blocks[i-1].Hash)
		}
		if reason := checkBlock(&blk, h, hash, headers, &p, time.Time{}); reason != "" {
			return nil, fmt.Errorf("simchain: block %d (%s): %s", i, hash, reason)
		}
		headers = append(headers, h)
	}
	return headers, nil
}

func checkGenesis(blk *wire.MsgBlock, h chainmath.Header) error {
	if h.PrevBlock != (chainmath.Hash{}) {
		return fmt.Errorf("simchain: genesis %s: previous block %s is not zero", h.Hash(), h.PrevBlock)
	}
	t, err := chainmath.CompactToBig(h.Bits)
	if err != nil || t.Sign() <= 0 || t.Cmp(powLimit) > 0 {
		return fmt.Errorf("simchain: genesis %s: nBits %08x is not a valid target for this chain", h.Hash(), h.Bits)
	}
	if len(blk.Transactions) != 1 || !isCoinbase(blk.Transactions[0]) {
		return fmt.Errorf("simchain: genesis %s: want exactly one coinbase, have %d transactions", h.Hash(), len(blk.Transactions))
	}
	cb := blk.Transactions[0]
	if got, err := chainmath.ParseCoinbaseHeight(cb.TxIn[0].SignatureScript); err != nil || got != 0 {
		return fmt.Errorf("simchain: genesis %s: coinbase height %d (%v), want 0", h.Hash(), got, err)
	}
	if chainmath.MerkleRoot([]chainmath.Hash{chainmath.Hash(cb.TxHash())}) != h.MerkleRoot {
		return fmt.Errorf("simchain: genesis %s: bad-txnmrklroot", h.Hash())
	}
	return nil
}
