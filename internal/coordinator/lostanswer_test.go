package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

// lossySource is the embedded chain with faults on alice's submissions:
// with lose set the chain takes her block and the answer is replaced by
// an error (lost on the way back); with unreachable set her block never
// reaches the chain. lookupErr, while set, is what InBestChain answers;
// lookups counts the questions.
type lossySource struct {
	*simchain.Chain
	lose, unreachable atomic.Bool
	lookupErr         atomic.Pointer[error]
	lookups           chan struct{}
}

func (s *lossySource) Submit(ctx context.Context, blk *wire.MsgBlock, finder string) error {
	if finder == "alice" && s.unreachable.Load() {
		return errors.New("submit: connection refused")
	}
	err := s.Chain.Submit(ctx, blk, finder)
	if finder == "alice" && s.lose.Load() && err == nil {
		return errors.New("submit: connection reset before the answer")
	}
	return err
}

func (s *lossySource) InBestChain(ctx context.Context, hash chainmath.Hash, height int64) (bool, error) {
	select {
	case s.lookups <- struct{}{}:
	default:
	}
	if e := s.lookupErr.Load(); e != nil {
		return false, *e
	}
	return s.Chain.InBestChain(ctx, hash, height)
}

func newLossyHarness(t *testing.T) (*harness, *lossySource, <-chan coordinator.BlockEvent) {
	var src *lossySource
	events := make(chan coordinator.BlockEvent, 8)
	h := newHarness(t, harnessOpts{
		blockDiff: 2e-6, shareDiff: 1e-7,
		source: func(c *simchain.Chain) work.Source {
			src = &lossySource{Chain: c, lookups: make(chan struct{}, 1)}
			return src
		},
		cfg: func(c *coordinator.Config) {
			c.BlockRetryMin, c.BlockRetryMax = 5*time.Millisecond, 20*time.Millisecond
			c.OnBlock = func(ev coordinator.BlockEvent) { events <- ev }
		},
	})
	return h, src, events
}

func nextBlockEvent(t *testing.T, events <-chan coordinator.BlockEvent) coordinator.BlockEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(10 * time.Second): // failure only: events come within milliseconds
		t.Fatal("no block event in 10 s")
		return coordinator.BlockEvent{}
	}
}

// TestLostSubmitAnswerEmbeddedChain is issue 20's defect 6 on the
// embedded chain, and the two other ends of the same question:
//   - the chain took alice's block but its answer was lost: the chain has
//     moved past the height because of that block, so it is accepted,
//     counted and announced (the old code abandoned it at once);
//   - alice's block never reached the chain and bob's block took the
//     height: abandoned, with a reason saying so;
//   - the same, but the chain cannot say what it holds: the block stays
//     pending (asked again on every retry) until it can, then abandoned.
func TestLostSubmitAnswerEmbeddedChain(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		h, src, events := newLossyHarness(t)
		a := h.dial()
		n := a.ready("alice")
		height := h.chain.Current().Height
		src.lose.Store(true)
		s := a.solve(n, 1, 1e-7, true, 0)
		s.worker = "alice"
		if ok, code := a.submit(s); !ok {
			t.Fatalf("block share refused with code %d", code)
		}
		ev := nextBlockEvent(t, events)
		if !ev.Accepted || ev.Reason != "" || ev.Hash != s.hash.String() || ev.Height != height {
			t.Fatalf("block event %+v, want %s at height %d accepted", ev, s.hash, height)
		}
		fb, ok, err := h.store.FoundBlock(context.Background(), s.hash)
		if err != nil || !ok || fb.State != store.FoundAccepted {
			t.Fatalf("found block %+v ok=%v err=%v, want accepted", fb, ok, err)
		}
		if st := h.coord.Status(); st.BlocksFound != 1 || st.BlocksRejected != 0 {
			t.Fatalf("status: %d found, %d rejected; want 1, 0", st.BlocksFound, st.BlocksRejected)
		}
	})
	for _, lookupFails := range []bool{false, true} {
		name := "abandoned"
		if lookupFails {
			name = "pending-while-the-chain-cannot-say"
		}
		t.Run(name, func(t *testing.T) {
			h, src, events := newLossyHarness(t)
			a, b := h.dial(), h.dial()
			na, nb := a.ready("alice"), b.ready("bob")
			height := h.chain.Current().Height
			src.unreachable.Store(true)
			if lookupFails {
				e := error(errors.New("node unreachable"))
				src.lookupErr.Store(&e)
			}
			sa := a.solve(na, 1, 1e-7, true, 0)
			sa.worker = "alice"
			if ok, code := a.submit(sa); !ok {
				t.Fatalf("alice's block share refused with code %d", code)
			}
			sb := b.solve(nb, 1, 1e-7, true, 0)
			sb.worker = "bob"
			if ok, code := b.submit(sb); !ok {
				t.Fatalf("bob's block share refused with code %d", code)
			}
			byHash := map[string]coordinator.BlockEvent{}
			if lookupFails {
				if ev := nextBlockEvent(t, events); !ev.Accepted || ev.Hash != sb.hash.String() {
					t.Fatalf("first block event %+v, want bob's %s accepted", ev, sb.hash)
				}
				// Asked three times, and pending all along.
				for i := range 3 {
					select {
					case <-src.lookups:
					case ev := <-events: // the chain was never asked
						t.Fatalf("alice's block settled before the chain was asked %d times (asked %d): %+v", 3, i, ev)
					case <-time.After(10 * time.Second): // failure only
						t.Fatalf("the chain was asked %d times in 10 s, want 3", i)
					}
				}
				if fb, _, _ := h.store.FoundBlock(context.Background(), sa.hash); fb.State != store.FoundPending || h.coord.PendingBlocks() != 1 {
					t.Fatalf("alice's block while the chain cannot say: %q with %d pending, want pending, 1", fb.State, h.coord.PendingBlocks())
				}
				select {
				case ev := <-events:
					t.Fatalf("block settled while the chain cannot say: %+v", ev)
				default:
				}
				src.lookupErr.Store(nil)
			}
			for len(byHash) < 2 {
				ev := nextBlockEvent(t, events)
				byHash[ev.Hash] = ev
				if lookupFails {
					byHash[sb.hash.String()] = coordinator.BlockEvent{Accepted: true}
				}
			}
			if ev := byHash[sb.hash.String()]; !ev.Accepted {
				t.Fatalf("bob's block event %+v, want accepted", ev)
			}
			ev := byHash[sa.hash.String()]
			if ev.Accepted || ev.Hash != sa.hash.String() || ev.Height != height || !strings.Contains(ev.Reason, "another block") {
				t.Fatalf("alice's block event %+v, want %s at height %d abandoned for another block", ev, sa.hash, height)
			}
			fb, ok, err := h.store.FoundBlock(context.Background(), sa.hash)
			if err != nil || !ok || fb.State != store.FoundAbandoned {
				t.Fatalf("alice's found block %+v ok=%v err=%v, want abandoned", fb, ok, err)
			}
			if st := h.coord.Status(); st.BlocksFound != 1 || st.BlocksRejected != 1 || h.coord.PendingBlocks() != 0 {
				t.Fatalf("status: %d found, %d rejected, %d pending; want 1, 1, 0", st.BlocksFound, st.BlocksRejected, h.coord.PendingBlocks())
			}
		})
	}
}
