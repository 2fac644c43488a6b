package coordinator_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// TestSV2ChannelsOnOneConnectionPayTheirOwnAddresses (issue 20, defect
// 3, V2): two extended channels on one V2 connection, each with its own
// regtest address as user identity, in solo mode. Each channel's job
// pays its own address; each channel finds a block, and each block's
// coinbase pays its channel's address in full, the found-block record
// names that channel's user, and the miner accounts (GET /api/miners's
// Coordinator.Miner) report exactly one block's satoshis each.
func TestSV2ChannelsOnOneConnectionPayTheirOwnAddresses(t *testing.T) {
	h := newV2Harness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7})
	var users [2]string
	var scripts [2][]byte
	for i, b := range []byte{0xaa, 0xbb} {
		a, err := address.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{b}, 20), &chaincfg.RegressionNetParams)
		if err != nil {
			t.Fatal(err)
		}
		users[i] = a.EncodeAddress() + ".rig"
		scripts[i], _ = simchain.PayoutScript(a.EncodeAddress())
	}
	c, err := h.dialV2(sv2.XOnly(h.auth))
	if err != nil {
		t.Fatal(err)
	}
	c.send(&sv2.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Flags: 1, Vendor: "test"})
	if _, ok := c.next().(*sv2.SetupConnectionSuccess); !ok {
		t.Fatal("no SetupConnection.Success")
	}
	// Job ids are per channel: the client's job map mixes the two, so
	// the jobs are kept here by channel.
	type chanState struct {
		ch     uint32
		prefix []byte
		jobs   map[uint32]*v2job
		cur    *v2job
		prev   [32]byte
	}
	var chans [2]*chanState
	byID := map[uint32]*chanState{}
	handle := func(m sv2.Message) {
		switch m := m.(type) {
		case *sv2.NewExtendedMiningJob:
			byID[m.ChannelID].jobs[m.JobID] = c.jobs[m.JobID]
		case *sv2.SetNewPrevHash:
			st := byID[m.ChannelID]
			j := st.jobs[m.JobID]
			j.active, j.activeFrom = true, m.MinNTime
			st.cur, st.prev = j, m.PrevHash
		}
	}
	// pump reads until every channel has an active job on the tip prev
	// (or on any tip when prev is zero).
	pump := func(prev [32]byte) {
		t.Helper()
		for {
			ready := true
			for _, st := range chans {
				if st != nil && (st.cur == nil || (prev != [32]byte{} && st.prev != prev)) {
					ready = false
				}
			}
			if ready {
				return
			}
			handle(c.next())
		}
	}
	for i, u := range users {
		c.open(u, true)
		st := &chanState{ch: c.ch, prefix: c.prefix, jobs: map[uint32]*v2job{}}
		chans[i], byID[c.ch] = st, st
		pump([32]byte{})
	}
	if chans[0].ch == chans[1].ch {
		t.Fatalf("both channels have id %d", chans[0].ch)
	}
	use := func(st *chanState) {
		c.ch, c.prefix, c.cur, c.prev = st.ch, st.prefix, st.cur, st.prev
	}
	pays := func(st *chanState) []*wire.TxOut {
		t.Helper()
		raw := append(append(append(append([]byte(nil), st.cur.coinb1...), st.prefix...), make([]byte, c.enSize)...), st.cur.coinb2...)
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		var out []*wire.TxOut
		for _, o := range tx.TxOut {
			if o.Value > 0 {
				out = append(out, o)
			}
		}
		return out
	}
	for i, st := range chans {
		// Each channel's block, on its job of the current tip.
		if outs := pays(st); len(outs) != 1 || !bytes.Equal(outs[0].PkScript, scripts[i]) {
			t.Fatalf("channel %d (%s): its job pays %v, want %x", st.ch, users[i], outs, scripts[i])
		}
		use(st)
		s := c.solve(st.cur, st.cur.activeFrom, st.cur.version, make([]byte, c.enSize), c.target, true, true)
		c.submit(s)
		// The answer; the new tip's jobs may come before it.
		for answered := false; !answered; {
			switch m := c.next().(type) {
			case *sv2.SubmitSharesSuccess:
				answered = m.ChannelID == st.ch && m.LastSequenceNumber == c.seq
			case *sv2.SubmitSharesError:
				t.Fatalf("channel %d's block refused: %s", st.ch, m.ErrorCode)
			default:
				handle(m)
			}
		}
		pump(s.hash)
	}

	ctx := context.Background()
	found, err := h.store.FoundBlocks(ctx, store.FoundAccepted)
	if err != nil || len(found) != 2 {
		t.Fatalf("accepted blocks %d (%v), want 2", len(found), err)
	}
	var sum, paid int64
	for _, f := range found {
		i := int(f.Height - 1)
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(f.Raw)); err != nil {
			t.Fatal(err)
		}
		var outs []*wire.TxOut
		for _, o := range blk.Transactions[0].TxOut {
			if o.Value > 0 {
				outs = append(outs, o)
			}
		}
		if i < 0 || i > 1 || f.Finder != users[i] || len(outs) != 1 || !bytes.Equal(outs[0].PkScript, scripts[i]) || outs[0].Value != 50e8 {
			t.Fatalf("block %d found by %q pays %d outputs, want %q paid 5000000000 to its script", f.Height, f.Finder, len(outs), users[i%2])
		}
		sum += outs[0].Value
		addr, _, _ := bytes.Cut([]byte(users[i]), []byte("."))
		rep, err := h.coord.Miner(ctx, string(addr))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Payouts) != 1 || rep.Payouts[0].Height != f.Height || rep.PaidTotal != outs[0].Value {
			t.Errorf("miner %s: payouts %+v paid %d, want exactly block %d's %d", addr, rep.Payouts, rep.PaidTotal, f.Height, outs[0].Value)
		}
		paid += rep.PaidTotal
	}
	if paid != sum || sum != 100e8 {
		t.Errorf("paid %d in all, the coinbases hold %d (want 10000000000)", paid, sum)
	}
}

// TestAuthorizeTooManyPayoutAddressesRefused: one V1 connection mines
// for at most 16 payout addresses, each with its own job. Every new
// address's authorize brings exactly one job (paying it); the 17th
// address is refused with error 24 naming the worker and the limit; a
// further worker of an address the connection has is still accepted,
// with no new job.
func TestAuthorizeTooManyPayoutAddressesRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial()
	c.ready("addr0.rig")
	for i := 1; i < 16; i++ {
		user := fmt.Sprintf("addr%d.rig", i)
		c.authorize(user)
		c.call("mining.extranonce.subscribe", []any{})
		var jobs []*stratum.Notify
		for _, m := range c.queue {
			if m.Method == "mining.notify" {
				n, _ := stratum.ParseNotify(m.Params)
				jobs = append(jobs, n)
			}
		}
		c.queue = nil
		script, _ := simchain.PayoutScript(fmt.Sprintf("addr%d", i))
		if len(jobs) != 1 || jobs[0].Clean || !strings.Contains(jobs[0].Coinb2, hex.EncodeToString(script)) {
			t.Fatalf("authorize %s: %d jobs, want 1 paying %x", user, len(jobs), script)
		}
	}
	m := c.call("mining.authorize", []string{"addr16.rig", "x"})
	e := m.ResponseError()
	if string(m.Result) != "false" || e == nil || e.Code != stratum.CodeUnauthorized ||
		!strings.Contains(e.Message, `worker "addr16.rig"`) || !strings.Contains(e.Message, "16 payout addresses") {
		t.Fatalf("17th address: %s %v, want false with error 24 naming the worker and the limit of 16", m.Result, e)
	}
	c.authorize("addr3.other")
	c.call("mining.extranonce.subscribe", []any{})
	if len(c.queue) != 0 {
		t.Fatalf("a worker of an address the connection has brought %d messages, want none", len(c.queue))
	}
}

// TestPPLNSWorkersOfTwoAddressesShareOneJob: under PPLNS a job's coinbase
// pays the window whoever mines it, so a connection with workers of two
// addresses gets one job, and both workers' shares on it are accepted.
func TestPPLNSWorkersOfTwoAddressesShareOneJob(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Work in the window: the jobs pay it, not a finder.
	if err := st.RecordShare(context.Background(), ledger.Share{Time: time.Now(), Worker: "carol", Difficulty: 1}); err != nil {
		t.Fatal(err)
	}
	const diff = 1e-7
	h := newHarness(t, harnessOpts{store: st, shareDiff: diff, cfg: func(c *coordinator.Config) { c.Payout = coordinator.PayoutPPLNS }})
	c := h.dial()
	n := c.ready("alice.rig")
	c.authorize("bob.rig")
	c.call("mining.extranonce.subscribe", []any{})
	if len(c.queue) != 0 {
		t.Fatalf("a second address under PPLNS brought %d messages, want no new job", len(c.queue))
	}
	for i, w := range []string{"alice.rig", "bob.rig"} {
		s := c.solve(n, uint32(i+1), diff, false, 0)
		s.worker = w
		if ok, code := c.submit(s); !ok {
			t.Fatalf("%s's share on the one PPLNS job rejected with %d", w, code)
		}
	}
}
