package jds_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/jds"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/sv2"
)

// stepClock is a clock that moves only when told.
type stepClock struct{ ns atomic.Int64 }

func (c *stepClock) Now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *stepClock) Add(d time.Duration)  { c.ns.Add(int64(d)) }
func newStepClock(t time.Time) *stepClock { c := &stepClock{}; c.ns.Store(t.UnixNano()); return c }
func refusal(err error) (r *jds.Refusal)  { errors.As(err, &r); return r }

// TestJobDeclarationOnEmbeddedChain: on the embedded chain (its own
// validity check) a declared empty template is mined through
// SetCustomMiningJob; its shares are credited once each (the repeated one
// is a duplicate); a transaction, an oversized coinbase and an expired
// token are refused with their codes.
func TestJobDeclarationOnEmbeddedChain(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Difficulty 1: a share of difficulty 1e-7 is no block, so the tip
	// stays where it is.
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, StartDifficulty: 1,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	clock := newStepClock(time.Now())
	r := startPool(t, ctx, chain, chain, st, clock.Now, nil)
	const user = "jdminer.rig1"
	cl, err := jds.Dial(ctx, r.jdAdr, sv2.XOnly(r.auth))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tmpl := chain.Current()
	script, _ := simchain.PayoutScript("jdminer") // the account: the name before the first dot
	tok, req, err := cl.Allocate(user)
	if err != nil {
		t.Fatal(err)
	}
	if len(req) != 1 || req[0].Value != tmpl.CoinbaseValue || !bytes.Equal(req[0].PkScript, script) {
		t.Fatalf("required outputs %+v, want %d sat to %x", req, tmpl.CoinbaseValue, script)
	}
	d := build(t, tmpl, tmpl.Height, req)
	jobToken, err := cl.Declare(d.declaration(t, tok))
	if err != nil || cl.Provided != 0 {
		t.Fatalf("empty template: %v (%d transactions asked for)", err, cl.Provided)
	}

	t.Run("transaction the chain refuses", func(t *testing.T) {
		tok, _, _ := cl.Allocate(user)
		tx := wire.NewMsgTx(2)
		tx.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: 3}, []byte{0x51}, nil))
		tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
		_, err := cl.Declare(build(t, tmpl, tmpl.Height, req, tx).declaration(t, tok))
		if r := refusal(err); r == nil || r.Code != "invalid-job-param-value-wtxid-list" || !strings.Contains(r.Detail, simchain.ReasonUnexpectedTxs) || cl.Provided != 1 {
			t.Fatalf("declaration with a transaction: %v (%d provided), want invalid-job-param-value-wtxid-list naming %s after it was provided", err, cl.Provided, simchain.ReasonUnexpectedTxs)
		}
	})
	t.Run("oversized coinbase", func(t *testing.T) {
		tok, _, _ := cl.Allocate(user)
		big := buildTagged(t, tmpl, tmpl.Height, bytes.Repeat([]byte{'x'}, 90), req)
		_, err := cl.Declare(big.declaration(t, tok))
		if r := refusal(err); r == nil || r.Code != "invalid-job-param-value-coinbase-tx-prefix" || !strings.Contains(r.Detail, "scriptSig of 101 bytes") {
			t.Fatalf("101-byte coinbase scriptSig: %v, want invalid-job-param-value-coinbase-tx-prefix", err)
		}
	})

	t.Run("custom job without work selection", func(t *testing.T) {
		plain := dialMinerFlags(t, r, user, 0)
		if _, code := plain.setCustom(d.custom(t, plain.ch, jobToken)); code != "custom-jobs-not-supported" {
			t.Fatalf("SetCustomMiningJob on a connection without REQUIRES_WORK_SELECTION: %q, want custom-jobs-not-supported", code)
		}
	})
	mn := dialMiner(t, r, user)
	m := d.custom(t, mn.ch, jobToken)
	jobID, code := mn.setCustom(m)
	if code != "" {
		t.Fatalf("SetCustomMiningJob refused: %s", code)
	}
	submit := func(seq uint32, en []byte) sv2.Message {
		h, _ := mn.solve(m, en)
		mn.send(&sv2.SubmitSharesExtended{ChannelID: mn.ch, SequenceNumber: seq, JobID: jobID, Nonce: h.Nonce, NTime: h.Time, Version: h.Version, Extranonce: en})
		return mn.wait(sv2.TypeSubmitSharesSuccess, sv2.TypeSubmitSharesError)
	}
	if a, ok := submit(1, []byte{0, 0, 0, 1}).(*sv2.SubmitSharesSuccess); !ok || a.LastSequenceNumber != 1 || a.NewSubmitsAcceptedCount != 1 {
		t.Fatalf("first share: %+v", a)
	}
	if a, ok := submit(2, []byte{0, 0, 0, 1}).(*sv2.SubmitSharesError); !ok || a.SequenceNumber != 2 || a.ErrorCode != "duplicate-share" {
		t.Fatalf("the same share again: %+v, want duplicate-share", a)
	}
	if a, ok := submit(3, []byte{0, 0, 0, 2}).(*sv2.SubmitSharesSuccess); !ok || a.LastSequenceNumber != 3 || a.NewSubmitsAcceptedCount != 1 {
		t.Fatalf("a second share: %+v", a)
	}
	shares, err := st.Shares(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 2 {
		t.Fatalf("%d ledger shares of %s, want 2 (the duplicate not credited)", len(shares), user)
	}
	for _, sh := range shares {
		if sh.JobID != strconv.FormatUint(uint64(jobID), 10) || sh.Difficulty != 1e-7 || sh.Block {
			t.Fatalf("ledger share %+v, want job %d at difficulty 1e-7, no block", sh, jobID)
		}
	}

	t.Run("expired token", func(t *testing.T) {
		tok, _, _ := cl.Allocate(user)
		clock.Add(10*time.Minute + time.Second)
		_, err := cl.Declare(d.declaration(t, tok))
		if r := refusal(err); r == nil || r.Code != "invalid-mining-job-token" {
			t.Fatalf("declaration 10 min 1 s after the allocation: %v, want invalid-mining-job-token", err)
		}
	})
}

// TestJobDeclarationPaysPPLNS: under PPLNS the required outputs are the
// window's split to the satoshi (alice 3 : bob 1 of 50 BTC); a coinbase
// 1 sat short to alice is refused, one paying both in another order with
// an extra 0-sat output is accepted, and the block found on its custom
// job records the PPLNS payout.
func TestJobDeclarationPaysPPLNS(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, sh := range []struct {
		w string
		d float64
	}{{"alice.a", 1e-5}, {"bob.b", 1e-5}, {"alice.a", 2e-5}} { // inside the window of 8 blocks of difficulty 1e-4
		if err := st.RecordShare(ctx, ledger.Share{Time: time.Now(), Worker: sh.w, Difficulty: sh.d}); err != nil {
			t.Fatal(err)
		}
	}
	// Difficulty 1e-4: a block takes about 430,000 hashes.
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, StartDifficulty: 1e-4,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	r := startPool(t, ctx, chain, chain, st, nil, func(c *coordinator.Config) { c.Payout = coordinator.PayoutPPLNS })
	cl, err := jds.Dial(ctx, r.jdAdr, sv2.XOnly(r.auth))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	alice, _ := simchain.PayoutScript("alice")
	bob, _ := simchain.PayoutScript("bob")
	tok, req, err := cl.Allocate("carol.jd")
	if err != nil {
		t.Fatal(err)
	}
	if len(req) != 2 || !bytes.Equal(req[0].PkScript, alice) || req[0].Value != 3_750_000_000 || !bytes.Equal(req[1].PkScript, bob) || req[1].Value != 1_250_000_000 {
		t.Fatalf("required outputs %v, want 3,750,000,000 sat to alice and 1,250,000,000 to bob", req)
	}
	tmpl := chain.Current()
	short := build(t, tmpl, tmpl.Height, []*wire.TxOut{wire.NewTxOut(3_749_999_999, alice), wire.NewTxOut(1_250_000_000, bob)})
	if r := refusal(func() error { _, err := cl.Declare(short.declaration(t, tok)); return err }()); r == nil || r.Code != "invalid-job-param-value-coinbase-tx-suffix" {
		t.Fatalf("alice 1 sat short: %v, want invalid-job-param-value-coinbase-tx-suffix", r)
	}
	tok, _, _ = cl.Allocate("carol.jd")
	d := build(t, tmpl, tmpl.Height, []*wire.TxOut{wire.NewTxOut(0, []byte{0x6a, 1, 'z'}), wire.NewTxOut(1_250_000_000, bob), wire.NewTxOut(3_750_000_000, alice)})
	jt, err := cl.Declare(d.declaration(t, tok))
	if err != nil {
		t.Fatalf("reordered outputs with an extra 0-sat one: %v", err)
	}
	mn := dialMiner(t, r, "carol.jd")
	m := d.custom(t, mn.ch, jt)
	jobID, code := mn.setCustom(m)
	if code != "" {
		t.Fatalf("SetCustomMiningJob refused: %s", code)
	}
	blockTarget, _ := tmpl.Target()
	mn.target = blockTarget // grind for a block
	h, _ := mn.solve(m, []byte{0, 0, 0, 9})
	mn.send(&sv2.SubmitSharesExtended{ChannelID: mn.ch, SequenceNumber: 1, JobID: jobID, Nonce: h.Nonce, NTime: h.Time, Version: h.Version, Extranonce: []byte{0, 0, 0, 9}})
	if a, ok := mn.wait(sv2.TypeSubmitSharesSuccess, sv2.TypeSubmitSharesError).(*sv2.SubmitSharesSuccess); !ok || a.NewSubmitsAcceptedCount != 1 {
		t.Fatalf("block share: %+v", a)
	}
	select {
	case ev := <-r.blocks:
		if !ev.Accepted || ev.Hash != h.Hash().String() {
			t.Fatalf("block event %+v, want %s accepted", ev, h.Hash())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no block event")
	}
	rec, ok, err := st.BlockPayouts(ctx, h.Hash())
	if err != nil || !ok || rec.Mode != coordinator.PayoutPPLNS || len(rec.Outputs) != 2 ||
		rec.Outputs[0].Label != "alice" || rec.Outputs[0].Amount != 3_750_000_000 || rec.Outputs[1].Label != "bob" || rec.Outputs[1].Amount != 1_250_000_000 {
		t.Fatalf("payout record of the custom job's block: %+v (%v, %v), want PPLNS alice 3,750,000,000 and bob 1,250,000,000", rec, ok, err)
	}
}

// TestJobDeclarationTokenFlood: a client holding 16 unused tokens is
// closed at its 17th allocation, so one client cannot push out the
// tokens of others; another client still allocates.
func TestJobDeclarationTokenFlood(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, StartDifficulty: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := startPool(t, ctx, chain, chain, st, nil, nil)
	cl, err := jds.Dial(ctx, r.jdAdr, sv2.XOnly(r.auth))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 16 {
		if _, _, err := cl.Allocate("flood"); err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
	}
	if _, _, err := cl.Allocate("flood"); err == nil {
		t.Fatal("a 17th unused token was allocated")
	}
	other, err := jds.Dial(ctx, r.jdAdr, sv2.XOnly(r.auth))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, _, err := other.Allocate("other"); err != nil {
		t.Fatalf("another client's allocation: %v", err)
	}
}
