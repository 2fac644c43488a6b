package main

import (
	"context"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/jds"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/sv2"
)

// TestCoordinatorJobDeclarator: --jd serves job declaration under the
// --stratum2 authority key: a client checks the key, allocates a token
// (the solo payout of its user, the template's coinbase value) and
// declares an empty template on the embedded chain; --jd with --cluster
// is refused at start.
func TestCoordinatorJobDeclarator(t *testing.T) {
	f := testFlags(t.TempDir())
	f.listen.V2 = "127.0.0.1:0"
	f.jd = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); inst.wait() }()
	key, err := sv2.ParseAuthorityKey(inst.lns.SV2URL[strings.LastIndex(inst.lns.SV2URL, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := jds.Dial(ctx, inst.jdLn.Addr().String(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tok, req, err := cl.Allocate("alice.rig")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := inst.source.Current()
	alice, _ := simchain.PayoutScript("alice")
	if len(req) != 1 || req[0].Value != tmpl.CoinbaseValue || string(req[0].PkScript) != string(alice) {
		t.Fatalf("required outputs %v, want %d sat to alice", req, tmpl.CoinbaseValue)
	}
	sig, _ := txscript.NewScriptBuilder().AddInt64(tmpl.Height).Script()
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, append(sig, make([]byte, 8)...), nil))
	cb.AddTxOut(req[0])
	prefix, suffix, err := jds.SplitCoinbase(cb, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Declare(jds.Declaration{Token: tok, Version: tmpl.Version, CoinbasePrefix: prefix, CoinbaseSuffix: suffix}); err != nil {
		t.Fatalf("declaration on the embedded chain: %v", err)
	}

	g := testFlags(t.TempDir())
	g.jd, g.cluster = "127.0.0.1:0", "nats://127.0.0.1:4222"
	if err := g.check(); err == nil || !strings.Contains(err.Error(), "--jd") {
		t.Fatalf("--jd with --cluster: %v, want an error naming --jd", err)
	}
}
