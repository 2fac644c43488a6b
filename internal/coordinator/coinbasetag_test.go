package coordinator_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/coordinator"
)

// TestCoinbaseTagInEveryBlock: the configured tag, pushed right after the
// extranonce, is in the coinbase of every block the embedded chain takes
// from the coordinator, for two payout addresses.
func TestCoinbaseTagInEveryBlock(t *testing.T) {
	const tag = "/farm 7: Bitaxe rigs/"
	h := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, cfg: func(c *coordinator.Config) { c.CoinbaseTag = tag }})
	start := h.chain.Current().Height
	miners := []*client{h.dial(), h.dial()}
	names := []string{"alice", "bob"}
	for i, c := range miners {
		c.ready(names[i])
	}
	for i := range 4 {
		c := miners[i%2]
		s := c.solve(c.lastJob, uint32(i), 1e-7, true, 0)
		s.worker = names[i%2]
		if ok, code := c.submit(s); !ok {
			t.Fatalf("block %d rejected with %d", i, code)
		}
		for _, m := range miners {
			m.waitNotify()
		}
	}
	blocks, err := h.store.Blocks(context.Background(), start, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 4 {
		t.Fatalf("%d blocks from height %d, want 4", len(blocks), start)
	}
	push, _ := txscript.NewScriptBuilder().AddData([]byte(tag)).Script()
	for _, b := range blocks {
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
			t.Fatalf("block %d: %v", b.Height, err)
		}
		sig := blk.Transactions[0].TxIn[0].SignatureScript
		if !bytes.HasSuffix(sig, push) {
			t.Fatalf("block %d (finder %s): scriptSig %x does not end with the tag %q", b.Height, b.Finder, sig, tag)
		}
	}
}

// TestCoinbaseTagOverBudget: a tag that does not fit beside the BIP 34
// height and the extranonce is refused at start, naming its size and the
// byte budget; one of exactly the budget is taken.
func TestCoinbaseTagOverBudget(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct {
		en2  int
		tag  int
		want string // "" = accepted
	}{
		{4, 82, ""},
		{4, 83, "is 83 bytes, over its budget of 82"},
		{8, 78, ""},
		{8, 79, "is 79 bytes, over its budget of 78"},
	} {
		_, err := coordinator.New(coordinator.Config{Source: h.chain, Store: h.store, Extranonce2Size: tc.en2, CoinbaseTag: strings.Repeat("x", tc.tag)})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("extranonce2 %d, tag of %d bytes: %v", tc.en2, tc.tag, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("extranonce2 %d, tag of %d bytes: err %v, want one containing %q", tc.en2, tc.tag, err, tc.want)
		}
	}
}
