package chainmath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// WitnessMagic starts the data of a segwit commitment output (BIP 141).
var WitnessMagic = []byte{0xaa, 0x21, 0xa9, 0xed}

// CoinbaseParams describes the coinbase a pool builds for a template.
type CoinbaseParams struct {
	// Height is the block height, pushed first in the scriptSig (BIP34).
	Height int64
	// ExtranonceSize is len(extranonce1)+len(extranonce2): the slot left
	// between coinb1 and coinb2. 1..75.
	ExtranonceSize int
	// Tag is pushed after the extranonce (e.g. "/powcoord/"); may be empty.
	Tag []byte
	// Variant, when not zero, is pushed after the tag as one byte: work
	// re-issued for the same template (a new share difficulty) gets a new
	// variant, so its coinbase, merkle root and every header differ from
	// the work sent before (docs/stratum-v1.md, "A new difficulty").
	// Budgets reserve JobTagSize bytes for it whether or not it is set.
	Variant uint8
	// Outputs are the payout outputs, in order.
	Outputs []*wire.TxOut
	// WitnessCommitment, when non-nil, is appended as a last output. It is
	// either the whole commitment script (Bitcoin Core's
	// default_witness_commitment) or the bare 32-byte commitment (btcd).
	WitnessCommitment []byte
}

// CommitmentScript turns a witness commitment in either form into the
// output script OP_RETURN 0x24 aa21a9ed‖commitment.
func CommitmentScript(c []byte) ([]byte, error) {
	switch {
	case len(c) == 32:
		s := make([]byte, 0, 38)
		s = append(s, txscript.OP_RETURN, 0x24)
		s = append(s, WitnessMagic...)
		return append(s, c...), nil
	case len(c) == 38 && c[0] == txscript.OP_RETURN && c[1] == 0x24 && bytes.Equal(c[2:6], WitnessMagic):
		return append([]byte(nil), c...), nil
	}
	return nil, fmt.Errorf("witness commitment %x: neither a 32-byte hash nor an OP_RETURN aa21a9ed script", c)
}

// WitnessCommitment computes sha256d(witnessRoot ‖ 32 zero bytes), the
// commitment for a block whose coinbase witness is one 32-byte zero item.
// wtxids lists every non-coinbase transaction's wtxid in block order.
func WitnessCommitment(wtxids []Hash) Hash {
	all := make([]Hash, 0, len(wtxids)+1)
	all = append(all, Hash{}) // the coinbase's wtxid is defined as zero
	all = append(all, wtxids...)
	root := MerkleRoot(all)
	var buf [64]byte
	copy(buf[:32], root[:])
	return DoubleSHA256(buf[:])
}

// JobTagSize is the scriptSig space a coinbase's variant push takes
// (a one-byte push of one byte); tag budgets must leave it free.
const JobTagSize = 2

// MaxScriptSig is the consensus limit on a coinbase scriptSig, in bytes.
const MaxScriptSig = 100

// maxHeightPush is the longest BIP 34 height push BuildCoinbase writes
// for a height below 2^31: a push opcode and 4 bytes.
const maxHeightPush = 5

// CoinbaseTagBudget is the longest tag, in bytes, that BuildCoinbase fits
// into the scriptSig beside an extranonce slot of extranonceSize bytes at
// any height below 2^31: MaxScriptSig less the height push (5), the slot
// and its push opcode (1 + extranonceSize), the job variant (JobTagSize,
// always reserved) and the tag's own push opcode (1, or 2 for a tag over
// 75 bytes).
func CoinbaseTagBudget(extranonceSize int) int {
	room := MaxScriptSig - maxHeightPush - 1 - extranonceSize - JobTagSize
	switch {
	case room-1 <= 75:
		return max(room-1, 0)
	default:
		return min(room-2, 255)
	}
}

// BuildCoinbase returns the coinbase transaction's non-witness serialization
// split around the extranonce slot: coinb1 ‖ extranonce1 ‖ extranonce2 ‖
// coinb2 is the whole transaction. The scriptSig is
// <height> <push ExtranonceSize> [slot] <tag> [<variant>].
func BuildCoinbase(p CoinbaseParams) (coinb1, coinb2 []byte, err error) {
	if p.Height < 0 {
		return nil, nil, fmt.Errorf("coinbase height %d: negative", p.Height)
	}
	if p.ExtranonceSize < 1 || p.ExtranonceSize > 75 {
		return nil, nil, fmt.Errorf("extranonce size %d: must be 1..75", p.ExtranonceSize)
	}
	if len(p.Outputs) == 0 {
		return nil, nil, errors.New("coinbase: no outputs")
	}
	heightPush, err := txscript.NewScriptBuilder().AddInt64(p.Height).Script()
	if err != nil {
		return nil, nil, fmt.Errorf("coinbase height %d: %w", p.Height, err)
	}
	var tagPush []byte
	if len(p.Tag) > 0 {
		tagPush, err = txscript.NewScriptBuilder().AddData(p.Tag).Script()
		if err != nil {
			return nil, nil, fmt.Errorf("coinbase tag %q: %w", p.Tag, err)
		}
	}
	sigLen := len(heightPush) + 1 + p.ExtranonceSize + len(tagPush)
	if sigLen+JobTagSize > MaxScriptSig {
		return nil, nil, fmt.Errorf("coinbase scriptSig is %d bytes with the %d-byte job variant, over the limit of %d (tag %q too long?)", sigLen+JobTagSize, JobTagSize, MaxScriptSig, p.Tag)
	}
	if p.Variant != 0 {
		tagPush = append(tagPush, 1, p.Variant)
		sigLen += JobTagSize
	}

	var b1 bytes.Buffer
	binary.Write(&b1, binary.LittleEndian, uint32(1)) // version
	b1.WriteByte(1)                                   // one input
	b1.Write(make([]byte, 32))                        // null prevout hash
	b1.Write([]byte{0xff, 0xff, 0xff, 0xff})          // prevout index
	wire.WriteVarInt(&b1, 0, uint64(sigLen))
	b1.Write(heightPush)
	b1.WriteByte(byte(p.ExtranonceSize))

	var b2 bytes.Buffer
	b2.Write(tagPush)
	b2.Write([]byte{0xff, 0xff, 0xff, 0xff}) // sequence
	outs := p.Outputs
	if p.WitnessCommitment != nil {
		script, err := CommitmentScript(p.WitnessCommitment)
		if err != nil {
			return nil, nil, err
		}
		outs = append(append([]*wire.TxOut(nil), outs...), wire.NewTxOut(0, script))
	}
	wire.WriteVarInt(&b2, 0, uint64(len(outs)))
	for _, o := range outs {
		binary.Write(&b2, binary.LittleEndian, uint64(o.Value))
		wire.WriteVarBytes(&b2, 0, o.PkScript)
	}
	b2.Write([]byte{0, 0, 0, 0}) // lock time
	return b1.Bytes(), b2.Bytes(), nil
}

// ParseCoinbaseHeight reads the BIP34 height from a coinbase scriptSig.
func ParseCoinbaseHeight(sigScript []byte) (int64, error) {
	if len(sigScript) == 0 {
		return 0, errors.New("coinbase scriptSig is empty")
	}
	op := sigScript[0]
	switch {
	case op == txscript.OP_0:
		return 0, nil
	case op >= txscript.OP_1 && op <= txscript.OP_16:
		return int64(op - txscript.OP_1 + 1), nil
	case op >= 1 && op <= 8:
		if len(sigScript) < 1+int(op) {
			return 0, fmt.Errorf("coinbase scriptSig %x: height push of %d bytes is truncated", sigScript, op)
		}
		var v int64
		for i := int(op); i >= 1; i-- {
			v = v<<8 | int64(sigScript[i])
		}
		if sigScript[op]&0x80 != 0 {
			return 0, fmt.Errorf("coinbase scriptSig %x: negative height", sigScript)
		}
		return v, nil
	}
	return 0, fmt.Errorf("coinbase scriptSig %x: does not start with a height push", sigScript)
}
