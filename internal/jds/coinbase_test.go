package jds

import (
	"bytes"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/wire/v2"
)

// TestBudget: a P2PKH output (25-byte script) takes 8+1+25 bytes and one
// CHECKSIG, cost 4; a P2WPKH output (22 bytes) 31 bytes and no sigop.
func TestBudget(t *testing.T) {
	p2pkh := append(append([]byte{0x76, 0xa9, 0x14}, bytes.Repeat([]byte{1}, 20)...), 0x88, 0xac)
	p2wpkh := append([]byte{0x00, 0x14}, bytes.Repeat([]byte{2}, 20)...)
	size, sigops := Budget([]*wire.TxOut{wire.NewTxOut(1, p2pkh), wire.NewTxOut(2, p2wpkh)})
	if size != 34+31 || sigops != 4 {
		t.Fatalf("budget %d bytes, %d sigops; want 65, 4", size, sigops)
	}
}

// TestUnderpaid: each required output is matched to its own output of
// the same script; reordering and extra outputs are allowed, one satoshi
// short or a second required output on the same script paid once is not.
func TestUnderpaid(t *testing.T) {
	a, b := []byte{0x51}, []byte{0x52}
	req := []*wire.TxOut{wire.NewTxOut(100, a), wire.NewTxOut(50, b), wire.NewTxOut(10, a)}
	for _, c := range []struct {
		outs []*wire.TxOut
		want string
	}{
		{[]*wire.TxOut{wire.NewTxOut(0, []byte{0x6a}), wire.NewTxOut(50, b), wire.NewTxOut(10, a), wire.NewTxOut(100, a)}, ""},
		{[]*wire.TxOut{wire.NewTxOut(100, a), wire.NewTxOut(49, b), wire.NewTxOut(10, a)}, "required output 1 (script 52) is paid 49 sat, 50 required"},
		{[]*wire.TxOut{wire.NewTxOut(110, a), wire.NewTxOut(50, b)}, "required output 2 (script 51, 10 sat) is missing"},
	} {
		err := Underpaid(c.outs, req)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("outputs %v: %v, want %q", c.outs, err, c.want)
		}
	}
}

// TestParseCoinbaseSplitsAroundTheExtranonce: a segwit coinbase cut 8
// bytes before its scriptSig ends parses with an 8-byte extranonce, and
// its non-witness halves join around it into its txid bytes.
func TestParseCoinbaseSplitsAroundTheExtranonce(t *testing.T) {
	cb := wire.NewMsgTx(2)
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, append([]byte{1, 0x66}, make([]byte, 8)...), nil))
	cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	cb.AddTxOut(wire.NewTxOut(5000, []byte{0x51}))
	prefix, suffix, err := SplitCoinbase(cb, 8)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCoinbase(prefix, suffix)
	if err != nil {
		t.Fatal(err)
	}
	var nw bytes.Buffer
	cb.SerializeNoWitness(&nw)
	joined := append(append(append([]byte(nil), c.Coinb1...), make([]byte, 8)...), c.Coinb2...)
	if c.ExtranonceSize != 8 || !bytes.Equal(c.ScriptPrefix, []byte{1, 0x66}) || !bytes.Equal(joined, nw.Bytes()) || c.Tx.TxHash() != cb.TxHash() {
		t.Fatalf("extranonce %d, script prefix %x, joined %x, want 8, 0166, %x", c.ExtranonceSize, c.ScriptPrefix, joined, nw.Bytes())
	}
	if _, err := ParseCoinbase(prefix[:len(prefix)-3], suffix); err == nil || !strings.Contains(err.Error(), "coinbase") {
		t.Fatalf("a prefix ending before the scriptSig length parsed: %v", err)
	}
}
