package simchain

import (
	"bytes"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// Rejection reasons: the Reason of the *work.RejectedError that Submit
// returns, named as Bitcoin Core names the same rule.
const (
	ReasonBlockMissing     = "bad-blk-missing"     // Submit was given no block
	ReasonDuplicate        = "duplicate"           // the chain has this block already
	ReasonBadPrevBlock     = "bad-prevblk"         // the previous block is unknown
	ReasonStale            = "stale"               // builds on a block that is no longer the tip
	ReasonBadDiffBits      = "bad-diffbits"        // nBits is not the target ASERT demands
	ReasonHighHash         = "high-hash"           // the hash misses the header's own target
	ReasonTimeTooOld       = "time-too-old"        // time at or before the median of the last 11 blocks
	ReasonTimeTooNew       = "time-too-new"        // time past the template's MaxTimeAt(now)
	ReasonCoinbaseMissing  = "bad-cb-missing"      // the first transaction is not a coinbase
	ReasonCoinbaseMultiple = "bad-cb-multiple"     // a second coinbase
	ReasonUnexpectedTxs    = "bad-txns-unexpected" // transactions besides the coinbase
	ReasonWitness          = "unexpected-witness"  // witness data in a chain without witness commitments
	ReasonCoinbaseLength   = "bad-cb-length"       // coinbase script outside 2..100 bytes
	ReasonCoinbaseHeight   = "bad-cb-height"       // coinbase script does not start with the height (BIP34)
	ReasonBadMerkleRoot    = "bad-txnmrklroot"     // header's merkle root does not match the transactions
	ReasonCoinbaseAmount   = "bad-cb-amount"       // coinbase pays more than the subsidy
)

// checkBlock applies every rule except the link to the tip (the caller
// checks that blk builds on hs[len(hs)-1]). It returns "" for a valid
// block and otherwise the rejection reason. maxTime is the latest valid
// block time (the template's MaxTimeAt(now), see MaxFutureBlockTime); 0
// skips that check (re-validating a stored chain, whose blocks were
// checked against the clock when they arrived). Without pow the hash is
// not held against the target (a declared job's block, CheckBlock).
func checkBlock(blk *wire.MsgBlock, h chainmath.Header, hash chainmath.Hash, hs []chainmath.Header, p *params, maxTime uint32, pow bool) string {
	height := int64(len(hs))
	parent := &hs[height-1]

	// Proof of work against the header's own bits, then the bits the
	// schedule demands.
	target, err := chainmath.CompactToBig(h.Bits)
	if err != nil || target.Sign() <= 0 || target.Cmp(powLimit) > 0 {
		return ReasonBadDiffBits
	}
	if pow && chainmath.HashToBig(hash).Cmp(target) > 0 {
		return ReasonHighHash
	}
	if h.Bits != p.nextBits(height-1, parent.Time) {
		return ReasonBadDiffBits
	}

	if h.Time <= medianTimePast(hs) {
		return ReasonTimeTooOld
	}
	if maxTime != 0 && h.Time > maxTime {
		return ReasonTimeTooNew
	}

	// Transactions: exactly one, the coinbase.
	if len(blk.Transactions) == 0 {
		return ReasonCoinbaseMissing
	}
	cb := blk.Transactions[0]
	if !isCoinbase(cb) {
		return ReasonCoinbaseMissing
	}
	if len(blk.Transactions) > 1 {
		for _, tx := range blk.Transactions[1:] {
			if isCoinbase(tx) {
				return ReasonCoinbaseMultiple
			}
		}
		return ReasonUnexpectedTxs // the embedded chain carries coinbases only
	}
	for _, tx := range blk.Transactions {
		if tx.HasWitness() {
			return ReasonWitness
		}
	}
	sig := cb.TxIn[0].SignatureScript
	if len(sig) < 2 || len(sig) > 100 {
		return ReasonCoinbaseLength
	}
	want, err := txscript.NewScriptBuilder().AddInt64(height).Script()
	if err != nil || !bytes.HasPrefix(sig, want) {
		return ReasonCoinbaseHeight
	}

	txids := make([]chainmath.Hash, len(blk.Transactions))
	for i, tx := range blk.Transactions {
		txids[i] = chainmath.Hash(tx.TxHash())
	}
	if chainmath.MerkleRoot(txids) != h.MerkleRoot {
		return ReasonBadMerkleRoot
	}

	var total int64
	for _, out := range cb.TxOut {
		if out.Value < 0 || out.Value > InitialSubsidy {
			return ReasonCoinbaseAmount
		}
		total += out.Value
	}
	if total > Subsidy(height) {
		return ReasonCoinbaseAmount
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
func ValidateChain(blocks []ledger.Block, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	_, err = validateChain(blocks, cfg)
	return err
}

func validateChain(blocks []ledger.Block, cfg Config) ([]chainmath.Header, error) {
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
		if reason := checkBlock(&blk, h, hash, headers, &p, 0, true); reason != "" {
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
