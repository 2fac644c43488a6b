package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/work"
)

// gbtResult is the part of a getblocktemplate answer the coordinator uses.
// Bitcoin Core and btcd answer the same fields (BIP 22/23/141).
type gbtResult struct {
	Version                  int64   `json:"version"`
	PreviousBlockHash        string  `json:"previousblockhash"`
	Transactions             []gbtTx `json:"transactions"`
	CoinbaseValue            *int64  `json:"coinbasevalue"`
	LongPollID               string  `json:"longpollid"`
	Bits                     string  `json:"bits"`
	Height                   int64   `json:"height"`
	CurTime                  int64   `json:"curtime"`
	MinTime                  int64   `json:"mintime"`
	DefaultWitnessCommitment string  `json:"default_witness_commitment"`
}

type gbtTx struct {
	Data string `json:"data"`
	TxID string `json:"txid"`
	Hash string `json:"hash"`
}

// A block's time may be at most maxFutureBlockTime seconds past the node's
// network-adjusted time (the consensus rule of Bitcoin Core and btcd), and
// a template's curtime is that adjusted time when the node made it (or
// median time past + 1 when that is later; then the node's clock is behind
// its chain, and its real limit lower by that lag). A template's MaxTime
// is curtime + maxFutureBlockTime − maxTimeMargin: the margin covers the
// adjusted time shifting while a template lives (btcd and older Bitcoin
// Core move it with their peers' clocks) and peers judging a relayed block
// by their own clocks. The delay between the node stamping curtime and the
// coordinator stamping Created only makes MaxTimeAt stricter. Honest miners
// stay seconds from curtime, so the margin costs them nothing.
const (
	maxFutureBlockTime = 2 * 60 * 60 // seconds
	maxTimeMargin      = 60          // seconds
)

// gbtRequest is the template request: segwit rules (Bitcoin Core refuses
// anything without them) and the capabilities of a pool that builds its own
// coinbase.
func gbtRequest(longPollID string) map[string]any {
	req := map[string]any{
		"rules":        []string{"segwit"},
		"capabilities": []string{"coinbasevalue", "longpoll"},
	}
	if longPollID != "" {
		req["longpollid"] = longPollID
	}
	return req
}

// parseTemplate turns a getblocktemplate answer into a work.Template,
// checking every field it uses. It also returns the long-poll id.
func parseTemplate(raw json.RawMessage, now time.Time) (*work.Template, string, error) {
	var g gbtResult
	if err := json.Unmarshal(raw, &g); err != nil {
		return nil, "", fmt.Errorf("getblocktemplate answer %.200s: %w", raw, err)
	}
	if g.CoinbaseValue == nil {
		return nil, "", fmt.Errorf("getblocktemplate answer has no coinbasevalue")
	}
	if *g.CoinbaseValue < 0 {
		return nil, "", fmt.Errorf("getblocktemplate coinbasevalue %d: negative", *g.CoinbaseValue)
	}
	if g.Height < 1 {
		return nil, "", fmt.Errorf("getblocktemplate height %d: want at least 1", g.Height)
	}
	if g.Version < 0 || g.Version > 0xffffffff {
		return nil, "", fmt.Errorf("getblocktemplate version %d: not a uint32", g.Version)
	}
	prev, err := chainmath.HashFromDisplay(g.PreviousBlockHash)
	if err != nil {
		return nil, "", fmt.Errorf("getblocktemplate previousblockhash: %w", err)
	}
	bits, err := strconv.ParseUint(g.Bits, 16, 32)
	if err != nil || len(g.Bits) == 0 || len(g.Bits) > 8 {
		return nil, "", fmt.Errorf("getblocktemplate bits %q: want up to 8 hex digits", g.Bits)
	}
	if _, err := chainmath.CompactToBig(uint32(bits)); err != nil {
		return nil, "", fmt.Errorf("getblocktemplate bits %q: %w", g.Bits, err)
	}
	if g.CurTime <= 0 || g.CurTime > 0xffffffff {
		return nil, "", fmt.Errorf("getblocktemplate curtime %d: not a uint32 time", g.CurTime)
	}
	if g.MinTime < 0 || g.MinTime > 0xffffffff {
		return nil, "", fmt.Errorf("getblocktemplate mintime %d: not a uint32 time", g.MinTime)
	}
	t := &work.Template{
		Height:        g.Height,
		PrevHash:      prev,
		Version:       uint32(g.Version),
		Bits:          uint32(bits),
		CurTime:       uint32(g.CurTime),
		MinTime:       uint32(g.MinTime),
		MaxTime:       uint32(min(g.CurTime+maxFutureBlockTime-maxTimeMargin, 0xffffffff)),
		CoinbaseValue: *g.CoinbaseValue,
		Txs:           make([]work.Tx, 0, len(g.Transactions)),
		Created:       now,
	}
	if t.MinTime > t.CurTime {
		return nil, "", fmt.Errorf("getblocktemplate mintime %d after curtime %d", t.MinTime, t.CurTime)
	}
	hasWitness := false
	for i, gt := range g.Transactions {
		tx, witness, err := parseTx(gt)
		if err != nil {
			return nil, "", fmt.Errorf("getblocktemplate transaction %d: %w", i, err)
		}
		hasWitness = hasWitness || witness
		t.Txs = append(t.Txs, tx)
	}
	if g.DefaultWitnessCommitment != "" {
		c, err := hex.DecodeString(g.DefaultWitnessCommitment)
		if err != nil {
			return nil, "", fmt.Errorf("getblocktemplate default_witness_commitment %q: %v", g.DefaultWitnessCommitment, err)
		}
		script, err := chainmath.CommitmentScript(c)
		if err != nil {
			return nil, "", fmt.Errorf("getblocktemplate default_witness_commitment: %w", err)
		}
		// Check the node's commitment against the transactions: a
		// wrong one would make every block we find invalid.
		wtxids := make([]chainmath.Hash, len(t.Txs))
		for i := range t.Txs {
			wtxids[i] = t.Txs[i].WTxID
		}
		want := chainmath.WitnessCommitment(wtxids)
		if !bytes.Equal(script[6:], want[:]) {
			return nil, "", fmt.Errorf("getblocktemplate default_witness_commitment %s does not match the template's transactions (want %x)", g.DefaultWitnessCommitment, want[:])
		}
		t.WitnessCommitment = c
	} else if hasWitness {
		return nil, "", fmt.Errorf("getblocktemplate has witness transactions but no default_witness_commitment")
	}
	return t, g.LongPollID, nil
}

// parseTx decodes one template transaction and checks its txid and wtxid
// against the node's.
func parseTx(gt gbtTx) (work.Tx, bool, error) {
	raw, err := hex.DecodeString(gt.Data)
	if err != nil {
		return work.Tx{}, false, fmt.Errorf("data: %v", err)
	}
	var m wire.MsgTx
	if err := m.Deserialize(bytes.NewReader(raw)); err != nil {
		return work.Tx{}, false, fmt.Errorf("data %.64s…: %v", gt.Data, err)
	}
	txid := chainmath.Hash(m.TxHash())
	wtxid := chainmath.Hash(m.WitnessHash())
	if gt.TxID != "" && gt.TxID != txid.String() {
		return work.Tx{}, false, fmt.Errorf("txid %s does not match its data (%s)", gt.TxID, txid)
	}
	if gt.Hash != "" && gt.Hash != wtxid.String() {
		return work.Tx{}, false, fmt.Errorf("hash %s does not match its data (wtxid %s)", gt.Hash, wtxid)
	}
	return work.Tx{TxID: txid, WTxID: wtxid, Raw: raw}, m.HasWitness(), nil
}
