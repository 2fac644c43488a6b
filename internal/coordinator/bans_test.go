package coordinator_test

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/stratum"
)

// sendInvalid sends n shares with a malformed extranonce2 (each one the
// miner's fault) and checks each is answered with a rejection, except the
// last one when lastCloses is set: it trips the reject rule and the
// connection is closed instead.
func sendInvalid(t *testing.T, c *client, worker string, n *stratum.Notify, count int, lastCloses bool) {
	t.Helper()
	for i := range count {
		s := share{worker: worker, job: n.JobID, en2: "0000000z", ntime: n.NTime, nonce: fmt.Sprintf("%08x", i)}
		if i == count-1 && lastCloses {
			c.send(`{"id":99,"method":"mining.submit","params":["` + worker + `","` + s.job + `","` + s.en2 + `","` + s.ntime + `","` + s.nonce + `"]}`)
			expectClosed(t, c)
			return
		}
		if ok, code := c.submit(s); ok || code != stratum.CodeOther {
			t.Fatalf("invalid share %d of %s: %v %d, want rejected with %d", i, worker, ok, code, stratum.CodeOther)
		}
	}
}

// workerStats returns the accounting of one worker.
func workerStats(t *testing.T, h *harness, name string) coordinator.WorkerStats {
	t.Helper()
	for _, w := range h.coord.Status().Workers {
		if w.Name == name {
			return w
		}
	}
	t.Fatalf("worker %q not in the status", name)
	return coordinator.WorkerStats{}
}

// TestBanJudgesConnectionThenAddress: of two connections from one
// address, the one sending only invalid shares is closed and its worker
// marked, the honest one keeps mining and the address stays admitted;
// the third and fourth connection (the second and third to trip the
// rule) get the address banned, with the counts that earned it; an
// exempt address is never banned; trips older than the window are
// forgotten; Unban lifts a ban.
func TestBanJudgesConnectionThenAddress(t *testing.T) {
	const diff = 1e-7
	var offset atomic.Int64 // the test clock's lead over the real one
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	h := newHarness(t, harnessOpts{shareDiff: diff, cfg: func(c *coordinator.Config) {
		c.BanMinShares = 10
		c.BanRejectRatio = 0.9
		c.BanExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
		c.Now = now
		// BanIPAfter (3), BanWindow (10 min) and BanDuration (10 min):
		// the defaults.
	}})

	honest := h.dialFrom("127.0.0.2")
	hn := honest.ready("honest")
	mineHonest := func(from uint32) {
		t.Helper()
		for i := from; i < from+3; i++ {
			s := honest.solve(hn, i, diff, false, 0)
			s.worker = "honest"
			if ok, code := honest.submit(s); !ok {
				t.Fatalf("honest share %d rejected with %d", i, code)
			}
		}
	}

	bad1 := h.dialFrom("127.0.0.2")
	sendInvalid(t, bad1, "rig1", bad1.ready("rig1"), 10, true)
	if h.coord.Banned("127.0.0.2") {
		t.Fatal("address banned after one bad connection")
	}
	if w := workerStats(t, h, "rig1"); w.RejectCloses != 1 || w.RejectClosedAt.IsZero() || w.RejectedTotal != 10 {
		t.Fatalf("rig1 marked %d closes at %v with %d rejects, want 1 close and 10 rejects", w.RejectCloses, w.RejectClosedAt, w.RejectedTotal)
	}
	mineHonest(1)

	// Connections three and four of the address trip the rule too: the
	// fourth gets the address banned.
	bad2 := h.dialFrom("127.0.0.2")
	sendInvalid(t, bad2, "rig2", bad2.ready("rig2"), 10, true)
	if h.coord.Banned("127.0.0.2") {
		t.Fatal("address banned after two bad connections")
	}
	bad3 := h.dialFrom("127.0.0.2")
	sendInvalid(t, bad3, "rig2", bad3.ready("rig2"), 10, true)
	if !h.coord.Banned("127.0.0.2") {
		t.Fatal("address not banned after three bad connections")
	}
	expectRefused(t, h.dialFrom("127.0.0.2"), "banned")
	bans := h.coord.Bans()
	if len(bans) != 1 {
		t.Fatalf("bans %+v, want one", bans)
	}
	b := bans[0]
	if b.IP != "127.0.0.2" || b.Connections != 3 || b.Shares != 30 || b.Rejected != 30 ||
		!slices.Equal(b.Workers, []string{"rig1", "rig2"}) || b.Until.Sub(b.Since) != 10*time.Minute || b.Reason == "" {
		t.Fatalf("ban %+v, want 127.0.0.2 for 10m: 3 connections, 30 of 30 shares rejected, workers rig1 and rig2", b)
	}
	// The honest connection, already admitted, keeps mining.
	mineHonest(4)
	if w := workerStats(t, h, "honest"); w.Accepted != 6 || w.RejectCloses != 0 {
		t.Fatalf("honest worker: %d accepted, %d closes; want 6, 0", w.Accepted, w.RejectCloses)
	}

	// An exempt address: four bad connections, each closed, no ban.
	for i := range 4 {
		c := h.dialFrom("127.0.0.3")
		sendInvalid(t, c, "nat", c.ready("nat"), 10, true)
		if h.coord.Banned("127.0.0.3") {
			t.Fatalf("exempt address banned after %d bad connections", i+1)
		}
	}
	if w := workerStats(t, h, "nat"); w.RejectCloses != 4 {
		t.Fatalf("exempt worker marked %d closes, want 4", w.RejectCloses)
	}
	if n := h.dialFrom("127.0.0.3").ready("nat2"); n == nil {
		t.Fatal("exempt address not served")
	}

	// Trips older than the window do not count: two, then eleven
	// minutes, then one more is not a ban.
	for range 2 {
		c := h.dialFrom("127.0.0.4")
		sendInvalid(t, c, "slow", c.ready("slow"), 10, true)
	}
	offset.Add(int64(11 * time.Minute)) // also ends the ban of 127.0.0.2
	c := h.dialFrom("127.0.0.4")
	sendInvalid(t, c, "slow", c.ready("slow"), 10, true)
	if h.coord.Banned("127.0.0.4") {
		t.Fatal("banned for trips spread over more than the window")
	}
	if got := h.coord.Bans(); len(got) != 0 {
		t.Fatalf("bans after they expired: %+v", got)
	}

	// Unban lifts a ban at once.
	for range 3 {
		c := h.dialFrom("127.0.0.5")
		sendInvalid(t, c, "x", c.ready("x"), 10, true)
	}
	if !h.coord.Banned("127.0.0.5") {
		t.Fatal("127.0.0.5 not banned")
	}
	if !h.coord.Unban("127.0.0.5") || h.coord.Unban("127.0.0.5") {
		t.Fatal("Unban: want true once, then false")
	}
	if n := h.dialFrom("127.0.0.5").ready("x"); n == nil {
		t.Fatal("no job after the ban was lifted")
	}
}

// TestRejectRuleIgnoresOurJobChanges: rejects caused by the pool's own
// job changes never count towards the reject rule, so a miner sending
// only those is neither closed nor banned (with a rule that would close
// and ban at the first trip): stale shares after new blocks, shares on a
// job the pool has since dropped (job not found, but a job id it sent),
// and shares too easy for a job whose difficulty the pool has lowered
// since. Job ids it never sent do count.
func TestRejectRuleIgnoresOurJobChanges(t *testing.T) {
	h := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-6, cfg: func(c *coordinator.Config) {
		c.BanMinShares = 4
		c.BanRejectRatio = 0.75
		c.BanIPAfter = 1
	}})
	a, b := h.dial(), h.dial()
	a.ready("alice")
	old := b.ready("bob")
	mineBlock := func() {
		t.Helper()
		s := a.solve(a.lastJob, uint32(h.chain.Current().Height), 1e-6, true, 0)
		s.worker = "alice"
		if ok, code := a.submit(s); !ok {
			t.Fatalf("block share rejected with %d", code)
		}
		a.waitNotify()
		b.waitNotify()
	}

	// Stale: one block later, shares on the old job.
	mineBlock()
	for i := range uint32(5) {
		s := b.solve(old, 100+i, 1e-6, false, 0)
		s.worker = "bob"
		if ok, code := b.submit(s); ok || code != stratum.CodeJobNotFound {
			t.Fatalf("stale share %d: %v %d", i, ok, code)
		}
	}
	// Dropped: two blocks later the old job is gone: job not found.
	mineBlock()
	for i := range uint32(5) {
		s := b.solve(old, 200+i, 1e-6, false, 0)
		s.worker = "bob"
		if ok, code := b.submit(s); ok || code != stratum.CodeJobNotFound {
			t.Fatalf("share on a dropped job %d: %v %d", i, ok, code)
		}
	}
	// Eased: the pool lowers the difficulty (here on the miner's
	// suggestion) and the miner applies it to the job at hand at once.
	cur := b.lastJob
	if m := b.call("mining.suggest_difficulty", []float64{1e-7}); string(m.Result) != "true" {
		t.Fatalf("suggest_difficulty: %s", m.Result)
	}
	b.waitNotify()
	if b.diff != 1e-7 {
		t.Fatalf("difficulty %v after the suggestion, want 1e-7", b.diff)
	}
	easy, _ := chainmath.TargetForDifficulty(1e-6)
	for i, sent := uint32(0), 0; sent < 5; i++ {
		s := b.solve(cur, 300+i, 1e-7, false, 0)
		if easy.Meets(&s.hash) {
			continue // meets the job's own difficulty: not what we test
		}
		s.worker = "bob"
		if ok, code := b.submit(s); ok || code != stratum.CodeLowDifficulty {
			t.Fatalf("share below the old job's difficulty: %v %d", ok, code)
		}
		sent++
	}
	if h.coord.Banned("127.0.0.1") {
		t.Fatal("banned for rejects our job changes caused")
	}
	if w := workerStats(t, h, "bob"); w.RejectCloses != 0 || w.RejectedTotal != 15 {
		t.Fatalf("bob: %d closes, %d rejects; want 0, 15", w.RejectCloses, w.RejectedTotal)
	}
	// Job ids the pool never sent are the miner's fault: four of them
	// trip the rule.
	for i := range 4 {
		s := share{worker: "bob", job: "ffffff", en2: "00000000", ntime: b.lastJob.NTime, nonce: "00000000"}
		if i == 3 {
			b.send(`{"id":98,"method":"mining.submit","params":["bob","` + s.job + `","` + s.en2 + `","` + s.ntime + `","` + s.nonce + `"]}`)
			expectClosed(t, b)
			break
		}
		if ok, code := b.submit(s); ok || code != stratum.CodeJobNotFound {
			t.Fatalf("unknown job id: %v %d", ok, code)
		}
	}
	if !h.coord.Banned("127.0.0.1") {
		t.Fatal("not banned for job ids never sent")
	}
}
