package jds

import (
	"bytes"
	"testing"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/sv2"
)

// FuzzParseOutputs: coinbase_tx_outputs from anywhere never panic, and
// what parses serializes back to the same bytes.
func FuzzParseOutputs(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x51, 0})
	f.Add([]byte{0xfd, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		outs, err := ParseOutputs(b)
		if err != nil {
			return
		}
		again, err := MarshalOutputs(outs)
		if err != nil {
			t.Fatalf("parsed %x but does not serialize: %v", b, err)
		}
		if !bytes.Equal(again, b) && len(b) > 0 && b[0] < 0xfd {
			t.Fatalf("parsed %x, serialized back %x", b, again)
		}
	})
}

// FuzzParseCoinbase: a DeclareMiningJob's coinbase halves from anywhere
// never panic; what parses splits around exactly its extranonce, and
// coinb1 ‖ zeros ‖ coinb2 is the transaction's non-witness form.
func FuzzParseCoinbase(f *testing.F) {
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, append([]byte{1, 102}, make([]byte, 8)...), nil))
	cb.AddTxOut(wire.NewTxOut(50e8, []byte{0x51}))
	var b bytes.Buffer
	cb.Serialize(&b)
	full := b.Bytes()
	cut := 4 + 1 + 36 + 1 + 2
	f.Add(full[:cut], full[cut+8:])
	cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	b.Reset()
	cb.Serialize(&b)
	full = b.Bytes()
	f.Add(full[:cut+2], full[cut+2+8:])
	f.Fuzz(func(t *testing.T, prefix, suffix []byte) {
		c, err := ParseCoinbase(prefix, suffix)
		if err != nil {
			return
		}
		if c.ExtranonceSize < 0 || c.ExtranonceSize > sv2.MaxB032 {
			t.Fatalf("extranonce size %d", c.ExtranonceSize)
		}
		var nw bytes.Buffer
		c.Tx.SerializeNoWitness(&nw)
		joined := append(append(append([]byte(nil), c.Coinb1...), make([]byte, c.ExtranonceSize)...), c.Coinb2...)
		if !bytes.Equal(joined, nw.Bytes()) {
			t.Fatalf("coinb1 ‖ %d zeros ‖ coinb2 = %x, the transaction is %x", c.ExtranonceSize, joined, nw.Bytes())
		}
	})
}
