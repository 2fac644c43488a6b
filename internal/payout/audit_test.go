package payout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/payout/payouttest"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// auditFixture is a SQLite ledger with a PPLNS block recorded on it
// (window 8 blocks of difficulty 1, a 1% fee) and shares recorded after
// the block, and the block's window download.
type auditFixture struct {
	st       *store.Store
	shares   []ledger.Share // every share, oldest first
	cutoff   int64
	rec      ledger.PayoutRecord
	outs     []*wire.TxOut
	download []byte
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chain.Close() })
	f := &auditFixture{st: st}
	record := func(i int) {
		workers := []string{"alice.rig1", "bob", "carol.x", "alice.rig2", "dave"}
		sh := ledger.Share{Time: time.Now(), Worker: workers[i%len(workers)], Difficulty: 0.25 + float64(i%7)*0.125,
			Hash: chainmath.Hash{byte(i), byte(i >> 8), 0xaa}}
		if i == 55 {
			sh.Worker = ".rig" // cannot be paid: skipped, and listed
		}
		if err := st.RecordShare(ctx, sh); err != nil {
			t.Fatal(err)
		}
		f.shares = append(f.shares, sh)
	}
	for i := range 60 {
		record(i)
	}
	pool, _ := simchain.PayoutScript("pool")
	plan, err := payout.NewPlan(payout.Rules{Window: 8, FeeBasisPoints: 100, FeeScript: pool}, st, chain.PayoutScript, log)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := chain.Current()
	outs, rec, err := plan.Job(ctx, tmpl)
	if err != nil || rec == nil {
		t.Fatalf("Job: %v %v", rec, err)
	}
	f.outs, f.cutoff = outs, rec.Cutoff
	blk := wire.NewMsgBlock(&wire.BlockHeader{Version: 0x20000000, Bits: tmpl.Bits})
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(&wire.TxIn{SignatureScript: []byte{0x01, byte(tmpl.Height)}, Sequence: 0xffffffff})
	for _, o := range outs {
		cb.AddTxOut(o)
	}
	blk.AddTransaction(cb)
	if err := plan.Record(ctx, blk, "alice.rig1", rec); err != nil {
		t.Fatal(err)
	}
	var ok bool
	if f.rec, ok, err = st.BlockPayouts(ctx, chainmath.Hash(blk.BlockHash())); err != nil || !ok {
		t.Fatalf("BlockPayouts: %v %v", ok, err)
	}
	for i := 60; i < 70; i++ { // after the block: not in its window
		record(i)
	}
	var buf bytes.Buffer
	if err := payout.WriteWindow(ctx, &buf, st, f.rec.Hash, plan.ScriptOf); err != nil {
		t.Fatal(err)
	}
	f.download = buf.Bytes()
	return f
}

// TestWindowDownloadVerifies: the window download of a PPLNS block on
// SQLite starts at the block's cutoff (60: the 10 shares recorded after
// the block are not in it), lists the unpayable share without a script,
// and payout.Verify recomputes from it exactly the outputs the block
// pays, which an independent recomputation (payouttest) from the ledger
// also gives.
func TestWindowDownloadVerifies(t *testing.T) {
	f := newAuditFixture(t)
	lines := strings.Split(strings.TrimSuffix(string(f.download), "\n"), "\n")
	var head payout.WindowHead
	if err := json.Unmarshal([]byte(lines[0]), &head); err != nil {
		t.Fatal(err)
	}
	if f.cutoff != 60 || head.Block.Cutoff != 60 || head.Block.Rules.Window != 8 || head.Block.Rules.FeeBasisPoints != 100 || head.Block.Rules.MaxOutputs != payout.DefaultMaxOutputs {
		t.Fatalf("cutoff %d, head %+v", f.cutoff, head.Block)
	}
	var first, skipped payout.WindowShare
	json.Unmarshal([]byte(lines[1]), &first)
	if first.ID != 60 || first.Worker != f.shares[59].Worker || first.Difficulty != f.shares[59].Difficulty || first.Hash != f.shares[59].Hash.String() {
		t.Fatalf("first share %+v, want share 60 %+v", first, f.shares[59])
	}
	for _, l := range lines[1:] {
		var s payout.WindowShare
		json.Unmarshal([]byte(l), &s)
		if s.ID == 56 {
			skipped = s
		}
	}
	v, err := payout.Verify(bytes.NewReader(f.download))
	if err != nil {
		t.Fatal(err)
	}
	if v.Shares != len(lines)-2 || v.Height != f.rec.Height || len(v.Outputs) != len(f.outs) {
		t.Fatalf("verified %+v from %d lines", v, len(lines))
	}
	for i, o := range v.Outputs {
		if o.Value != f.outs[i].Value || !bytes.Equal(o.Script, f.outs[i].PkScript) {
			t.Fatalf("output %d: verify %d to %x, the block %d to %x", i, o.Value, o.Script, f.outs[i].Value, f.outs[i].PkScript)
		}
	}
	pool, _ := simchain.PayoutScript("pool")
	want, err := payouttest.Recompute(f.shares, f.cutoff, 0x1d00ffff, f.rec.Value, payouttest.Rules{Window: 8, FeeBP: 100, FeeScript: pool, Dust: 546, MaxOutputs: 39,
		ScriptOf: func(w string) []byte { s, _ := simchain.PayoutScript(ledger.AccountOf(w)); return s }})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(want) != fmt.Sprint(outsOf(f.outs)) {
		t.Fatalf("the block pays %v, payouttest recomputes %v", outsOf(f.outs), want)
	}
	if v.Skipped != 1 || skipped.Worker != ".rig" || skipped.Script != "" {
		t.Fatalf("skipped %d, share 56 %+v: want the unpayable share listed without a script", v.Skipped, skipped)
	}
}

func outsOf(outs []*wire.TxOut) []payouttest.Out {
	var o []payouttest.Out
	for _, x := range outs {
		o = append(o, payouttest.Out{Script: x.PkScript, Value: x.Value})
	}
	return o
}

// TestWindowDownloadTampered: a download with a share's difficulty
// raised, a share moved to another address, a share removed, or its end
// cut off fails payouts verify with a message naming what differs.
func TestWindowDownloadTampered(t *testing.T) {
	f := newAuditFixture(t)
	lines := strings.Split(strings.TrimSuffix(string(f.download), "\n"), "\n")
	edit := func(i int, fn func(*payout.WindowShare)) []string {
		var s payout.WindowShare
		if err := json.Unmarshal([]byte(lines[i]), &s); err != nil {
			t.Fatal(err)
		}
		fn(&s)
		b, _ := json.Marshal(s)
		out := append([]string(nil), lines...)
		out[i] = string(b)
		return out
	}
	var bobScript string
	for _, l := range lines[1:] {
		var s payout.WindowShare
		json.Unmarshal([]byte(l), &s)
		if s.Address == "bob" {
			bobScript = s.Script
		}
	}
	for _, c := range []struct {
		name  string
		lines []string
		want  []string
	}{
		{"difficulty raised", edit(3, func(s *payout.WindowShare) { s.Difficulty *= 4 }), []string{"output 0", "the block pays", "the window's shares give"}},
		{"address changed", edit(2, func(s *payout.WindowShare) { s.Worker, s.Address = "bob", "bob" }), []string{`address "bob" is paid to script`}},
		{"address and script changed", edit(2, func(s *payout.WindowShare) { s.Worker, s.Address, s.Script = "bob", "bob", bobScript }), []string{"the window's shares give"}},
		{"share removed", append(append([]string(nil), lines[:4]...), lines[5:]...), []string{"the end line counts", "the window's shares give"}},
		{"end cut off", lines[:len(lines)-1], []string{"cut short"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := payout.Verify(strings.NewReader(strings.Join(c.lines, "\n") + "\n"))
			var me *payout.MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("Verify: %v, want a mismatch", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			t.Log(err)
		})
	}
	// Bad lines are named by number.
	bad := append(append([]string(nil), lines[:5]...), `{"id": "x"}`)
	if _, err := payout.Verify(strings.NewReader(strings.Join(bad, "\n"))); err == nil || !strings.Contains(err.Error(), "line 6: share") {
		t.Fatalf("a bad share line: %v", err)
	}
}

// FuzzVerify: any input is a clean error or a verdict, never a crash;
// the seeds in testdata/fuzz/FuzzVerify (a real download among them) are
// replayed by go test.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"format":"powcoord-pplns-window/1","block":{"hash":"00","height":1,"mode":"pplns","cutoff":2,"window_size":"1","value":100,"rules":{"window_blocks":1,"bits":"207fffff","fee_basis_points":0,"dust":1,"max_outputs":2},"outputs":[]}}` + "\n" + `{"id":1,"worker":"a","address":"a","script":"51","difficulty":1}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		payout.Verify(bytes.NewReader(data))
	})
}
