// Package work defines the boundary between a coordinator and what it mines
// on: a Source hands out block templates and takes solved blocks back. The
// embedded chain (package simchain) and a Bitcoin node (package node) are
// the two implementations.
package work

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
)

// Tx is a non-coinbase transaction of a template.
type Tx struct {
	TxID  chainmath.Hash // hash of the non-witness serialization
	WTxID chainmath.Hash // hash of the full serialization
	Raw   []byte         // full serialization (with witness when it has one)
}

// Template is everything needed to build jobs for the next block.
type Template struct {
	Height   int64
	PrevHash chainmath.Hash
	Version  uint32
	Bits     uint32
	CurTime  uint32 // the ntime jobs start with
	MinTime  uint32 // the earliest valid ntime (median time past + 1)
	// MaxTime is the latest valid ntime as of Created. The limit moves
	// with the clock: at time now a share's ntime may be at most
	// MaxTime + (now - Created) (see MaxTimeAt). Zero means the source
	// sets no limit of its own.
	MaxTime       uint32
	CoinbaseValue int64 // subsidy plus fees, in satoshis
	Txs           []Tx
	// WitnessCommitment is nil when the block needs none; otherwise the
	// 32-byte commitment or the whole output script (see
	// chainmath.CommitmentScript).
	WitnessCommitment []byte
	// Created is when the source produced the template.
	Created time.Time
	// CoinbaseOutputs, when set, are the paying outputs (in order) of
	// every coinbase built on the template, instead of the finder's
	// payout script: a cluster leader's PPLNS split, carried by the job
	// (docs/payouts.md, "In a cluster"). They sum to CoinbaseValue.
	CoinbaseOutputs []*wire.TxOut
}

// Target returns the block target of the template.
func (t *Template) Target() (chainmath.Target, error) {
	b, err := chainmath.CompactToBig(t.Bits)
	if err != nil {
		return chainmath.Target{}, err
	}
	return chainmath.TargetFromBig(b), nil
}

// MaxTimeAt returns the latest valid ntime at time now: MaxTime moved on by
// the time since the template was made, or 0 when the source sets no
// limit.
func (t *Template) MaxTimeAt(now time.Time) uint32 {
	if t.MaxTime == 0 {
		return 0
	}
	d := int64(0)
	if !t.Created.IsZero() {
		d = int64(now.Sub(t.Created) / time.Second)
	}
	v := int64(t.MaxTime) + max(d, 0)
	return uint32(min(v, int64(^uint32(0))))
}

// Status describes the health of a source for the status API.
type Status struct {
	Kind    string `json:"kind"` // "embedded" or "node"
	Healthy bool   `json:"healthy"`
	// Stale is set when the source has had no fresh work for longer than
	// it allows: mining the last template would likely be wasted, so the
	// coordinator sends miners away (to their backup pools) until it
	// clears.
	Stale       bool      `json:"stale"`
	TipHeight   int64     `json:"tip_height"`
	TipHash     string    `json:"tip_hash"`
	LastUpdate  time.Time `json:"last_template"`
	Error       string    `json:"error,omitempty"`
	Endpoint    string    `json:"endpoint,omitempty"`
	Network     string    `json:"network,omitempty"`
	Difficulty  float64   `json:"difficulty"`
	BlockTarget string    `json:"-"`
}

// Source provides templates and accepts solved blocks.
type Source interface {
	// Current returns the newest template; never nil once the source has
	// been constructed successfully.
	Current() *Template
	// Updates delivers a value (coalesced, capacity 1) whenever Current
	// has changed.
	Updates() <-chan struct{}
	// PayoutScript returns the output script that a block found by the
	// worker named user pays to, or an error naming what is wrong.
	PayoutScript(user string) ([]byte, error)
	// Submit offers a solved block found by finder. It returns nil when
	// the chain took the block, a *RejectedError with the chain's reason
	// when it refused it, or another error when the chain could not be
	// asked.
	Submit(ctx context.Context, block *wire.MsgBlock, finder string) error
	// Status reports the source's health.
	Status() Status
	// Close stops the source's background work and releases what it
	// holds. The coordinator calls it only after every listener has
	// stopped; calls after the first return nil.
	Close() error
}

// ChainLookup is implemented by a Source that can tell whether a block is
// on its chain. A caller holding a found block whose submission got no
// answer asks it once the chain has moved past the block's height: the
// chain may have moved past because of that very block.
type ChainLookup interface {
	// InBestChain reports whether hash is the block at height on the
	// best chain; an error when the chain could not be asked.
	InBestChain(ctx context.Context, hash chainmath.Hash, height int64) (bool, error)
}

// RejectedError is a block the chain refused, with its reason.
type RejectedError struct {
	Hash   chainmath.Hash
	Reason string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("block %s rejected: %s", e.Hash, e.Reason)
}

// IsRejected reports whether err is a *RejectedError.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// AssembleBlock builds the full block for a solved header: the coinbase
// (non-witness bytes as mined; given its witness reserved value when the
// template carries a witness commitment) followed by the template's
// transactions.
func AssembleBlock(t *Template, header [chainmath.HeaderSize]byte, coinbase []byte) (*wire.MsgBlock, error) {
	var blk wire.MsgBlock
	if err := blk.Header.Deserialize(bytes.NewReader(header[:])); err != nil {
		return nil, fmt.Errorf("header %x: %w", header, err)
	}
	var cb wire.MsgTx
	if err := cb.DeserializeNoWitness(bytes.NewReader(coinbase)); err != nil {
		return nil, fmt.Errorf("coinbase %x: %w", coinbase, err)
	}
	if t.WitnessCommitment != nil {
		cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	}
	blk.Transactions = make([]*wire.MsgTx, 0, len(t.Txs)+1)
	blk.Transactions = append(blk.Transactions, &cb)
	for i, tx := range t.Txs {
		var m wire.MsgTx
		if err := m.Deserialize(bytes.NewReader(tx.Raw)); err != nil {
			return nil, fmt.Errorf("template transaction %d (%s): %w", i, tx.TxID, err)
		}
		blk.Transactions = append(blk.Transactions, &m)
	}
	return &blk, nil
}

// TxIDs returns the txids of the template's transactions.
func (t *Template) TxIDs() []chainmath.Hash {
	ids := make([]chainmath.Hash, len(t.Txs))
	for i := range t.Txs {
		ids[i] = t.Txs[i].TxID
	}
	return ids
}

// BlockChecker is implemented by a Source that can judge a block built on
// its tip by every rule but proof of work: a node in BIP 23 proposal mode,
// the embedded chain with its own rules. A job declarator asks it about a
// miner's declared template.
type BlockChecker interface {
	// CheckBlock returns nil when block would be valid with a good proof
	// of work, a *RejectedError with the chain's reason when it would
	// not, or another error when the chain could not be asked.
	CheckBlock(ctx context.Context, block *wire.MsgBlock) error
}
