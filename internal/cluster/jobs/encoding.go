// Package jobs carries the work of a powcoord cluster between the active
// coordinator and the Stratum front-ends over NATS JetStream.
//
// The active coordinator runs a Publisher: it publishes every template of
// its work.Source (the embedded chain or a Bitcoin node) to the JOBS
// stream, and submits to that source every block the front-ends found,
// read from the BLOCKS stream with a durable consumer. A front-end's
// coordinator mines on a Source: a work.Source that follows the JOBS
// stream and hands found blocks to the BLOCKS stream.
//
// # Job encoding (version 1)
//
// A job message on JOBS (subject powcoord.jobs.current by default) is one
// JSON object:
//
//	{
//	  "v": 1,                      // encoding version; other versions are refused
//	  "leader": "host-1a2b",       // id of the publishing leader
//	  "term": 42,                  // its term (bus.Leader.Term); a Source ignores jobs of an older term
//	  "published": 1700000000123456789, // unix nanoseconds when it was published
//	  "template": {
//	    "height": 812345, "prev_hash": "<64 hex>", "version": 536870912,
//	    "bits": 386089497, "cur_time": 1700000000, "min_time": 1699990000,
//	    "max_time": 1700007200,    // 0: no limit of the source's own
//	    "coinbase_value": 625000000,
//	    "txs": [{"txid": "<64 hex>", "wtxid": "<64 hex>", "raw": "<base64>"}],
//	    "witness_commitment": "<base64>", // absent: the block needs none
//	    "created": 1700000000000000000   // unix nanoseconds
//	  },
//	  "payout": {"kind": "embedded"}
//	         or {"kind": "node", "network": "regtest", "fallback": "<base64 script>"},
//	  "coinbase_outputs": [{"value": 312500000, "script": "<base64>"}], // optional
//	  "pplns": {"cutoff": 1234, "window": "<decimal work units>"}      // optional
//	}
//
// coinbase_outputs, when present, are the paying outputs of every
// coinbase built on the job, in order (work.Template.CoinbaseOutputs):
// the leader's PPLNS split of coinbase_value, fixed from the shared
// ledger when it published the job (docs/payouts.md, "In a cluster").
// Every value is positive, every script non-empty, and the values sum to
// coinbase_value; a front-end then pays no per-worker script. pplns says
// where that split came from: the ledger cutoff (the id of the newest
// share in the window) and the window size. Both are absent under solo
// payouts and while the PPLNS window holds no work.
//
// Hashes are hex of the internal byte order (chainmath.Hash as stored, not
// the reversed display order); byte strings are standard base64. A job
// message larger than the servers' max_payload (1 MiB by default; a
// Bitcoin template with its transactions is up to about 5.5 MB here) is
// stored in the object store powcoord-templates under its SHA-256, and
// the message on JOBS has an empty body and the header Powcoord-Object
// naming it (see bus.Externalize); a front-end fetches it before it
// decodes the job.
//
// # Found blocks
//
// A found block is published on powcoord.blocks.found as its full
// serialization (with witness), with Nats-Msg-Id set to the block hash
// (display hex) so that the stream stores a block once however many times
// it was sent, and the header Powcoord-Finder naming the worker. A block
// larger than max_payload travels through the object store powcoord-found
// the same way as a large job.
package jobs

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/work"
)

// Subjects and names used by default.
const (
	// JobSubject is the subject of the current job on JOBS.
	JobSubject = bus.SubjectJobs + ".current"
	// BlockSubject is the subject of found blocks on BLOCKS.
	BlockSubject = bus.SubjectBlocks + ".found"
	// BlockConsumer is the durable consumer of BLOCKS that the active
	// coordinator reads through; a new leader continues where the old
	// one stopped.
	BlockConsumer = "powcoord-coordinator"
	// HeaderFinder names the worker who found a block.
	HeaderFinder = "Powcoord-Finder"
)

// Version is the job encoding this package writes and reads.
const Version = 1

// Payout kinds.
const (
	PayoutEmbedded = "embedded" // simchain.PayoutScript
	PayoutNode     = "node"     // an address of Network, else Fallback
)

// Payout is the rule that turns a worker name into the coinbase output
// script: front-ends must pay exactly what the leader's source would.
type Payout struct {
	// Kind is PayoutEmbedded or PayoutNode.
	Kind string `json:"kind"`
	// Network is the node's network name (see node.NetworkParams); only
	// for PayoutNode.
	Network string `json:"network,omitempty"`
	// Fallback is the output script paid when the worker name is not an
	// address of Network (the node's --payout-address); nil: such a
	// worker is refused. Only for PayoutNode.
	Fallback []byte `json:"fallback,omitempty"`
}

// EmbeddedPayout is the payout rule of the embedded chain.
func EmbeddedPayout() Payout { return Payout{Kind: PayoutEmbedded} }

// NodePayout is the payout rule of a node source on network with the
// given payout address ("" for none), as node.Source applies it.
func NodePayout(network, payoutAddress string) (Payout, error) {
	if _, err := node.NetworkParams(network); err != nil {
		return Payout{}, fmt.Errorf("jobs: node payout: %w", err)
	}
	p := Payout{Kind: PayoutNode, Network: network}
	if payoutAddress != "" {
		s, err := node.AddressScript(payoutAddress, network)
		if err != nil {
			return Payout{}, fmt.Errorf("jobs: node payout: %w", err)
		}
		p.Fallback = s
	}
	return p, nil
}

// Check reports what is wrong with the rule.
func (p Payout) Check() error {
	switch p.Kind {
	case PayoutEmbedded:
		return nil
	case PayoutNode:
		if _, err := node.NetworkParams(p.Network); err != nil {
			return fmt.Errorf("jobs: payout rule: %w", err)
		}
		return nil
	}
	return fmt.Errorf("jobs: payout rule kind %q: want %q or %q", p.Kind, PayoutEmbedded, PayoutNode)
}

// Script returns the output script a block found by user pays under the
// rule.
func (p Payout) Script(user string) ([]byte, error) {
	switch p.Kind {
	case PayoutEmbedded:
		return simchain.PayoutScript(user)
	case PayoutNode:
		name := ledger.AccountOf(user)
		s, err := node.AddressScript(name, p.Network)
		if err == nil {
			return s, nil
		}
		if p.Fallback != nil {
			return append([]byte(nil), p.Fallback...), nil
		}
		return nil, fmt.Errorf("worker %q: %v, and no payout address is configured", user, err)
	}
	return nil, fmt.Errorf("jobs: payout rule kind %q: want %q or %q", p.Kind, PayoutEmbedded, PayoutNode)
}

// Job is one decoded job message. Template.CoinbaseOutputs carries the
// message's coinbase_outputs.
type Job struct {
	Leader    string
	Term      uint64
	Published time.Time
	Template  *work.Template
	Payout    Payout
	PPLNS     *JobPPLNS // nil unless the job carries a PPLNS split
}

// JobPPLNS says which ledger window a job's coinbase outputs split.
type JobPPLNS struct {
	Cutoff int64  `json:"cutoff"` // id of the newest ledger share in the window
	Window string `json:"window"` // window size, work units (decimal)
}

// MaxCoinbaseOutputs bounds a job's coinbase_outputs (the coordinator's
// --payout-max-outputs limit).
const MaxCoinbaseOutputs = 20000

type wireOutput struct {
	Value  int64  `json:"value"`
	Script []byte `json:"script"`
}

type hexHash chainmath.Hash

func (h hexHash) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h[:])), nil
}

func (h *hexHash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("hash %q: want 64 hex digits", b)
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return fmt.Errorf("hash %q: %v", b, err)
	}
	return nil
}

type wireTx struct {
	TxID  hexHash `json:"txid"`
	WTxID hexHash `json:"wtxid"`
	Raw   []byte  `json:"raw"`
}

type wireTemplate struct {
	Height            int64    `json:"height"`
	PrevHash          hexHash  `json:"prev_hash"`
	Version           uint32   `json:"version"`
	Bits              uint32   `json:"bits"`
	CurTime           uint32   `json:"cur_time"`
	MinTime           uint32   `json:"min_time"`
	MaxTime           uint32   `json:"max_time"`
	CoinbaseValue     int64    `json:"coinbase_value"`
	Txs               []wireTx `json:"txs"`
	WitnessCommitment *[]byte  `json:"witness_commitment,omitempty"`
	Created           int64    `json:"created"`
}

type wireJob struct {
	V         int          `json:"v"`
	Leader    string       `json:"leader"`
	Term      uint64       `json:"term"`
	Published int64        `json:"published"`
	Template  wireTemplate `json:"template"`
	Payout    Payout       `json:"payout"`
	Outputs   []wireOutput `json:"coinbase_outputs,omitempty"`
	PPLNS     *JobPPLNS    `json:"pplns,omitempty"`
}

// checkOutputs reports what is wrong with fixed coinbase outputs of a
// template paying value.
func checkOutputs(outs []wireOutput, value int64) error {
	if len(outs) > MaxCoinbaseOutputs {
		return fmt.Errorf("%d coinbase outputs: at most %d", len(outs), MaxCoinbaseOutputs)
	}
	var sum int64
	for i, o := range outs {
		if o.Value <= 0 || o.Value > value {
			return fmt.Errorf("coinbase output %d: value %d out of 1..%d", i, o.Value, value)
		}
		if len(o.Script) == 0 || len(o.Script) > 10000 {
			return fmt.Errorf("coinbase output %d: script of %d bytes, want 1..10000", i, len(o.Script))
		}
		sum += o.Value
		if sum > value {
			break
		}
	}
	if sum != value {
		return fmt.Errorf("coinbase outputs sum to %d, the coinbase value is %d", sum, value)
	}
	return nil
}

// EncodeJob returns the job message of j (see the package documentation).
func EncodeJob(j *Job) ([]byte, error) {
	if j.Template == nil {
		return nil, errors.New("jobs: encode: nil template")
	}
	if err := j.Payout.Check(); err != nil {
		return nil, err
	}
	t := j.Template
	w := wireJob{
		V: Version, Leader: j.Leader, Term: j.Term, Published: unixNano(j.Published), Payout: j.Payout,
		Template: wireTemplate{
			Height: t.Height, PrevHash: hexHash(t.PrevHash), Version: t.Version, Bits: t.Bits,
			CurTime: t.CurTime, MinTime: t.MinTime, MaxTime: t.MaxTime, CoinbaseValue: t.CoinbaseValue,
			Txs: make([]wireTx, len(t.Txs)), Created: unixNano(t.Created),
		},
	}
	for i, tx := range t.Txs {
		w.Template.Txs[i] = wireTx{TxID: hexHash(tx.TxID), WTxID: hexHash(tx.WTxID), Raw: tx.Raw}
	}
	for _, o := range t.CoinbaseOutputs {
		w.Outputs = append(w.Outputs, wireOutput{Value: o.Value, Script: o.PkScript})
	}
	if len(w.Outputs) > 0 {
		if err := checkOutputs(w.Outputs, t.CoinbaseValue); err != nil {
			return nil, fmt.Errorf("jobs: encode: template at height %d: %w", t.Height, err)
		}
		w.PPLNS = j.PPLNS
	}
	if t.WitnessCommitment != nil {
		wc := t.WitnessCommitment
		w.Template.WitnessCommitment = &wc
	}
	return json.Marshal(&w)
}

// DecodeJob parses a job message.
func DecodeJob(data []byte) (*Job, error) {
	var w wireJob
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("jobs: decode job (%d bytes): %w", len(data), err)
	}
	if w.V != Version {
		return nil, fmt.Errorf("jobs: decode job: encoding version %d, this build reads %d", w.V, Version)
	}
	if err := w.Payout.Check(); err != nil {
		return nil, err
	}
	wt := w.Template
	t := &work.Template{
		Height: wt.Height, PrevHash: chainmath.Hash(wt.PrevHash), Version: wt.Version, Bits: wt.Bits,
		CurTime: wt.CurTime, MinTime: wt.MinTime, MaxTime: wt.MaxTime, CoinbaseValue: wt.CoinbaseValue,
		Created: fromUnixNano(wt.Created),
	}
	if len(wt.Txs) > 0 {
		t.Txs = make([]work.Tx, len(wt.Txs))
		for i, tx := range wt.Txs {
			t.Txs[i] = work.Tx{TxID: chainmath.Hash(tx.TxID), WTxID: chainmath.Hash(tx.WTxID), Raw: tx.Raw}
		}
	}
	if wt.WitnessCommitment != nil {
		t.WitnessCommitment = *wt.WitnessCommitment
		if t.WitnessCommitment == nil {
			t.WitnessCommitment = []byte{}
		}
	}
	if _, err := t.Target(); err != nil {
		return nil, fmt.Errorf("jobs: decode job: template at height %d: bits %08x: %w", t.Height, t.Bits, err)
	}
	if w.Outputs != nil {
		if err := checkOutputs(w.Outputs, t.CoinbaseValue); err != nil {
			return nil, fmt.Errorf("jobs: decode job: template at height %d: %w", t.Height, err)
		}
		t.CoinbaseOutputs = make([]*wire.TxOut, len(w.Outputs))
		for i, o := range w.Outputs {
			t.CoinbaseOutputs[i] = wire.NewTxOut(o.Value, o.Script)
		}
	} else {
		w.PPLNS = nil
	}
	return &Job{Leader: w.Leader, Term: w.Term, Published: fromUnixNano(w.Published), Template: t, Payout: w.Payout, PPLNS: w.PPLNS}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
