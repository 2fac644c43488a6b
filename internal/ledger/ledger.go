// Package ledger is the vocabulary of what a pool keeps: accepted shares,
// found blocks and what each block pays, and the account a worker name
// belongs to. The ledgers are drivers of it: internal/store (SQLite, one
// process), internal/ledger/pgledger (PostgreSQL, a cluster's ledger
// writers) and internal/cluster/sharelog (a front-end's JetStream share
// log) all take and give these types, so nothing converts between them.
// docs/ledger.md describes each driver.
package ledger

import (
	"context"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Share is one accepted share.
type Share struct {
	Time        time.Time
	Worker      string
	Extranonce1 string
	JobID       string
	Extranonce2 string
	NTime       uint32
	Nonce       uint32
	Version     uint32
	Difficulty  float64 // the difficulty of the share target the worker had
	Achieved    float64 // T1/hash, what the share actually reached
	Hash        chainmath.Hash
	Block       bool
}

// Block is a block of a chain (the pool's own, or one it found), as
// stored.
type Block struct {
	Height  int64
	Hash    chainmath.Hash
	Header  [chainmath.HeaderSize]byte
	Raw     []byte // full block, wire serialization with witness
	Finder  string
	Time    uint32 // header time
	FoundAt time.Time
}

// PayoutRecord is what a found block pays.
type PayoutRecord struct {
	Hash   chainmath.Hash
	Height int64
	Mode   string // "solo" or "pplns"
	// Cutoff is the ledger position of the newest share in the block's
	// PPLNS window: the window is the newest work among the shares up
	// to Cutoff. 0 for a solo block.
	Cutoff int64
	// Window is the window size in work units (decimal), "" for solo.
	Window  string
	Value   int64 // the coinbase value paid out
	Outputs []PayoutOutput
	// Rules are the PPLNS rules the block was paid under, as package
	// payout encodes them (payout.BlockRules), so that its window can be
	// audited later; "" for solo.
	Rules string
}

// PayoutOutput is one paying output of a found block's coinbase.
type PayoutOutput struct {
	Script []byte
	Amount int64
	Work   string // the window work it pays for, in units (decimal); "" for the fee or solo
	Fee    bool
	// Label is the payout label (AccountOf the worker name) of a miner
	// it pays: on the embedded chain a solo block pays the whole worker
	// name's script, so accounts are found by label as well.
	Label string
}

// FoundAccepted is the state of a found block the chain took and holds
// on its best chain: the only state whose payouts were paid.
const FoundAccepted = "accepted"

// ScriptPayout is one found block's payment to one output script.
type ScriptPayout struct {
	Height int64
	Hash   chainmath.Hash
	Amount int64
	State  string // the found block's state (FoundAccepted, ...); "" when the ledger keeps none
}

// WorkerStat is one worker's accepted shares in a span of a ledger
// (the drivers' WorkerStats; GET /api/workers).
type WorkerStat struct {
	Worker string
	Shares int64     // accepted shares stored
	Work   float64   // the sum of their difficulties (difficulty-1 shares)
	Last   time.Time // the newest share's time
}

// BestShare is a worker's share of the highest achieved difficulty in a
// span of a ledger (GET /api/best of a cluster).
type BestShare struct {
	Worker     string
	Difficulty float64 // the share's achieved difficulty (T1/hash)
	Hash       chainmath.Hash
	Time       time.Time
}

// AccountOf is the account a worker name belongs to: its part before the
// first '.' ("addr.rig1" belongs to "addr"). It is the payout address of
// a worker in solo and PPLNS alike, the name best shares and the miners
// API group by, and what an allowlist names. The only definition.
func AccountOf(worker string) string {
	a, _, _ := strings.Cut(worker, ".")
	return a
}

// ShareRecorder makes accepted shares durable.
type ShareRecorder interface {
	// RecordShare returns nil once sh is durable.
	RecordShare(ctx context.Context, sh Share) error
}

// PayoutRecorder keeps what found blocks pay.
type PayoutRecorder interface {
	// RecordPayouts stores what a found block pays, idempotently (keyed
	// by the block's hash).
	RecordPayouts(ctx context.Context, rec PayoutRecord) error
}
