package nodetest

import (
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/work"
)

// Tag is the coinbase tag the test miner writes.
var Tag = []byte("/powcoord/")

// Solve builds a block on template t the way the coordinator does (its own
// coinbase with an 8-byte extranonce slot, the tag, one output paying
// payout with the whole coinbase value, the template's witness
// commitment), scans nonces until the header meets the block target
// (instant on regtest and simnet) and assembles the full block with
// work.AssembleBlock. extranonce makes coinbases of the same template
// differ.
func Solve(t *work.Template, payout []byte, extranonce uint64) (*wire.MsgBlock, error) {
	coinb1, coinb2, err := chainmath.BuildCoinbase(chainmath.CoinbaseParams{
		Height:            t.Height,
		ExtranonceSize:    8,
		Tag:               Tag,
		Outputs:           []*wire.TxOut{wire.NewTxOut(t.CoinbaseValue, payout)},
		WitnessCommitment: t.WitnessCommitment,
	})
	if err != nil {
		return nil, err
	}
	coinbase := make([]byte, 0, len(coinb1)+8+len(coinb2))
	coinbase = append(coinbase, coinb1...)
	coinbase = binary.BigEndian.AppendUint64(coinbase, extranonce)
	coinbase = append(coinbase, coinb2...)
	root := chainmath.RootFromBranch(chainmath.DoubleSHA256(coinbase), chainmath.MerkleBranch(t.TxIDs()))
	target, err := t.Target()
	if err != nil {
		return nil, err
	}
	h := chainmath.Header{Version: t.Version, PrevBlock: t.PrevHash, MerkleRoot: root, Time: t.CurTime, Bits: t.Bits}
	for nonce := uint64(0); nonce <= 0xffffffff; nonce++ {
		h.Nonce = uint32(nonce)
		hash := h.Hash()
		if target.Meets(&hash) {
			return work.AssembleBlock(t, h.Bytes(), coinbase)
		}
	}
	return nil, fmt.Errorf("no nonce meets target %08x at height %d", t.Bits, t.Height)
}
