package jds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/sv2"
)

// maxOutputs bounds the outputs of a coinbase_tx_outputs field: 65,535
// bytes hold at most 65,535/9 outputs (8-byte amount, 1-byte script
// length, empty script).
const maxOutputs = sv2.MaxB064K / 9

// MarshalOutputs serializes outs as a coinbase_tx_outputs field: a
// CompactSize count, then each output as in a transaction.
func MarshalOutputs(outs []*wire.TxOut) ([]byte, error) {
	var b bytes.Buffer
	if err := wire.WriteVarInt(&b, 0, uint64(len(outs))); err != nil {
		return nil, err
	}
	for i, o := range outs {
		if err := wire.WriteTxOut(&b, 0, 0, o); err != nil {
			return nil, fmt.Errorf("jds: output %d: %w", i, err)
		}
	}
	if b.Len() > sv2.MaxB064K {
		return nil, fmt.Errorf("jds: %d outputs take %d bytes, over coinbase_tx_outputs' 65,535", len(outs), b.Len())
	}
	return b.Bytes(), nil
}

// ParseOutputs reads a coinbase_tx_outputs field: a CompactSize count and
// that many outputs, nothing after them.
func ParseOutputs(b []byte) ([]*wire.TxOut, error) {
	r := bytes.NewReader(b)
	n, err := wire.ReadVarInt(r, 0)
	if err != nil {
		return nil, fmt.Errorf("jds: coinbase outputs %x: count: %w", b, err)
	}
	if n > maxOutputs {
		return nil, fmt.Errorf("jds: coinbase outputs: count %d cannot fit in %d bytes", n, len(b))
	}
	outs := make([]*wire.TxOut, 0, n)
	for i := range n {
		var o wire.TxOut
		if err := wire.ReadTxOut(r, 0, 0, &o); err != nil {
			return nil, fmt.Errorf("jds: coinbase outputs: output %d of %d: %w", i, n, err)
		}
		outs = append(outs, &o)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("jds: coinbase outputs: %d bytes after the %d outputs", r.Len(), n)
	}
	return outs, nil
}

// Underpaid checks that outs pay every required output at least its
// amount: each required output is matched to a distinct output of outs
// with the same script (the largest left). It returns an error naming the
// first required output not paid enough, with both amounts.
func Underpaid(outs, required []*wire.TxOut) error {
	used := make([]bool, len(outs))
	for ri, r := range required {
		best := -1
		for i, o := range outs {
			if !used[i] && bytes.Equal(o.PkScript, r.PkScript) && (best < 0 || o.Value > outs[best].Value) {
				best = i
			}
		}
		if best < 0 {
			return fmt.Errorf("required output %d (script %x, %d sat) is missing", ri, r.PkScript, r.Value)
		}
		if outs[best].Value < r.Value {
			return fmt.Errorf("required output %d (script %x) is paid %d sat, %d required", ri, r.PkScript, outs[best].Value, r.Value)
		}
		used[best] = true
	}
	return nil
}

// Coinbase is a declared coinbase, parsed.
type Coinbase struct {
	Tx *wire.MsgTx // with the extranonce zeroed
	// ExtranonceSize is the number of bytes between coinbase_tx_prefix
	// and coinbase_tx_suffix: the scriptSig's length less its bytes in
	// the prefix.
	ExtranonceSize int
	// ScriptPrefix is the scriptSig before the extranonce.
	ScriptPrefix []byte
	// Coinb1 and Coinb2 are the non-witness serialization split around
	// the extranonce (what the txid, so the merkle root, is made of).
	Coinb1, Coinb2 []byte
	// Outputs is the outputs as a coinbase_tx_outputs field.
	Outputs []byte
}

// ParseCoinbase parses a DeclareMiningJob's coinbase_tx_prefix and
// coinbase_tx_suffix: a coinbase transaction, with its BIP 141 fields when
// it has a witness, cut inside the scriptSig, the suffix starting where
// the scriptSig ends.
func ParseCoinbase(prefix, suffix []byte) (*Coinbase, error) {
	r := bytes.NewReader(prefix)
	var hdr [4]byte
	if _, err := r.Read(hdr[:]); err != nil || len(prefix) < 4 {
		return nil, errors.New("coinbase prefix shorter than the version")
	}
	segwit := false
	if b, _ := r.ReadByte(); b == 0 {
		flag, _ := r.ReadByte()
		if flag != 1 {
			return nil, fmt.Errorf("coinbase prefix: segwit marker followed by flag %d, want 1", flag)
		}
		segwit = true
	} else {
		r.UnreadByte()
	}
	nIn, err := wire.ReadVarInt(r, 0)
	if err != nil || nIn != 1 {
		return nil, fmt.Errorf("coinbase prefix: %d inputs (%v), want 1", nIn, err)
	}
	var prevout [36]byte
	if n, _ := r.Read(prevout[:]); n != 36 {
		return nil, errors.New("coinbase prefix ends inside the input's outpoint")
	}
	scriptLen, err := wire.ReadVarInt(r, 0)
	if err != nil {
		return nil, fmt.Errorf("coinbase prefix: scriptSig length: %w", err)
	}
	inPrefix := r.Len()
	if uint64(inPrefix) > scriptLen {
		return nil, fmt.Errorf("coinbase prefix holds %d scriptSig bytes, more than its length %d", inPrefix, scriptLen)
	}
	// In uint64: a length of up to 2^64-1 must not wrap to a negative int.
	if rest := scriptLen - uint64(inPrefix); rest > sv2.MaxB032 {
		return nil, fmt.Errorf("coinbase scriptSig length %d leaves %d bytes between prefix and suffix: an extranonce is at most 32", scriptLen, rest)
	}
	enSize := int(scriptLen) - inPrefix
	full := make([]byte, 0, len(prefix)+enSize+len(suffix))
	full = append(full, prefix...)
	full = append(full, make([]byte, enSize)...)
	full = append(full, suffix...)
	var tx wire.MsgTx
	fr := bytes.NewReader(full)
	if err := tx.Deserialize(fr); err != nil {
		return nil, fmt.Errorf("coinbase prefix and suffix: %w", err)
	}
	if fr.Len() != 0 {
		return nil, fmt.Errorf("coinbase suffix: %d bytes after the transaction", fr.Len())
	}
	if segwit != tx.HasWitness() {
		return nil, errors.New("coinbase: segwit marker without a witness")
	}
	in := tx.TxIn[0]
	if in.PreviousOutPoint.Index != wire.MaxPrevOutIndex || in.PreviousOutPoint.Hash != [32]byte{} {
		return nil, fmt.Errorf("coinbase input spends %v: not a coinbase", in.PreviousOutPoint)
	}
	var stripped bytes.Buffer
	tx.SerializeNoWitness(&stripped)
	sb := stripped.Bytes()
	cut := len(prefix)
	if segwit {
		cut -= 2
	}
	outs, err := MarshalOutputs(tx.TxOut)
	if err != nil {
		return nil, err
	}
	return &Coinbase{
		Tx: &tx, ExtranonceSize: enSize, ScriptPrefix: append([]byte(nil), in.SignatureScript[:inPrefix]...),
		Coinb1: append([]byte(nil), sb[:cut]...), Coinb2: append([]byte(nil), sb[cut+enSize:]...), Outputs: outs,
	}, nil
}

// CustomCoinbase builds the non-witness coinbase of a SetCustomMiningJob
// split around an extranonce of enSize bytes (the channel's extranonce
// prefix and extranonce): version, the one coinbase input whose scriptSig
// is coinbase_prefix ‖ extranonce, its nSequence, the outputs, locktime.
func CustomCoinbase(m *sv2.SetCustomMiningJob, enSize int) (coinb1, coinb2 []byte, err error) {
	if _, err := ParseOutputs(m.CoinbaseTxOutputs); err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, m.CoinbaseTxVersion)
	b.WriteByte(1)
	b.Write(make([]byte, 32))
	b.Write([]byte{0xff, 0xff, 0xff, 0xff})
	wire.WriteVarInt(&b, 0, uint64(len(m.CoinbasePrefix)+enSize))
	b.Write(m.CoinbasePrefix)
	coinb1 = bytes.Clone(b.Bytes())
	b.Reset()
	binary.Write(&b, binary.LittleEndian, m.CoinbaseTxInputNSequence)
	b.Write(m.CoinbaseTxOutputs)
	binary.Write(&b, binary.LittleEndian, m.CoinbaseTxLocktime)
	return coinb1, b.Bytes(), nil
}

// witnessCommitment returns the coinbase's witness commitment script
// (the last output starting OP_RETURN 0x24 aa21a9ed), or nil.
func witnessCommitment(tx *wire.MsgTx) []byte {
	for i := len(tx.TxOut) - 1; i >= 0; i-- {
		s := tx.TxOut[i].PkScript
		if len(s) >= 38 && s[0] == 0x6a && s[1] == 0x24 && bytes.Equal(s[2:6], chainmath.WitnessMagic) {
			return s
		}
	}
	return nil
}

// Budget is the room the pool's required outputs take in a block: their
// serialized bytes and their sigop cost (legacy sigops of the output
// scripts, times the witness scale factor 4). A Job Declarator Client
// leaves this much when it builds its template (the Template
// Distribution protocol's CoinbaseOutputConstraints); the
// AllocateMiningJobToken.Success of this specification version carries
// the outputs only, so the budget is computed from them.
func Budget(required []*wire.TxOut) (size, sigops int) {
	for _, o := range required {
		size += o.SerializeSize()
		sigops += 4 * txscript.GetSigOpCount(o.PkScript)
	}
	return size, sigops
}
