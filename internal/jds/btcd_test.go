package jds_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/jds"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/sv2"
	"github.com/powcoord/powcoord/internal/work"
)

type testKey struct {
	priv   *btcec.PrivateKey
	addr   string
	script []byte // P2WPKH
}

func newKey(t *testing.T, seed byte) testKey {
	t.Helper()
	priv, pub := btcec.PrivKeyFromBytes(bytes.Repeat([]byte{seed}, 32))
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

func raw(t *testing.T, tx *wire.MsgTx) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// rig is a solo pool on btcd regtest: a coordinator with a V2 listener
// and the Job Declarator Server on its own port, same authority key.
type rig struct {
	b       *nodetest.Btcd
	src     work.Source
	st      *store.Store
	auth    *btcec.PrivateKey
	mineAdr string // V2 mining listener
	jdAdr   string
	miner   testKey
	coinb   *wire.MsgBlock // block 1, whose coinbase pays miner (mature)
	blocks  chan coordinator.BlockEvent
}

const enSize = 4 + 4 // the channel's extranonce prefix and extranonce

func newRig(t *testing.T, ctx context.Context) *rig {
	t.Helper()
	b := nodetest.StartBtcd(t, "regtest")
	miner := newKey(t, 1)
	src, err := node.New(ctx, node.Config{URLs: []string{b.URL}, User: b.User, Pass: b.Pass, Network: b.Network, PayoutAddress: miner.addr,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	// 101 blocks: block 1's coinbase matures.
	var first *wire.MsgBlock
	for i := range 101 {
		tmpl := src.Current()
		blk, err := nodetest.Solve(tmpl, miner.script, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Submit(ctx, blk, "setup"); err != nil {
			t.Fatalf("setup block %d: %v", tmpl.Height, err)
		}
		if i == 0 {
			first = blk
		}
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := startPool(t, ctx, src, src, st, nil, nil)
	r.b, r.miner, r.coinb = b, miner, first
	return r
}

// startPool serves a coordinator on src (V2 only, share difficulty 1e-7,
// solo unless mod says otherwise) and a Job Declarator Server judging
// with check; now, when set, is the Job Declarator Server's clock.
func startPool(t *testing.T, ctx context.Context, src work.Source, check work.BlockChecker, st *store.Store, now func() time.Time, mod func(*coordinator.Config)) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := &rig{src: src, st: st, blocks: make(chan coordinator.BlockEvent, 16)}
	r.auth, _ = btcec.NewPrivateKey()
	srv, err := sv2.NewServer(sv2.ServerConfig{Authority: r.auth})
	if err != nil {
		t.Fatal(err)
	}
	var coord *coordinator.Coordinator
	jd, err := jds.New(jds.Config{Noise: srv, Source: src, Check: check, ExtranonceSize: enSize, Logger: log, Now: now,
		Payout: func(user string) (jds.Payout, error) { return coord.JDPayout(user) }})
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.Config{Source: src, Store: st, ShareDifficulty: 1e-7, SharesPerMinute: -1,
		JobDeclarations: jd, Logger: log, OnBlock: func(ev coordinator.BlockEvent) { r.blocks <- ev }}
	if mod != nil {
		mod(&cfg)
	}
	coord, err = coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.mineAdr, r.jdAdr = mln.Addr().String(), jln.Addr().String()
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := coord.Serve(sctx, coordinator.WithSV2(mln, srv)); err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	wg.Go(func() {
		if err := jd.Serve(sctx, jln); err != nil {
			t.Errorf("jds: %v", err)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	return r
}

// declared is a template a test miner builds and declares: the pool's
// current template plus its own transactions.
type declared struct {
	tmpl    *work.Template
	cb      *wire.MsgTx
	txs     []*wire.MsgTx
	version uint32
}

// build makes a coinbase paying outs (then the witness commitment when
// a transaction has a witness) at the template's height, with room for
// the extranonce at the end of its scriptSig.
func build(t *testing.T, tmpl *work.Template, height int64, outs []*wire.TxOut, txs ...*wire.MsgTx) *declared {
	t.Helper()
	return buildTagged(t, tmpl, height, []byte("/jd-test/"), outs, txs...)
}

// buildTagged is build with tag after the height in the scriptSig.
func buildTagged(t *testing.T, tmpl *work.Template, height int64, tag []byte, outs []*wire.TxOut, txs ...*wire.MsgTx) *declared {
	t.Helper()
	sig, err := txscript.NewScriptBuilder().AddInt64(height).AddData(tag).Script()
	if err != nil {
		t.Fatal(err)
	}
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, append(sig, make([]byte, enSize)...), nil))
	for _, o := range outs {
		cb.AddTxOut(wire.NewTxOut(o.Value, o.PkScript))
	}
	var wtxids []chainmath.Hash
	witness := false
	for _, tx := range txs {
		wtxids = append(wtxids, chainmath.Hash(tx.WitnessHash()))
		witness = witness || tx.HasWitness()
	}
	if witness {
		c := chainmath.WitnessCommitment(wtxids)
		script, _ := chainmath.CommitmentScript(c[:])
		cb.AddTxOut(wire.NewTxOut(0, script))
		cb.TxIn[0].Witness = wire.TxWitness{make([]byte, 32)}
	}
	return &declared{tmpl: tmpl, cb: cb, txs: txs, version: tmpl.Version}
}

func (d *declared) declaration(t *testing.T, token []byte) jds.Declaration {
	t.Helper()
	prefix, suffix, err := jds.SplitCoinbase(d.cb, enSize)
	if err != nil {
		t.Fatal(err)
	}
	out := jds.Declaration{Token: token, Version: d.version, CoinbasePrefix: prefix, CoinbaseSuffix: suffix}
	for _, tx := range d.txs {
		out.Txs = append(out.Txs, raw(t, tx))
	}
	return out
}

// custom is the SetCustomMiningJob of d on channel ch.
func (d *declared) custom(t *testing.T, ch uint32, token []byte) *sv2.SetCustomMiningJob {
	t.Helper()
	outs, err := jds.MarshalOutputs(d.cb.TxOut)
	if err != nil {
		t.Fatal(err)
	}
	var txids []chainmath.Hash
	for _, tx := range d.txs {
		txids = append(txids, chainmath.Hash(tx.TxHash()))
	}
	var path []sv2.U256
	for _, h := range chainmath.MerkleBranch(txids) {
		path = append(path, sv2.U256(h))
	}
	sig := d.cb.TxIn[0].SignatureScript
	return &sv2.SetCustomMiningJob{ChannelID: ch, RequestID: 1, MiningJobToken: token, Version: d.version, PrevHash: sv2.U256(d.tmpl.PrevHash),
		MinNTime: max(d.tmpl.CurTime, d.tmpl.MinTime), NBits: d.tmpl.Bits, CoinbaseTxVersion: uint32(d.cb.Version), CoinbasePrefix: sig[:len(sig)-enSize],
		CoinbaseTxInputNSequence: d.cb.TxIn[0].Sequence, CoinbaseTxOutputs: outs, CoinbaseTxLocktime: d.cb.LockTime, MerklePath: path}
}

// miner is a V2 mining connection with one extended channel, set up for
// work selection.
type miner struct {
	t      *testing.T
	raw    net.Conn
	c      *sv2.Conn
	ch     uint32
	prefix []byte
	target chainmath.Target
}

func dialMiner(t *testing.T, r *rig, user string) *miner {
	t.Helper()
	return dialMinerFlags(t, r, user, 1<<1)
}

// dialMinerFlags is dialMiner with the SetupConnection flags given.
func dialMinerFlags(t *testing.T, r *rig, user string, flags uint32) *miner {
	t.Helper()
	raw, err := net.Dial("tcp", r.mineAdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: sv2.XOnly(r.auth)})
	if err != nil {
		t.Fatal(err)
	}
	m := &miner{t: t, raw: raw, c: c}
	m.send(&sv2.SetupConnection{Protocol: sv2.ProtocolMining, MinVersion: 2, MaxVersion: 2, Flags: flags})
	if _, ok := m.wait(sv2.TypeSetupConnectionSuccess).(*sv2.SetupConnectionSuccess); !ok {
		t.Fatalf("no SetupConnection.Success for flags %#x", flags)
	}
	var max sv2.U256
	for i := range max {
		max[i] = 0xff
	}
	m.send(&sv2.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: user, MaxTarget: max, MinExtranonceSize: 4})
	ok := m.wait(sv2.TypeOpenExtendedMiningChannelSuccess).(*sv2.OpenExtendedMiningChannelSuccess)
	m.ch, m.prefix, m.target = ok.ChannelID, ok.ExtranoncePrefix, chainmath.Target(ok.Target)
	if len(ok.ExtranoncePrefix)+int(ok.ExtranonceSize) != enSize {
		t.Fatalf("extranonce prefix %d + size %d bytes, want %d", len(ok.ExtranoncePrefix), ok.ExtranonceSize, enSize)
	}
	return m
}

func (m *miner) send(ms ...sv2.Message) {
	m.t.Helper()
	if err := m.c.WriteMessages(ms...); err != nil {
		m.t.Fatal(err)
	}
}

// wait reads until a message of one of the types arrives (the pool's own
// jobs and targets pass by).
func (m *miner) wait(types ...uint8) sv2.Message {
	m.t.Helper()
	for {
		_, msg, err := m.c.ReadMessage()
		if err != nil {
			m.t.Fatalf("waiting for %v: %v", types, err)
		}
		if st, ok := msg.(*sv2.SetTarget); ok {
			m.target = chainmath.Target(st.MaximumTarget)
		}
		for _, typ := range types {
			if msg != nil && msg.MsgType() == typ {
				return msg
			}
		}
	}
}

// setCustom sends m and returns the job id, or the error code.
func (mn *miner) setCustom(m *sv2.SetCustomMiningJob) (uint32, string) {
	mn.send(m)
	switch a := mn.wait(sv2.TypeSetCustomMiningJobSuccess, sv2.TypeSetCustomMiningJobError).(type) {
	case *sv2.SetCustomMiningJobSuccess:
		return a.JobID, ""
	case *sv2.SetCustomMiningJobError:
		return 0, a.ErrorCode
	}
	return 0, ""
}

// solve finds a share of the custom job m with extranonce en (4 bytes).
func (mn *miner) solve(m *sv2.SetCustomMiningJob, en []byte) (chainmath.Header, []byte) {
	mn.t.Helper()
	coinb1, coinb2, err := jds.CustomCoinbase(m, enSize)
	if err != nil {
		mn.t.Fatal(err)
	}
	coinbase := append(append(append(append([]byte(nil), coinb1...), mn.prefix...), en...), coinb2...)
	branch := make([]chainmath.Hash, len(m.MerklePath))
	for i, h := range m.MerklePath {
		branch[i] = chainmath.Hash(h)
	}
	h := chainmath.Header{Version: m.Version, PrevBlock: chainmath.Hash(m.PrevHash), MerkleRoot: chainmath.RootFromBranch(chainmath.DoubleSHA256(coinbase), branch), Time: m.MinNTime, Bits: m.NBits}
	for ; ; h.Nonce++ {
		hash := h.Hash()
		if mn.target.Meets(&hash) {
			return h, coinbase
		}
	}
}

func TestJobDeclarationOnBtcd(t *testing.T) {
	ctx := t.Context()
	r := newRig(t, ctx)
	user := r.miner.addr + ".jd"
	// A transaction the pool's btcd has never seen: block 1's coinbase
	// to k2, fee 10,000 sat.
	k2 := newKey(t, 2)
	cb1 := r.coinb.Transactions[0]
	tx := spend(t, r.miner, wire.OutPoint{Hash: cb1.TxHash(), Index: 0}, cb1.TxOut[0].Value, k2.script, 10_000)
	var inPool []string
	if err := r.b.Call(ctx, "getrawmempool", nil, &inPool); err != nil || len(inPool) != 0 {
		t.Fatalf("pool's mempool %v (%v), want empty", inPool, err)
	}

	cl, err := jds.Dial(ctx, r.jdAdr, sv2.XOnly(r.auth))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	token, required, err := cl.Allocate(user)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := r.src.Current()
	if len(required) != 1 || !bytes.Equal(required[0].PkScript, r.miner.script) || required[0].Value != tmpl.CoinbaseValue || tmpl.CoinbaseValue != 50e8 {
		t.Fatalf("required outputs %+v, want one of %d sat to %x", required, tmpl.CoinbaseValue, r.miner.script)
	}
	// The miner pays the pool's output the subsidy and its fee.
	outs := []*wire.TxOut{wire.NewTxOut(required[0].Value+10_000, required[0].PkScript)}
	d := build(t, tmpl, tmpl.Height, outs, tx)
	jobToken, err := cl.Declare(d.declaration(t, token))
	if err != nil {
		t.Fatalf("declaration refused: %v", err)
	}
	if cl.Provided != 1 {
		t.Fatalf("the server asked for %d transactions, want the 1 its node lacks", cl.Provided)
	}

	t.Run("reused token", func(t *testing.T) {
		_, err := cl.Declare(d.declaration(t, token))
		var ref *jds.Refusal
		if !errors.As(err, &ref) || ref.Code != "invalid-mining-job-token" {
			t.Fatalf("second declaration with the same token: %v, want invalid-mining-job-token", err)
		}
	})
	t.Run("foreign token", func(t *testing.T) {
		_, err := cl.Declare(d.declaration(t, []byte("not ours")))
		var ref *jds.Refusal
		if !errors.As(err, &ref) || ref.Code != "invalid-mining-job-token" {
			t.Fatalf("declaration with a foreign token: %v, want invalid-mining-job-token", err)
		}
	})
	t.Run("stale prev hash", func(t *testing.T) {
		tok, _, err := cl.Allocate(user)
		if err != nil {
			t.Fatal(err)
		}
		// A coinbase for the tip's height: a template on the tip's parent.
		stale := build(t, tmpl, tmpl.Height-1, outs, tx)
		_, err = cl.Declare(stale.declaration(t, tok))
		var ref *jds.Refusal
		if !errors.As(err, &ref) || ref.Code != "invalid-job-param-value-coinbase-tx-prefix" || !strings.Contains(ref.Detail, "coinbase height 101") {
			t.Fatalf("declaration on the tip's parent: %v, want invalid-job-param-value-coinbase-tx-prefix naming height 101", err)
		}
	})
	t.Run("underpaid by one satoshi", func(t *testing.T) {
		tok, req, err := cl.Allocate(user)
		if err != nil {
			t.Fatal(err)
		}
		short := build(t, tmpl, tmpl.Height, []*wire.TxOut{wire.NewTxOut(req[0].Value-1, req[0].PkScript), wire.NewTxOut(1+10_000, k2.script)}, tx)
		_, err = cl.Declare(short.declaration(t, tok))
		var ref *jds.Refusal
		if !errors.As(err, &ref) || ref.Code != "invalid-job-param-value-coinbase-tx-suffix" || !strings.Contains(ref.Detail, "paid 4999999999 sat, 5000000000 required") {
			t.Fatalf("coinbase 1 sat short: %v, want invalid-job-param-value-coinbase-tx-suffix", err)
		}
	})
	t.Run("invalid transaction", func(t *testing.T) {
		tok, _, err := cl.Allocate(user)
		if err != nil {
			t.Fatal(err)
		}
		// Spends an output that does not exist.
		bad := spend(t, r.miner, wire.OutPoint{Hash: tx.TxHash(), Index: 7}, 1e8, k2.script, 1000)
		d := build(t, tmpl, tmpl.Height, outs, bad)
		_, err = cl.Declare(d.declaration(t, tok))
		var ref *jds.Refusal
		if !errors.As(err, &ref) || ref.Code != "invalid-job-param-value-wtxid-list" {
			t.Fatalf("declaration spending a missing output: %v, want invalid-job-param-value-wtxid-list", err)
		}
	})

	mn := dialMiner(t, r, user)
	t.Run("custom job on another prev hash", func(t *testing.T) {
		tok, _, err := cl.Allocate(user)
		if err != nil {
			t.Fatal(err)
		}
		jt, err := cl.Declare(build(t, tmpl, tmpl.Height, outs, tx).declaration(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		m := d.custom(t, mn.ch, jt)
		m.PrevHash[0] ^= 1
		if _, code := mn.setCustom(m); code != "invalid-job-param-value-prev-hash" {
			t.Fatalf("SetCustomMiningJob on another prev hash: %q, want invalid-job-param-value-prev-hash", code)
		}
	})
	t.Run("custom job without a declared token", func(t *testing.T) {
		if _, code := mn.setCustom(d.custom(t, mn.ch, token)); code != "invalid-mining-job-token" {
			t.Fatalf("SetCustomMiningJob with the allocation token: %q, want invalid-mining-job-token", code)
		}
	})

	m := d.custom(t, mn.ch, jobToken)
	jobID, code := mn.setCustom(m)
	if code != "" {
		t.Fatalf("SetCustomMiningJob refused: %s", code)
	}
	if _, code := mn.setCustom(m); code != "invalid-mining-job-token" {
		t.Fatalf("the declared job set twice: %q, want invalid-mining-job-token", code)
	}
	en := []byte{0, 0, 0, 7}
	h, coinbase := mn.solve(m, en)
	share := &sv2.SubmitSharesExtended{ChannelID: mn.ch, SequenceNumber: 1, JobID: jobID, Nonce: h.Nonce, NTime: h.Time, Version: h.Version, Extranonce: en}
	again := *share
	again.SequenceNumber = 2
	mn.send(share, &again) // the same work twice: credited once
	// Both answers, in either order: SubmitShares.Success for sequence 1
	// once the ledger has it, and SubmitShares.Error for sequence 2.
	var okSeen, errSeen bool
	for !okSeen || !errSeen {
		switch a := mn.wait(sv2.TypeSubmitSharesSuccess, sv2.TypeSubmitSharesError).(type) {
		case *sv2.SubmitSharesError:
			if errSeen || a.SequenceNumber != 2 || (a.ErrorCode != "duplicate-share" && a.ErrorCode != "stale-share") {
				t.Fatalf("SubmitShares.Error %+v, want one for the repeated share (sequence 2): duplicate-share, or stale-share once the block moved the tip", a)
			}
			errSeen = true
		case *sv2.SubmitSharesSuccess:
			if okSeen || a.NewSubmitsAcceptedCount != 1 || a.LastSequenceNumber != 1 {
				t.Fatalf("SubmitShares.Success %+v, want 1 share up to sequence 1", a)
			}
			okSeen = true
		}
	}
	hash := h.Hash()
	select {
	case ev := <-r.blocks:
		if !ev.Accepted || ev.Hash != hash.String() || ev.Height != tmpl.Height {
			t.Fatalf("block event %+v, want %s accepted at %d", ev, hash, tmpl.Height)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no block event for the custom job's share")
	}
	best, err := r.b.BestBlockHash(ctx)
	if err != nil || best != hash.String() {
		t.Fatalf("btcd's tip %s (%v), want the custom job's block %s", best, err, hash)
	}
	rawBlk, err := r.b.RawBlock(ctx, best)
	if err != nil {
		t.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(rawBlk)); err != nil {
		t.Fatal(err)
	}
	if len(blk.Transactions) != 2 || blk.Transactions[1].TxHash() != tx.TxHash() {
		t.Fatalf("block has %d transactions, want the coinbase and the declared %s", len(blk.Transactions), tx.TxHash())
	}
	var stripped bytes.Buffer
	blk.Transactions[0].SerializeNoWitness(&stripped)
	if !bytes.Equal(stripped.Bytes(), coinbase) || blk.Transactions[0].TxOut[0].Value != 50e8+10_000 {
		t.Fatalf("block coinbase %x paying %d, want the mined %x paying %d", stripped.Bytes(), blk.Transactions[0].TxOut[0].Value, coinbase, int64(50e8+10_000))
	}
	shares, err := r.st.Shares(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 1 || shares[0].Hash != hash || !shares[0].Block || shares[0].JobID != strconv.FormatUint(uint64(jobID), 10) || shares[0].Difficulty != 1e-7 {
		t.Fatalf("ledger shares of %s: %+v, want the one block share %s at difficulty 1e-7", user, shares, hash)
	}

	// PushSolution: a job declared on the new tip, solved by the
	// client, assembled and submitted by the server.
	next := r.src.Current()
	if next.PrevHash != hash {
		t.Fatalf("the source's template builds on %s, want the custom job's block %s", next.PrevHash, hash)
	}
	tok, req, err := cl.Allocate(user)
	if err != nil {
		t.Fatal(err)
	}
	d2 := build(t, next, next.Height, req)
	if _, err := cl.Declare(d2.declaration(t, tok)); err != nil {
		t.Fatalf("declaration on the new tip: %v", err)
	}
	m2 := d2.custom(t, 0, nil)
	full := []byte{9, 9, 9, 9, 0, 0, 0, 1}
	coinb1, coinb2, err := jds.CustomCoinbase(m2, enSize)
	if err != nil {
		t.Fatal(err)
	}
	cb2 := append(append(append([]byte(nil), coinb1...), full...), coinb2...)
	h2 := chainmath.Header{Version: m2.Version, PrevBlock: hash, MerkleRoot: chainmath.DoubleSHA256(cb2), Time: m2.MinNTime, Bits: m2.NBits}
	blockTarget, _ := next.Target()
	for hh := h2.Hash(); !blockTarget.Meets(&hh); hh = h2.Hash() {
		h2.Nonce++
	}
	if err := cl.PushSolution(&sv2.PushSolution{Extranonce: full, PrevHash: sv2.U256(hash), Nonce: h2.Nonce, NTime: h2.Time, NBits: h2.Bits, Version: h2.Version}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Allocate(user); err != nil { // answered once the push was handled
		t.Fatal(err)
	}
	if best, err := r.b.BestBlockHash(ctx); err != nil || best != h2.Hash().String() {
		t.Fatalf("btcd's tip %s (%v) after PushSolution, want %s", best, err, h2.Hash())
	}
}
