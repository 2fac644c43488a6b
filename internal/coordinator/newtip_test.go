package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
	"github.com/powcoord/powcoord/internal/work"
)

// refreshOnlySource is the embedded chain with its new-block signal held
// back: a new tip reaches the coordinator only when its refresh ticker
// (JobInterval) reads Current, as when the ticker wins the work loop's
// select against a node's signal. signal delivers the late signal.
type refreshOnlySource struct {
	*simchain.Chain
	updates chan struct{}
}

func (s *refreshOnlySource) Updates() <-chan struct{} { return s.updates }

func (s *refreshOnlySource) signal() {
	select {
	case s.updates <- struct{}{}:
	default:
	}
}

// TestNewTipSeenFirstByRefreshIsClean is issue 20's defect 2: a new block
// first picked up by the refresh ticker must be a new block for every
// miner all the same. The V1 miner gets clean_jobs=true on the first job
// that builds on it, a share on an old-tip job is refused stale (code 21)
// and never reaches the ledger (so PPLNS never pays it), and the V2
// channel gets its first job on the new tip as a future job activated by
// SetNewPrevHash. The old code installed the ticker's template with
// clean=false, and the new-block signal that followed saw the same
// previous hash, so none of the three ever happened.
func TestNewTipSeenFirstByRefreshIsClean(t *testing.T) {
	var src *refreshOnlySource
	h := newV2Harness(t, harnessOpts{
		blockDiff: 2e-6, shareDiff: 1e-7,
		source: func(c *simchain.Chain) work.Source {
			src = &refreshOnlySource{Chain: c, updates: make(chan struct{}, 1)}
			return src
		},
		cfg: func(c *coordinator.Config) { c.JobInterval = 100 * time.Millisecond },
	})
	finder, bob := h.dialV1(), h.dialV1()
	nf := finder.ready("alice")
	nb := bob.ready("bob")
	v2 := h.readyV2("carol", false)
	oldRoot := v2.cur.root
	oldPrev := v2.prev
	height := h.chain.Current().Height

	// Alice's block moves the chain; the chain's signal never arrives.
	blk := finder.solve(nf, 1, 1e-7, true, 0)
	blk.worker = "alice"
	if ok, code := finder.submit(blk); !ok {
		t.Fatalf("block share refused with code %d", code)
	}
	if got := h.chain.Current().Height; got != height+1 {
		t.Fatalf("chain height %d after the block, want %d", got, height+1)
	}

	// V1: the first job on the new tip (sent by the ticker) is clean.
	for _, c := range []*client{finder, bob} {
		for {
			n := c.waitNotify()
			prev, _ := chainmath.ParseStratumPrevHash(n.PrevHash)
			if prev != blk.hash {
				continue
			}
			if !n.Clean {
				t.Errorf("first job on the new tip %s: clean_jobs=false, want true", blk.hash)
			}
			break
		}
	}
	// The node's late new-block signal finds nothing new.
	src.signal()
	bob.waitNotify()

	// Bob's share on the job of the old tip: stale, and not in the ledger.
	sb := bob.solve(nb, 1, 1e-7, false, 0)
	sb.worker = "bob"
	m := bob.call("mining.submit", sb.params())
	e := m.ResponseError()
	if e == nil || e.Code != stratum.CodeJobNotFound || !strings.Contains(e.Message, "stale") {
		t.Errorf("share on the old tip's job %s: result %s error %+v, want code %d (stale)", nb.JobID, m.Result, e, stratum.CodeJobNotFound)
	}
	shares, err := h.store.Shares(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shares {
		if s.Hash == sb.hash {
			t.Errorf("stale share %s is in the ledger: PPLNS would pay it", sb.hash)
		}
	}
	if len(shares) != 0 {
		t.Errorf("ledger has %d shares of bob, want 0 (his only share was stale)", len(shares))
	}

	// V2: the first job with the new coinbase (new height) is a future
	// job, and SetNewPrevHash for the new tip activates it.
	for {
		j, ok := v2.next().(*sv2.NewMiningJob)
		if !ok || chainmath.Hash(j.MerkleRoot) == oldRoot {
			continue
		}
		if j.MinNTime.Valid {
			t.Fatalf("first V2 job on the new tip (job %d) is active at once with no SetNewPrevHash: the channel still has prev %s, want %s", j.JobID, v2.prev, blk.hash)
		}
		p, ok := v2.next().(*sv2.SetNewPrevHash)
		if !ok || chainmath.Hash(p.PrevHash) != blk.hash || p.JobID != j.JobID {
			t.Fatalf("after the future job %d: %+v, want SetNewPrevHash to %s for it", j.JobID, p, blk.hash)
		}
		break
	}
	if v2.prev == oldPrev || v2.prev != blk.hash {
		t.Fatalf("V2 channel prev %s, want the new tip %s", v2.prev, blk.hash)
	}
	if got := h.coord.Status().BlocksFound; got != 1 {
		t.Fatalf("blocks found %d, want 1", got)
	}
}
