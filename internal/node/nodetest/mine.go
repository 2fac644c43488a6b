package nodetest

import (
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/work"
)

// Tag is the coinbase tag the test miner writes.
var Tag = []byte("/powcoord/")

// Solve builds a block on template t the way the coordinator does (its own
// coinbase with an 8-byte extranonce slot, the tag, one output paying
// payout with the whole coinbase value, the template's witness
// commitment), builds its header through stratum.Job as a miner's share
// would be, scans nonces until the header meets the block target
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
	job := &stratum.Job{ID: "nodetest", PrevHash: t.PrevHash, Coinb1: coinb1, Coinb2: coinb2,
		Branch: chainmath.MerkleBranch(t.TxIDs()), Version: t.Version, Bits: t.Bits, NTime: t.CurTime}
	coinbase := job.AppendCoinbase(nil, nil, binary.BigEndian.AppendUint64(nil, extranonce))
	target, err := job.BlockTarget()
	if err != nil {
		return nil, err
	}
	h := job.HeaderWithRoot(job.RootOf(coinbase), t.CurTime, 0, 0, 0)
	for nonce := uint64(0); nonce <= 0xffffffff; nonce++ {
		h.Nonce = uint32(nonce)
		hash := h.Hash()
		if target.Meets(&hash) {
			return work.AssembleBlock(t, h.Bytes(), coinbase)
		}
	}
	return nil, fmt.Errorf("no nonce meets target %08x at height %d", t.Bits, t.Height)
}
