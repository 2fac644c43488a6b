package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// firstShares is what a miner that resets extranonce2 on every new job id
// finds first: extranonce2 0, the job's ntime, nonces counted up from 0.
func (c *client) firstShares(n *stratum.Notify, diff float64, count int) []share {
	c.t.Helper()
	var out []share
	ntime, _ := stratum.ParseHex32("ntime", n.NTime)
	start := uint32(0)
	for len(out) < count {
		s := c.solveNonces(n, 0, diff, false, 0, ntime, start)
		s.worker = "alice"
		out = append(out, s)
		nonce, _ := stratum.ParseHex32("nonce", s.nonce)
		start = nonce + 1
	}
	return out
}

// TestRetargetNeverReissuesIdenticalWork is a V1 miner that resets
// extranonce2 on every job id (cpuminer-opt, bfgminer, ESP-Miner) under a
// vardiff retarget and a suggest_difficulty back to the first difficulty:
// each new job must be new work, so the shares it finds first are never
// the ones it sent before. Before the per-job coinbase variant, the job
// at the first difficulty again had the first job's coinbase, and its
// first shares were refused as duplicates (code 22).
func TestRetargetNeverReissuesIdenticalWork(t *testing.T) {
	const d = 4e-7
	clock := &testClock{}
	h := newHarness(t, harnessOpts{shareDiff: d, cfg: func(c *coordinator.Config) {
		c.SharesPerMinute = 6
		c.VardiffInterval = time.Minute
		c.Now = clock.now
		c.BanMinShares = -1
	}})
	c := h.dial()
	n1 := c.ready("alice")
	accepted, rejected := 0, 0
	submitAll := func(ss []share) {
		t.Helper()
		for _, s := range ss {
			if ok, code := c.submit(s); ok {
				accepted++
			} else {
				rejected++
				t.Errorf("share %s/%s refused with %d", s.job, s.nonce, code)
			}
		}
	}
	submitAll(c.firstShares(n1, d, 3))

	// Vardiff: ten intervals of few shares lower the difficulty 4x.
	clock.advance(10 * time.Minute)
	fourth := c.firstShares(n1, d, 4)[3]
	submitAll([]share{fourth})
	n2 := c.waitNotify()
	if c.diff != d/4 || n2.Clean || n2.JobID == n1.JobID {
		t.Fatalf("after vardiff: difficulty %v (want %v), job %+v", c.diff, d/4, n2)
	}
	if n2.Coinb2 == n1.Coinb2 {
		t.Errorf("the vardiff job re-sends the first job's coinbase %s", n2.Coinb2)
	}
	submitAll(c.firstShares(n2, d/4, 3))

	// Bitaxe-style suggest_difficulty back to the first difficulty.
	if m := c.call("mining.suggest_difficulty", []any{d}); string(m.Result) != "true" {
		t.Fatalf("suggest_difficulty: %s %s", m.Result, m.Error)
	}
	n3 := c.waitNotify()
	if c.diff != d || n3.Coinb2 == n1.Coinb2 || n3.Coinb2 == n2.Coinb2 {
		t.Errorf("after suggest_difficulty: difficulty %v, coinb2 %s (first %s, second %s)", c.diff, n3.Coinb2, n1.Coinb2, n2.Coinb2)
	}
	submitAll(c.firstShares(n3, d, 4))
	if accepted != 11 || rejected != 0 {
		t.Fatalf("accepted %d, rejected %d; want 11 and 0", accepted, rejected)
	}
	// Every share is in the ledger once, each with its own header.
	shares, err := h.store.Shares(t.Context(), "alice")
	if err != nil || len(shares) != 11 {
		t.Fatalf("ledger holds %d shares (%v), want 11", len(shares), err)
	}
	seen := map[string]bool{}
	for _, s := range shares {
		if seen[s.Hash.String()] {
			t.Fatalf("hash %s twice in the ledger", s.Hash)
		}
		seen[s.Hash.String()] = true
	}
}

// TestVersionMaskBIP323 checks version rolling under BIP 323: a V1 miner
// asking ffffffff is granted 1fffffe0 and may roll bit 5; a bit outside
// the mask is still refused; a BIP 320 miner keeps its 1fffe000; an
// operator's narrower --version-mask is what is granted.
func TestVersionMaskBIP323(t *testing.T) {
	const diff = 1e-7
	h := newHarness(t, harnessOpts{shareDiff: diff})
	grant := func(c *client, ask string) string {
		t.Helper()
		m := c.call("mining.configure", []any{[]string{"version-rolling"}, map[string]any{"version-rolling.mask": ask}})
		var conf map[string]any
		json.Unmarshal(m.Result, &conf)
		got, _ := conf["version-rolling.mask"].(string)
		return got
	}
	c := h.dial()
	if got := grant(c, "ffffffff"); got != "1fffffe0" {
		t.Fatalf("mask ffffffff granted %q, want 1fffffe0", got)
	}
	n := c.ready("alice")
	s := c.solve(n, 1, diff, false, 0x20) // bit 5: BIP 323, not BIP 320
	s.worker = "alice"
	if ok, code := c.submit(s); !ok {
		t.Fatalf("share rolling bit 5 refused with %d", code)
	}
	s = c.solve(n, 2, diff, false, 0x10) // bit 4: outside
	s.worker = "alice"
	if ok, code := c.submit(s); ok || code != stratum.CodeOther {
		t.Fatalf("share rolling bit 4: accepted=%v code=%d, want refused", ok, code)
	}
	if got := grant(h.dial(), "1fffe000"); got != "1fffe000" {
		t.Fatalf("BIP 320 mask granted %q", got)
	}

	narrow := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) { c.VersionMask = 0x00ffff00 }})
	if got := grant(narrow.dial(), "ffffffff"); got != "00ffff00" {
		t.Fatalf("with VersionMask 00ffff00, ffffffff granted %q", got)
	}
	if _, err := coordinator.New(coordinator.Config{Source: narrow.chain, Store: narrow.store, VersionMask: 0x3fffffe0}); err == nil {
		t.Fatal("a version mask with bit 29 was accepted")
	}
}

// TestSV2RetargetIsNewWorkAndBIP323: a V2 channel's new target comes with
// a new job that is other work (another coinbase, so another merkle
// root): an extended miner that starts its extranonce again, and a
// standard one counting nonces from 0, find new shares, never the ones
// already sent. Both channel kinds may roll BIP 323's bit 5; a bit
// outside 1fffffe0 is still refused.
func TestSV2RetargetIsNewWorkAndBIP323(t *testing.T) {
	const d = 4e-7
	for _, extended := range []bool{false, true} {
		clock := &testClock{}
		h := newV2Harness(t, harnessOpts{shareDiff: d, cfg: func(c *coordinator.Config) {
			c.SharesPerMinute = 6
			c.VardiffInterval = time.Minute
			c.Now = clock.now
			c.BanMinShares = -1
		}})
		c := h.readyV2("v2miner", extended)
		en := make([]byte, c.enSize)
		ok := func(s v2share, what string) {
			t.Helper()
			c.submit(s)
			if code := c.result(); code != "" {
				t.Fatalf("extended=%v: %s refused: %s", extended, what, code)
			}
		}
		j1 := c.cur
		first := c.solve(j1, j1.activeFrom, j1.version, en, c.target, true, false)
		ok(first, "first share")
		ok(c.solve(j1, j1.activeFrom, j1.version|0x20, en, c.target, true, false), "share rolling bit 5")
		c.submit(c.solve(j1, j1.activeFrom, j1.version|0x10, en, c.target, true, false))
		if code := c.result(); code != coordinator.SV2ErrVersion {
			t.Fatalf("extended=%v: share rolling bit 4 answered %q, want %s", extended, code, coordinator.SV2ErrVersion)
		}
		// Ten quiet intervals: the next share lowers the difficulty 4x.
		clock.advance(10 * time.Minute)
		ok(c.solve(j1, j1.activeFrom+1, j1.version, en, c.target, true, false), "share before the retarget")
		oldTarget := c.target
		for c.cur == j1 {
			c.next()
		}
		j2 := c.cur
		if c.target == oldTarget {
			t.Fatalf("extended=%v: no SetTarget before the new job", extended)
		}
		if extended && string(j2.coinb2) == string(j1.coinb2) || !extended && j2.root == j1.root {
			t.Fatalf("extended=%v: the re-targeted job %d repeats job %d's work", extended, j2.id, j1.id)
		}
		// The miner starts over on the new job: its first share is new.
		again := c.solve(j2, j2.activeFrom, j2.version, en, c.target, true, false)
		if again.hash == first.hash {
			t.Fatalf("extended=%v: first share of the new job is the old one", extended)
		}
		ok(again, "first share of the re-targeted job")
	}
}

// batchCounter is a BatchLedger over a *store.Store (a cluster
// front-end's share log stands in the same place) that counts its calls.
type batchCounter struct {
	*store.Store
	mu             sync.Mutex
	singles        int // RecordShare calls
	batches, moved int // RecordShareBatch calls and the shares they carried
}

func (b *batchCounter) RecordShare(ctx context.Context, sh ledger.Share) error {
	b.mu.Lock()
	b.singles++
	b.mu.Unlock()
	return b.Store.RecordShare(ctx, sh)
}

func (b *batchCounter) RecordShareBatch(ctx context.Context, shares []ledger.Share) error {
	b.mu.Lock()
	b.batches++
	b.moved += len(shares)
	b.mu.Unlock()
	return b.Store.RecordShares(ctx, shares)
}

// TestSV2SharesCommittedInBatches: a burst of V2 shares reaches a batch
// ledger (a front-end's share log) in batch calls, never one RecordShare
// per share (V2 used to batch only for a *store.Store).
func TestSV2SharesCommittedInBatches(t *testing.T) {
	var bc *batchCounter
	h := newV2Harness(t, harnessOpts{cfg: func(c *coordinator.Config) {
		bc = &batchCounter{Store: c.Store.(*store.Store)}
		c.Store = bc
	}})
	c := h.readyV2("burst", true)
	const n = 12
	var msgs []sv2.Message
	j := c.cur
	for i := range n {
		en := []byte{0, 0, 0, byte(i)}
		s := c.solve(j, j.activeFrom, j.version, en, c.target, true, false)
		c.seq++
		msgs = append(msgs, &sv2.SubmitSharesExtended{ChannelID: c.ch, SequenceNumber: c.seq, JobID: s.job, Nonce: s.nonce, NTime: s.ntime, Version: s.version, Extranonce: s.en})
	}
	c.send(msgs...)
	for done := false; !done; {
		switch m := c.next().(type) {
		case *sv2.SubmitSharesSuccess:
			done = m.LastSequenceNumber == c.seq
		case *sv2.SubmitSharesError:
			t.Fatalf("share %d refused: %s", m.SequenceNumber, m.ErrorCode)
		}
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.singles != 0 || bc.moved != n || bc.batches < 1 || bc.batches >= n {
		t.Fatalf("%d shares: %d RecordShare calls, %d batch calls carrying %d; want 0 and a few carrying %d", n, bc.singles, bc.batches, bc.moved, n)
	}
	t.Logf("%d V2 shares in %d batch commits", n, bc.batches)
}

// TestSV2AnswersInSequenceOrder: V2 shares now go through the one share
// path's queue, answered when the ledger settles (in as many commits as
// it takes); a rejection in the middle of a burst must not overtake the
// acknowledgement of the accepted shares before it, and those after it
// are acknowledged after it: every success before Error(3) ends at 1 or
// 2, every one after at 4, and three shares are acknowledged in all.
func TestSV2AnswersInSequenceOrder(t *testing.T) {
	h := newV2Harness(t, harnessOpts{})
	c := h.readyV2("order", true)
	j := c.cur
	var msgs []sv2.Message
	for i, meets := range []bool{true, true, false, true} {
		s := c.solve(j, j.activeFrom, j.version, []byte{0, 0, 1, byte(i)}, c.target, meets, false)
		c.seq++
		msgs = append(msgs, &sv2.SubmitSharesExtended{ChannelID: c.ch, SequenceNumber: c.seq, JobID: s.job, Nonce: s.nonce, NTime: s.ntime, Version: s.version, Extranonce: s.en})
	}
	first := c.seq - 3
	c.send(msgs...)
	var got []string
	acked, errored := uint32(0), false
	for acked < 3 || !errored {
		switch m := c.next().(type) {
		case *sv2.SubmitSharesSuccess:
			last := m.LastSequenceNumber - first + 1
			got = append(got, fmt.Sprintf("ok last=%d count=%d", last, m.NewSubmitsAcceptedCount))
			acked += m.NewSubmitsAcceptedCount
			if (!errored && last > 2) || (errored && last != 4) {
				t.Fatalf("answers out of sequence order: %q", got)
			}
		case *sv2.SubmitSharesError:
			got = append(got, fmt.Sprintf("error %d %s", m.SequenceNumber-first+1, m.ErrorCode))
			if m.SequenceNumber-first+1 != 3 || m.ErrorCode != coordinator.SV2ErrLowDifficulty || errored {
				t.Fatalf("answers %q: want one error, for share 3, %s", got, coordinator.SV2ErrLowDifficulty)
			}
			errored = true
		}
	}
	if acked != 3 {
		t.Fatalf("answers %q: %d shares acknowledged, want 3", got, acked)
	}
	t.Logf("answers %q", got)
}
