package web_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// regtestAddr is a P2WPKH regtest address whose key hash is 20 bytes b.
func regtestAddr(t *testing.T, b byte) (string, []byte) {
	t.Helper()
	a, err := address.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{b}, 20), &chaincfg.RegressionNetParams)
	mustf(t, err, "regtest address")
	script, err := simchain.PayoutScript(a.EncodeAddress())
	mustf(t, err, "payout script of %s", a.EncodeAddress())
	if len(script) != 22 || script[0] != 0 {
		t.Fatalf("payout script of %s is %x, want P2WPKH", a.EncodeAddress(), script)
	}
	return a.EncodeAddress(), script
}

// paying returns the outputs of a coinbase that carry value.
func paying(tx *wire.MsgTx) []*wire.TxOut {
	var out []*wire.TxOut
	for _, o := range tx.TxOut {
		if o.Value > 0 {
			out = append(out, o)
		}
	}
	return out
}

// jobPays decodes the coinbase of job n (extranonce2 zero) and returns its
// paying outputs.
func jobPays(t *testing.T, m *rawMiner, n *stratum.Notify) []*wire.TxOut {
	t.Helper()
	c1, err1 := hex.DecodeString(n.Coinb1)
	c2, err2 := hex.DecodeString(n.Coinb2)
	if err1 != nil || err2 != nil {
		t.Fatalf("job %s: coinbase halves not hex", n.JobID)
	}
	raw := append(append(append(c1, m.en1...), make([]byte, m.en2Size)...), c2...)
	var tx wire.MsgTx
	mustf(t, tx.Deserialize(bytes.NewReader(raw)), "job %s coinbase", n.JobID)
	return paying(&tx)
}

// flush asks the pool something and returns the jobs that came before
// the answer: the work sent for what the miner did before.
func flush(m *rawMiner) []*stratum.Notify {
	m.t.Helper()
	n := len(m.seen)
	m.call("mining.extranonce.subscribe", []any{})
	return m.seen[n:]
}

// blockShare finds, on job n, a share that is a block (block true) or a
// share that is not one (block false).
func blockShare(t *testing.T, m *rawMiner, n *stratum.Notify, en2v byte, block bool) share {
	t.Helper()
	m.job = n
	nbits, _ := stratum.ParseHex32("nbits", n.NBits)
	bt, _ := chainmath.CompactToBig(nbits)
	blockTgt := chainmath.TargetFromBig(bt)
	for start := uint32(0); ; {
		sh := m.find(en2(m, en2v), start, true)
		h := m.header(sh.en2, sh.nonce)
		if hash := h.Hash(); blockTgt.Meets(&hash) == block {
			return sh
		}
		if sh.nonce > 1<<28 {
			t.Fatalf("no share with block=%v on job %s", block, n.JobID)
		}
		start = sh.nonce + 1
	}
}

// submitOn submits sh, found on job n, under worker.
func submitOn(m *rawMiner, n *stratum.Notify, worker string, sh share) (string, *stratum.Error) {
	m.t.Helper()
	m.job = n
	res, e := m.callErr("mining.submit", m.params(worker, sh))
	return string(res), e
}

// TestSoloTwoAddressesOneConnectionEachPaidOwnBlock (issue 20, defect 3):
// one V1 connection authorizes A.proxy1 then B.proxy2, two regtest
// addresses, in solo mode. Each gets jobs whose coinbase pays its own
// script; a share of one worker on the other's job is refused; A finds
// block 1 and B block 2, and each block's coinbase pays its finder's
// script in full, the found-block and payout records name that finder,
// and /api/miners/A and /api/miners/B each report exactly their block's
// satoshis: nothing paid twice, the total paid is the coinbases' sum.
// Before the fix both workers mined A's coinbase: block 2 paid A, was
// labelled B, and both accounts reported it.
func TestSoloTwoAddressesOneConnectionEachPaidOwnBlock(t *testing.T) {
	p := startPool(t, 1e-5, 1e-6, time.Hour)
	addrA, scriptA := regtestAddr(t, 0xaa)
	addrB, scriptB := regtestAddr(t, 0xbb)
	workerA, workerB := addrA+".proxy1", addrB+".proxy2"

	m := dialMiner(t, p.stratum, workerA)
	jobA := m.job
	if res := m.call("mining.authorize", []any{workerB, "x"}); string(res) != "true" {
		t.Fatalf("authorize %s: %s", workerB, res)
	}
	jobB := jobA
	if jobs := flush(m); len(jobs) != 1 {
		t.Errorf("jobs after authorizing a second address: %d, want 1 (its own)", len(jobs))
	} else {
		jobB = jobs[0]
	}
	if jobB.Clean || jobB.PrevHash != jobA.PrevHash {
		t.Errorf("B's job: clean %v prevhash %s, want the same work as A's, not clean", jobB.Clean, jobB.PrevHash)
	}
	check := func(who string, n *stratum.Notify, script []byte) {
		t.Helper()
		outs := jobPays(t, m, n)
		if len(outs) != 1 || !bytes.Equal(outs[0].PkScript, script) || outs[0].Value != 50e8 {
			t.Errorf("%s's job %s pays %d outputs, first %x; want 5000000000 to %x", who, n.JobID, len(outs), outs[0].PkScript, script)
		}
	}
	check("A", jobA, scriptA)
	check("B", jobB, scriptB)

	// The attack: each worker's share on the other's job.
	for _, c := range []struct {
		worker string
		job    *stratum.Notify
	}{{workerA, jobB}, {workerB, jobA}} {
		sh := blockShare(t, m, c.job, 1, false)
		res, e := submitOn(m, c.job, c.worker, sh)
		if e == nil || e.Code != stratum.CodeOther || !strings.Contains(e.Message, "pays another address than worker") {
			t.Errorf("%s's share on job %s: %s %v, want refused: the job pays another address", c.worker, c.job.JobID, res, e)
		}
	}
	// Each on its own job is a share.
	for i, c := range []struct {
		worker string
		job    *stratum.Notify
	}{{workerA, jobA}, {workerB, jobB}} {
		sh := blockShare(t, m, c.job, byte(2+i), false)
		if res, e := submitOn(m, c.job, c.worker, sh); e != nil || res != "true" {
			t.Fatalf("%s's share on its own job %s: %s %v", c.worker, c.job.JobID, res, e)
		}
	}

	// A finds block 1 on its job.
	before := len(m.seen)
	if res, e := submitOn(m, jobA, workerA, blockShare(t, m, jobA, 9, true)); e != nil || res != "true" {
		t.Fatalf("A's block: %s %v", res, e)
	}
	// The new tip's work: a clean job, then (in the same write) the
	// second address's.
	for !slices.ContainsFunc(m.seen[before:], func(n *stratum.Notify) bool { return n.Clean }) {
		m.handle(m.read())
	}
	flush(m)
	jobs := m.seen[before+slices.IndexFunc(m.seen[before:], func(n *stratum.Notify) bool { return n.Clean }):]
	jobA2, jobB2 := jobs[0], jobs[0]
	if len(jobs) != 2 || jobs[1].Clean || jobs[1].PrevHash != jobs[0].PrevHash {
		t.Errorf("jobs for block 2: %d, want 2 (A's clean, B's not)", len(jobs))
	} else {
		jobB2 = jobs[1]
	}
	check("A", jobA2, scriptA)
	check("B", jobB2, scriptB)
	// B finds block 2 on its job.
	if res, e := submitOn(m, jobB2, workerB, blockShare(t, m, jobB2, 9, true)); e != nil || res != "true" {
		t.Fatalf("B's block: %s %v", res, e)
	}

	// The chain's blocks, decoded: each coinbase pays its finder.
	found, err := p.store.FoundBlocks(context.Background(), store.FoundAccepted)
	mustf(t, err, "found blocks")
	if len(found) != 2 {
		t.Fatalf("%d accepted blocks, want 2", len(found))
	}
	want := map[int64]struct {
		finder string
		script []byte
	}{1: {workerA, scriptA}, 2: {workerB, scriptB}}
	value := map[int64]int64{}
	var sum int64
	for _, f := range found {
		var blk wire.MsgBlock
		mustf(t, blk.Deserialize(bytes.NewReader(f.Raw)), "block %d", f.Height)
		outs := paying(blk.Transactions[0])
		w := want[f.Height]
		if f.Finder != w.finder || len(outs) != 1 || !bytes.Equal(outs[0].PkScript, w.script) || outs[0].Value != 50e8 {
			t.Errorf("block %d found by %q pays %d outputs, first %x %d; want %q paid 5000000000 to %x",
				f.Height, f.Finder, len(outs), outs[0].PkScript, outs[0].Value, w.finder, w.script)
		}
		value[f.Height] = outs[0].Value
		sum += outs[0].Value
	}
	var paid int64
	for h, c := range []struct{ addr string }{{addrA}, {addrB}} {
		height := int64(h + 1)
		rep, code := getMiner(t, p, c.addr)
		if code != 200 || len(rep.Payouts) != 1 || rep.Payouts[0].Height != height || rep.Payouts[0].Amount != value[height] ||
			rep.Payouts[0].State != store.FoundAccepted || rep.PaidTotal != value[height] {
			t.Errorf("/api/miners/%s: status %d payouts %+v paid %d; want exactly block %d's %d satoshis", c.addr, code, rep.Payouts, rep.PaidTotal, height, value[height])
		}
		paid += rep.PaidTotal
	}
	if paid != sum || sum != 100e8 {
		t.Errorf("paid %d satoshis in all, the two coinbases hold %d (want 10000000000)", paid, sum)
	}
}

// TestSoloBlockUnderAnotherWorkersJobPaysTheJobsAddress (issue 20, defect
// 3, the attack): on one connection with A.proxy1 and B.proxy2, a block
// found on B's job but submitted under A's name is refused as a share of
// A's, still goes to the chain (it is a valid block), and is credited to
// the address its coinbase pays: the found-block record names B.proxy2,
// /api/miners/B reports its 50 BTC and /api/miners/A nothing. Before the
// fix there was no job of B's to mine: every job paid A.
func TestSoloBlockUnderAnotherWorkersJobPaysTheJobsAddress(t *testing.T) {
	p := startPool(t, 1e-5, 1e-6, time.Hour)
	addrA, _ := regtestAddr(t, 0xaa)
	addrB, scriptB := regtestAddr(t, 0xbb)
	workerA, workerB := addrA+".proxy1", addrB+".proxy2"
	m := dialMiner(t, p.stratum, workerA)
	jobA := m.job
	if res := m.call("mining.authorize", []any{workerB, "x"}); string(res) != "true" {
		t.Fatalf("authorize %s: %s", workerB, res)
	}
	jobB := jobA
	if jobs := flush(m); len(jobs) == 1 {
		jobB = jobs[0]
	}
	res, e := submitOn(m, jobB, workerA, blockShare(t, m, jobB, 7, true))
	if e == nil || !strings.Contains(e.Message, "pays another address than worker") {
		t.Errorf("A's block on B's job %s: %s %v, want refused as A's share", jobB.JobID, res, e)
	}
	found, err := p.store.FoundBlocks(context.Background(), store.FoundAccepted)
	mustf(t, err, "found blocks")
	if len(found) != 1 {
		t.Fatalf("%d accepted blocks, want 1: a block is submitted whoever names it", len(found))
	}
	var blk wire.MsgBlock
	mustf(t, blk.Deserialize(bytes.NewReader(found[0].Raw)), "block")
	outs := paying(blk.Transactions[0])
	if found[0].Finder != workerB || len(outs) != 1 || !bytes.Equal(outs[0].PkScript, scriptB) || outs[0].Value != 50e8 {
		t.Errorf("block found by %q pays %x %d; want credited to %q, 5000000000 to %x", found[0].Finder, outs[0].PkScript, outs[0].Value, workerB, scriptB)
	}
	if rep, _ := getMiner(t, p, addrB); len(rep.Payouts) != 1 || rep.PaidTotal != 50e8 {
		t.Errorf("/api/miners/B: payouts %+v paid %d, want the block's 5000000000", rep.Payouts, rep.PaidTotal)
	}
	if rep, _ := getMiner(t, p, addrA); len(rep.Payouts) != 0 || rep.PaidTotal != 0 {
		t.Errorf("/api/miners/A: payouts %+v paid %d, want none", rep.Payouts, rep.PaidTotal)
	}
}
