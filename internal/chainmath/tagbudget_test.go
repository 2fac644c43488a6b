package chainmath

import (
	"bytes"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/wire/v2"
)

// TestCoinbaseTagBudget: a tag of exactly the budget fills the scriptSig
// to its 100 bytes with the job variant (JobTagSize) at the highest height
// of the budget (2^31-1), one byte more does not fit; for the
// coordinator's slots of 8 and 12 bytes the budgets are 82 and 78 bytes.
func TestCoinbaseTagBudget(t *testing.T) {
	out := []*wire.TxOut{wire.NewTxOut(1, []byte{0x51})}
	for _, tc := range []struct{ slot, want int }{{8, 82}, {12, 78}, {1, 89}, {75, 16}} {
		b := CoinbaseTagBudget(tc.slot)
		if b != tc.want {
			t.Errorf("CoinbaseTagBudget(%d) = %d, want %d", tc.slot, b, tc.want)
			continue
		}
		for _, height := range []int64{1, 17, 1 << 20, 1<<31 - 1} {
			c1, c2, err := BuildCoinbase(CoinbaseParams{Height: height, ExtranonceSize: tc.slot, Tag: bytes.Repeat([]byte{'t'}, b), Variant: 255, Outputs: out})
			if err != nil {
				t.Fatalf("slot %d height %d: a tag of the budget %d: %v", tc.slot, height, b, err)
			}
			var tx wire.MsgTx
			if err := tx.DeserializeNoWitness(bytes.NewReader(append(append(c1, make([]byte, tc.slot)...), c2...))); err != nil {
				t.Fatal(err)
			}
			sig := tx.TxIn[0].SignatureScript
			if len(sig) > MaxScriptSig || (height == 1<<31-1 && len(sig) != MaxScriptSig) {
				t.Fatalf("slot %d height %d: scriptSig %d bytes", tc.slot, height, len(sig))
			}
		}
		_, _, err := BuildCoinbase(CoinbaseParams{Height: 1<<31 - 1, ExtranonceSize: tc.slot, Tag: bytes.Repeat([]byte{'t'}, b+1), Outputs: out})
		if err == nil || !strings.Contains(err.Error(), "over the limit of 100") {
			t.Fatalf("slot %d: a tag one byte over the budget: %v", tc.slot, err)
		}
	}
}
