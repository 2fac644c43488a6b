package node_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/work"
)

// regtestGenesis is the regtest genesis block hash.
const regtestGenesis = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"

// testKey is a private key the tests control.
type testKey struct {
	priv   *btcec.PrivateKey
	addr   string
	script []byte // P2WPKH
}

func newKey(t *testing.T, seed byte) testKey {
	t.Helper()
	b := bytes.Repeat([]byte{seed}, 32)
	priv, pub := btcec.PrivKeyFromBytes(b)
	a, err := address.NewAddressWitnessPubKeyHash(address.Hash160(pub.SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(a)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, addr: a.EncodeAddress(), script: script}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newSource(t *testing.T, ctx context.Context, b *nodetest.Btcd, payout string, mod func(*node.Config)) *node.Source {
	t.Helper()
	cfg := node.Config{
		URLs: []string{b.URL}, User: b.User, Pass: b.Pass,
		Network: b.Network, PayoutAddress: payout,
		Logger: testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	src, err := node.New(ctx, cfg)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// mine solves a block on the current template, submits it and checks
// that the source moved on to the next height.
func mine(t *testing.T, ctx context.Context, src *node.Source, payout []byte, en uint64) *wire.MsgBlock {
	t.Helper()
	tmpl := src.Current()
	blk, err := nodetest.Solve(tmpl, payout, en)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Submit(ctx, blk, "test"); err != nil {
		t.Fatalf("submit at height %d: %v", tmpl.Height, err)
	}
	if got := src.Current(); got.Height != tmpl.Height+1 || got.PrevHash != chainmath.Hash(blk.BlockHash()) {
		t.Fatalf("after submitting height %d: template at height %d on %s, want %d on %s",
			tmpl.Height, got.Height, got.PrevHash, tmpl.Height+1, blk.BlockHash())
	}
	return blk
}

func TestBtcdTwentyBlocks(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 1)
	src := newSource(t, ctx, b, key.addr, nil)

	first := src.Current()
	if first.Height != 1 || first.PrevHash.String() != regtestGenesis || first.Bits != 0x207fffff {
		t.Fatalf("first template: height %d prev %s bits %08x; want 1, %s, 207fffff", first.Height, first.PrevHash, first.Bits, regtestGenesis)
	}
	if first.CoinbaseValue != 50e8 || len(first.Txs) != 0 || first.WitnessCommitment != nil {
		t.Fatalf("first template: value %d, %d txs, commitment %x; want 5000000000, 0, none", first.CoinbaseValue, len(first.Txs), first.WitnessCommitment)
	}
	st := src.Status()
	if !st.Healthy || st.Kind != "node" || st.TipHeight != 0 || st.TipHash != regtestGenesis || st.Network != "regtest" {
		t.Fatalf("status %+v", st)
	}

	const n = 20
	var hashes []string
	for i := range n {
		blk := mine(t, ctx, src, key.script, uint64(i))
		hashes = append(hashes, blk.BlockHash().String())
	}
	if acc, rej := src.Counts(); acc != n || rej != 0 {
		t.Fatalf("counts: %d accepted, %d rejected; want %d, 0", acc, rej, n)
	}
	count, err := b.BlockCount(ctx)
	if err != nil || count != n {
		t.Fatalf("btcd block count %d (%v), want %d", count, err, n)
	}
	best, err := b.BestBlockHash(ctx)
	if err != nil || best != hashes[n-1] {
		t.Fatalf("btcd best %s (%v), want our last block %s", best, err, hashes[n-1])
	}
	for h := int64(1); h <= n; h++ {
		hash, err := b.BlockHash(ctx, h)
		if err != nil || hash != hashes[h-1] {
			t.Fatalf("btcd block at %d: %s (%v), want ours %s", h, hash, err, hashes[h-1])
		}
		raw, err := b.RawBlock(ctx, hash)
		if err != nil {
			t.Fatal(err)
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		cb := blk.Transactions[0]
		ht, err := chainmath.ParseCoinbaseHeight(cb.TxIn[0].SignatureScript)
		if err != nil || ht != h {
			t.Fatalf("block %d: coinbase height %d (%v)", h, ht, err)
		}
		if !bytes.Contains(cb.TxIn[0].SignatureScript, nodetest.Tag) {
			t.Fatalf("block %d: coinbase scriptSig %x lacks the tag", h, cb.TxIn[0].SignatureScript)
		}
		if len(cb.TxOut) != 1 || !bytes.Equal(cb.TxOut[0].PkScript, key.script) || cb.TxOut[0].Value != 50e8 {
			t.Fatalf("block %d: coinbase outputs %+v, want 50 BTC to %x", h, cb.TxOut[0], key.script)
		}
	}
	st = src.Status()
	if st.TipHeight != n || st.TipHash != hashes[n-1] {
		t.Fatalf("status tip %d %s, want %d %s", st.TipHeight, st.TipHash, n, hashes[n-1])
	}
}

// spend signs a transaction spending a P2WPKH output of from to script.
func spend(t *testing.T, from testKey, prev wire.OutPoint, value int64, to []byte, fee int64) *wire.MsgTx {
	t.Helper()
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&prev, nil, nil))
	tx.AddTxOut(wire.NewTxOut(value-fee, to))
	fetcher := txscript.NewCannedPrevOutputFetcher(from.script, value)
	w, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetcher), 0, value, from.script, txscript.SigHashAll, from.priv, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = w
	return tx
}

func sendRaw(t *testing.T, ctx context.Context, b *nodetest.Btcd, tx *wire.MsgTx) {
	t.Helper()
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	var txid string
	if err := b.Call(ctx, "sendrawtransaction", []any{hex.EncodeToString(buf.Bytes())}, &txid); err != nil {
		t.Fatalf("sendrawtransaction: %v", err)
	}
	if txid != tx.TxHash().String() {
		t.Fatalf("sendrawtransaction answered %s, want %s", txid, tx.TxHash())
	}
}

func TestBtcdSegwitBlock(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	k1, k2 := newKey(t, 1), newKey(t, 2)
	src := newSource(t, ctx, b, k1.addr, nil)

	var first *wire.MsgBlock
	for i := range 101 {
		blk := mine(t, ctx, src, k1.script, uint64(i))
		if i == 0 {
			first = blk
		}
	}
	// Spend block 1's coinbase (mature now) to k2's P2WPKH, and that
	// output back to k1.
	cb := first.Transactions[0]
	tx1 := spend(t, k1, wire.OutPoint{Hash: cb.TxHash(), Index: 0}, cb.TxOut[0].Value, k2.script, 10000)
	tx2 := spend(t, k2, wire.OutPoint{Hash: tx1.TxHash(), Index: 0}, tx1.TxOut[0].Value, k1.script, 10000)
	sendRaw(t, ctx, b, tx1)
	sendRaw(t, ctx, b, tx2)

	// btcd regenerates a template for new transactions only on a new tip
	// (or after 60 s): one more block brings them in.
	var tmpl *work.Template
	for range 3 {
		tmpl = src.Current()
		if len(tmpl.Txs) == 2 {
			break
		}
		mine(t, ctx, src, k1.script, 1000+uint64(tmpl.Height))
	}
	if len(tmpl.Txs) != 2 {
		t.Fatalf("template at height %d has %d transactions, want our 2", tmpl.Height, len(tmpl.Txs))
	}
	if tmpl.Txs[0].TxID != chainmath.Hash(tx1.TxHash()) || tmpl.Txs[1].TxID != chainmath.Hash(tx2.TxHash()) {
		t.Fatalf("template txids %s %s, want %s %s", tmpl.Txs[0].TxID, tmpl.Txs[1].TxID, tx1.TxHash(), tx2.TxHash())
	}
	if tmpl.Txs[0].WTxID != chainmath.Hash(tx1.WitnessHash()) || tmpl.Txs[0].WTxID == tmpl.Txs[0].TxID {
		t.Fatalf("template wtxid %s, want %s (differing from the txid)", tmpl.Txs[0].WTxID, tx1.WitnessHash())
	}
	want := chainmath.WitnessCommitment([]chainmath.Hash{chainmath.Hash(tx1.WitnessHash()), chainmath.Hash(tx2.WitnessHash())})
	if !bytes.Equal(tmpl.WitnessCommitment, want[:]) {
		t.Fatalf("template witness commitment %x, want btcd's bare hash %x", tmpl.WitnessCommitment, want[:])
	}
	wantFees := int64(20000)
	if tmpl.CoinbaseValue != 50e8+wantFees {
		t.Fatalf("coinbase value %d, want subsidy plus %d fees", tmpl.CoinbaseValue, wantFees)
	}

	blk := mine(t, ctx, src, k1.script, 7)
	best, err := b.BestBlockHash(ctx)
	if err != nil || best != blk.BlockHash().String() {
		t.Fatalf("btcd best %s (%v), want the segwit block %s", best, err, blk.BlockHash())
	}
	raw, err := b.RawBlock(ctx, best)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.MsgBlock
	if err := got.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if len(got.Transactions) != 3 || got.Transactions[1].TxHash() != tx1.TxHash() || got.Transactions[2].TxHash() != tx2.TxHash() {
		t.Fatalf("btcd's block has %d transactions, want coinbase, tx1, tx2", len(got.Transactions))
	}
	gcb := got.Transactions[0]
	if len(gcb.TxIn[0].Witness) != 1 || !bytes.Equal(gcb.TxIn[0].Witness[0], make([]byte, 32)) {
		t.Fatalf("coinbase witness %x, want one 32-byte zero item", gcb.TxIn[0].Witness)
	}
	commit := gcb.TxOut[len(gcb.TxOut)-1].PkScript
	wantScript := append([]byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}, want[:]...)
	if !bytes.Equal(commit, wantScript) {
		t.Fatalf("coinbase commitment output %x, want %x", commit, wantScript)
	}
}

func TestBtcdRejectsTamperedBlock(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 3)
	src := newSource(t, ctx, b, key.addr, nil)
	mine(t, ctx, src, key.script, 0)

	// A coinbase that pays one satoshi more than allowed.
	tampered := *src.Current()
	tampered.CoinbaseValue++
	blk, err := nodetest.Solve(&tampered, key.script, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Submit(ctx, blk, "cheat")
	var rej *work.RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("submit of an overpaying block: %v, want *work.RejectedError", err)
	}
	if rej.Hash != chainmath.Hash(blk.BlockHash()) || !strings.HasPrefix(rej.Reason, "rejected: ") || !strings.Contains(rej.Reason, "5000000001") {
		t.Fatalf("rejection %s %q: want btcd's reason about 5000000001 for %s", rej.Hash, rej.Reason, blk.BlockHash())
	}
	if acc, n := src.Counts(); acc != 1 || n != 1 {
		t.Fatalf("counts: %d accepted, %d rejected; want 1, 1", acc, n)
	}
	if count, err := b.BlockCount(ctx); err != nil || count != 1 {
		t.Fatalf("btcd block count %d (%v), want 1", count, err)
	}

	// The same valid block twice: btcd answers "rejected: already have
	// block <hash>", which means the node has it: the second submit
	// succeeds too, and is not counted again.
	good, err := nodetest.Solve(src.Current(), key.script, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Submit(ctx, good, "test"); err != nil {
		t.Fatal(err)
	}
	if err := src.Submit(ctx, good, "test"); err != nil {
		t.Fatalf("second submit of the same block: %v, want nil (the node has it)", err)
	}
	if acc, n := src.Counts(); acc != 2 || n != 1 {
		t.Fatalf("counts: %d accepted, %d rejected; want 2, 1", acc, n)
	}
	// The overpaying block again: btcd stored it before it found it
	// invalid, and answers "already have block" for it too; the source
	// asks the node and reports the rejection.
	err = src.Submit(ctx, blk, "cheat")
	want := "rejected: already have block " + blk.BlockHash().String() + ", which it holds as invalid"
	if !errors.As(err, &rej) || rej.Reason != want {
		t.Fatalf("second submit of the overpaying block: %v, want a rejection with reason %q", err, want)
	}
	if acc, n := src.Counts(); acc != 2 || n != 2 {
		t.Fatalf("counts: %d accepted, %d rejected; want 2, 2", acc, n)
	}
}

// TestSubmitSurvivesNodeRestart finds a block while the only node is
// down: Submit says to try again, not that the block was rejected. After
// the node restarts on the same simnet data directory and port, the same
// block is submitted and becomes the tip; submitting it once more is still
// a success (the node already has it). btcd is stopped two ways: cleanly
// (it keeps its chain) and with SIGKILL (it loses the blocks it had not
// yet written to disk; the test hands them back, as its peers would).
func TestSubmitSurvivesNodeRestart(t *testing.T) {
	t.Run("stopped", func(t *testing.T) { testSubmitAcrossRestart(t, false) })
	t.Run("killed", func(t *testing.T) { testSubmitAcrossRestart(t, true) })
}

func testSubmitAcrossRestart(t *testing.T, kill bool) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "simnet")
	key := newKey(t, 9)
	src := newSource(t, ctx, b, "", func(c *node.Config) { c.PollInterval = 50 * time.Millisecond })
	var earlier []*wire.MsgBlock
	for i := range 2 {
		earlier = append(earlier, mine(t, ctx, src, key.script, uint64(i)))
	}
	tmpl := src.Current()
	if tmpl.Height != 3 {
		t.Fatalf("template at height %d after two blocks, want 3", tmpl.Height)
	}
	blk, err := nodetest.Solve(tmpl, key.script, 7)
	if err != nil {
		t.Fatal(err)
	}
	hash := chainmath.Hash(blk.BlockHash())

	if kill {
		b.Kill()
	} else {
		b.Stop()
	}
	err = src.Submit(ctx, blk, "test")
	var nerr *node.NoAnswerError
	if !errors.As(err, &nerr) || work.IsRejected(err) || len(nerr.Errs) != 1 {
		t.Fatalf("submit while the node is down: %#v, want a NoAnswerError (try again)", err)
	}
	var terr *node.TransportError
	if !errors.As(nerr.Errs[0], &terr) || "http://"+terr.Endpoint != b.URL || terr.Method != "submitblock" {
		t.Fatalf("submit while the node is down: %v, want a submitblock TransportError naming %s", nerr.Errs[0], b.URL)
	}

	b.Start()
	n, err := b.BlockCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kill {
		t.Logf("btcd came back from SIGKILL at height %d", n)
		for _, e := range earlier {
			var buf bytes.Buffer
			e.Serialize(&buf)
			var res any
			if err := b.Call(ctx, "submitblock", []any{hex.EncodeToString(buf.Bytes())}, &res); err != nil {
				t.Fatalf("handing block %s back: %v", e.BlockHash(), err)
			}
		}
		if n, err = b.BlockCount(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n != 2 {
		t.Fatalf("btcd block count after the restart %d, want 2", n)
	}
	if in, err := src.InBestChain(ctx, hash, 3); err != nil || in {
		t.Fatalf("InBestChain before the block is submitted: %v %v, want false", in, err)
	}
	if err := src.Submit(ctx, blk, "test"); err != nil {
		t.Fatalf("submit after the restart: %v, want nil", err)
	}
	if best, err := b.BestBlockHash(ctx); err != nil || best != hash.String() {
		t.Fatalf("btcd best block %s (%v), want the submitted block %s", best, err, hash)
	}
	waitFor(t, 10*time.Second, "a template on the submitted block", func() bool {
		cur := src.Current()
		return cur.Height == 4 && cur.PrevHash == hash
	})
	if in, err := src.InBestChain(ctx, hash, 3); err != nil || !in {
		t.Fatalf("InBestChain(%s, 3): %v %v, want true", hash, in, err)
	}
	if in, err := src.InBestChain(ctx, tmpl.PrevHash, 3); err != nil || in {
		t.Fatalf("InBestChain(the parent %s, 3): %v %v, want false", tmpl.PrevHash, in, err)
	}
	if in, err := src.InBestChain(ctx, hash, 4); err != nil || in {
		t.Fatalf("InBestChain(%s, 4) above the tip: %v %v, want false", hash, in, err)
	}

	if err := src.Submit(ctx, blk, "test"); err != nil {
		t.Fatalf("third submit of the block: %v, want nil (the node has it)", err)
	}
	if best, err := b.BestBlockHash(ctx); err != nil || best != hash.String() {
		t.Fatalf("btcd best block %s (%v) after the third submit, want %s", best, err, hash)
	}
	if acc, rej := src.Counts(); acc != 3 || rej != 0 {
		t.Fatalf("counts: %d accepted, %d rejected; want 3, 0", acc, rej)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

func TestBtcdRestartReconnects(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 4)
	src := newSource(t, ctx, b, key.addr, func(c *node.Config) { c.PollInterval = 50 * time.Millisecond })
	for i := range 3 {
		mine(t, ctx, src, key.script, uint64(i))
	}
	kept := src.Current()

	b.Kill()
	waitFor(t, 10*time.Second, "the source to notice the node is gone", func() bool { return !src.Status().Healthy })
	st := src.Status()
	if st.Error == "" || !strings.Contains(st.Error, "no node has answered") {
		t.Fatalf("status while down: %+v", st)
	}
	if src.Current() != kept || src.Stale() {
		t.Fatal("the last template was not kept while the node is down")
	}
	// A block found meanwhile cannot be delivered: a plain error.
	blk, err := nodetest.Solve(kept, key.script, 9)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Submit(ctx, blk, "test"); err == nil || work.IsRejected(err) {
		t.Fatalf("submit while the node is down: %v, want a transport error", err)
	}

	// regtest starts a new chain: mining resumes from height 1.
	b.Start()
	waitFor(t, 10*time.Second, "the source to recover", func() bool {
		st := src.Status()
		return st.Healthy && src.Current().Height == 1
	})
	if st := src.Status(); st.Error != "" || st.TipHash != regtestGenesis {
		t.Fatalf("status after recovery: %+v", st)
	}
	for i := range 2 {
		mine(t, ctx, src, key.script, 100+uint64(i))
	}
	if count, err := b.BlockCount(ctx); err != nil || count != 2 {
		t.Fatalf("btcd block count %d (%v), want 2 after the restart", count, err)
	}
}

func TestBtcdLongPollSeesForeignBlock(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 5)
	// No polling and no refresh within the test: only the long-poll can
	// bring the news.
	src := newSource(t, ctx, b, key.addr, func(c *node.Config) {
		c.PollInterval = time.Hour
		c.RefreshInterval = time.Hour
	})
	tmpl := src.Current()
	blk, err := nodetest.Solve(tmpl, key.script, 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	blk.Serialize(&buf)
	// Drain a pending signal from the first template.
	select {
	case <-src.Updates():
	default:
	}
	sent := time.Now()
	var res any
	if err := b.Call(ctx, "submitblock", []any{hex.EncodeToString(buf.Bytes())}, &res); err != nil || res != nil {
		t.Fatalf("submitblock directly: %v %v", res, err)
	}
	for {
		select {
		case <-src.Updates():
		case <-time.After(10 * time.Second):
			t.Fatal("no template update within 10 s of a block submitted by someone else")
		}
		if src.Current().Height == tmpl.Height+1 {
			break
		}
	}
	t.Logf("new tip seen %v after submitblock returned", time.Since(sent))
}

func TestFailoverToSecondNode(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	key := newKey(t, 6)
	src := newSource(t, ctx, b, key.addr, func(c *node.Config) { c.URLs = []string{dead, b.URL} })
	if st := src.Status(); !st.Healthy || st.Endpoint != strings.TrimPrefix(b.URL, "http://") {
		t.Fatalf("status %+v, want healthy on %s", st, b.URL)
	}
	mine(t, ctx, src, key.script, 0)
}

func TestNewErrors(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	cases := []struct {
		name string
		cfg  node.Config
		want string
	}{
		{"wrong password", node.Config{URLs: []string{b.URL}, User: b.User, Pass: "nope", Network: "regtest"}, "wrong RPC user/password"},
		{"wrong network", node.Config{URLs: []string{b.URL}, User: b.User, Pass: b.Pass, Network: "signet"}, `is on "regtest", not on --network signet`},
		{"unknown network", node.Config{URLs: []string{b.URL}, Network: "moonnet"}, `network "moonnet": unknown`},
		{"mainnet address", node.Config{URLs: []string{b.URL}, User: b.User, Pass: b.Pass, Network: "regtest", PayoutAddress: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"}, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"},
		{"no URL", node.Config{Network: "regtest"}, "no node URL"},
	}
	for _, c := range cases {
		_, err := node.New(ctx, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New error %v, want one containing %q", c.name, err, c.want)
		}
	}
	// An RPC error names the method and carries the node's message.
	cl, err := node.NewClient(node.ClientConfig{URL: b.URL, User: b.User, Pass: b.Pass})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = cl.Call(ctx, "getblockhash", []any{999}, nil)
	var rerr *node.RPCError
	if !errors.As(err, &rerr) || rerr.Method != "getblockhash" || !strings.Contains(rerr.Message, "out of range") {
		t.Fatalf("getblockhash 999: %v, want an RPCError naming the method with btcd's message", err)
	}
}

// TestBtcdStaleBlockStillSubmitted submits a block solved on a template
// the chain has since moved past: the node still takes it (onto a side
// chain), and the source keeps following the real tip.
func TestBtcdStaleBlockStillSubmitted(t *testing.T) {
	ctx := t.Context()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 8)
	src := newSource(t, ctx, b, key.addr, nil)
	old := src.Current()
	tip := mine(t, ctx, src, key.script, 0)
	late, err := nodetest.Solve(old, key.script, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Submit(ctx, late, "late"); err != nil {
		t.Fatalf("submitting a block on a stale template: %v", err)
	}
	if best, err := b.BestBlockHash(ctx); err != nil || best != tip.BlockHash().String() {
		t.Fatalf("btcd best %s (%v), want the first block %s", best, err, tip.BlockHash())
	}
	if cur := src.Current(); cur.Height != 2 || cur.PrevHash != chainmath.Hash(tip.BlockHash()) {
		t.Fatalf("template at %d on %s after the stale block, want 2 on %s", cur.Height, cur.PrevHash, tip.BlockHash())
	}
	var tips []struct {
		Height int64  `json:"height"`
		Hash   string `json:"hash"`
		Status string `json:"status"`
	}
	if err := b.Call(ctx, "getchaintips", nil, &tips); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tp := range tips {
		if tp.Hash == late.BlockHash().String() && tp.Height == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("btcd's chain tips %+v lack the stale block %s", tips, late.BlockHash())
	}
}
