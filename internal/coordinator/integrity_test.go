package coordinator_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/work"
)

// These tests pin the integrity defects of issue 9: the same work paid
// twice, a share lost after a ledger failure, a block lost while the
// chain could not be asked, and the ntime limit a template carries.

// TestDuplicateSameWorkUnderAnotherJobID: a header accepted under one job
// id is a duplicate when sent again, however spelt; the job a difficulty
// change sends is other work (another coinbase variant), so the same
// extranonce2, ntime and nonce under it make another header, judged on
// its own (the same header under two job ids of one epoch is
// TestDuplicateAcrossJobRefresh).
func TestDuplicateSameWorkUnderAnotherJobID(t *testing.T) {
	h := newHarness(t, harnessOpts{shareDiff: 1e-7})
	c := h.dial()
	n := c.ready("alice")
	s := c.solve(n, 1, 1e-7, false, 0)
	s.worker = "alice"
	if ok, code := c.submit(s); !ok {
		t.Fatalf("first share rejected with %d", code)
	}
	// The same work spelt differently (upper-case hex) is the same header.
	s3 := s
	s3.en2, s3.nonce, s3.ntime = strings.ToUpper(s.en2), strings.ToUpper(s.nonce), strings.ToUpper(s.ntime)
	if ok, code := c.submit(s3); ok || code != stratum.CodeDuplicate {
		t.Fatalf("same header in upper-case hex: accepted=%v code=%d, want duplicate", ok, code)
	}
	if m := c.call("mining.suggest_difficulty", []float64{5e-8}); string(m.Result) != "true" {
		t.Fatalf("suggest_difficulty: %s", m.Result)
	}
	n2 := c.waitNotify()
	if n2.JobID == n.JobID || n2.PrevHash != n.PrevHash || n2.Coinb2 == n.Coinb2 {
		t.Fatalf("second job %+v, want another id and other work than %+v", n2, n)
	}
	s2 := s
	s2.job = n2.JobID
	if _, code := c.submit(s2); code == stratum.CodeDuplicate {
		t.Fatalf("the same fields under job %s were judged a duplicate: the re-targeted job repeats the work", n2.JobID)
	}
	if got := shareCount(t, h.store); got > 2 {
		t.Fatalf("ledger holds %d shares, want at most 2", got)
	}
}

// TestDuplicateAcrossJobRefresh is defect 1: the job refresh (a new epoch
// of the same template, every JobInterval) must not make old work payable
// again. The miner rolled ntime forward, so the refreshed job's ntime does
// not exclude it; only the header hash can tell.
func TestDuplicateAcrossJobRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{shareDiff: 1e-7, pipe: true, cfg: func(c *coordinator.Config) {
			c.JobInterval = 5 * time.Second
		}})
		c := h.dial()
		n := c.ready("alice")
		nt, _ := stratum.ParseHex32("ntime", n.NTime)
		s := c.solveAt(n, 1, 1e-7, false, 0, nt+8) // rolled 8 s ahead
		s.worker = "alice"
		if ok, code := c.submit(s); !ok {
			t.Fatalf("first share rejected with %d", code)
		}
		time.Sleep(6 * time.Second) // past JobInterval: the refresh goes out
		n2 := c.waitNotify()
		nt2, _ := stratum.ParseHex32("ntime", n2.NTime)
		if n2.Clean || n2.JobID == n.JobID || nt2 <= nt || nt2 > nt+8 {
			t.Fatalf("refreshed job %+v (ntime %d), first job's ntime %d", n2, nt2, nt)
		}
		s2 := s
		s2.job = n2.JobID
		if ok, code := c.submit(s2); ok || code != stratum.CodeDuplicate {
			t.Fatalf("same header under the refreshed job %s: accepted=%v code=%d, want duplicate (%d)", n2.JobID, ok, code, stratum.CodeDuplicate)
		}
		// New work under the refreshed job is still paid.
		s3 := c.solve(n2, 2, 1e-7, false, 0)
		s3.worker = "alice"
		if ok, code := c.submit(s3); !ok {
			t.Fatalf("new share under the refreshed job rejected with %d", code)
		}
		if got := shareCount(t, h.store); got != 2 {
			t.Fatalf("ledger holds %d shares, want 2", got)
		}
	})
}

// failingLedger fails the next fail calls of RecordShare.
type failingLedger struct {
	*store.Store
	mu   sync.Mutex
	fail int
}

func (l *failingLedger) RecordShare(ctx context.Context, sh ledger.Share) error {
	l.mu.Lock()
	fail := l.fail > 0
	if fail {
		l.fail--
	}
	l.mu.Unlock()
	if fail {
		return errors.New("disk I/O error (injected)")
	}
	return l.Store.RecordShare(ctx, sh)
}

// TestShareAfterLedgerFailureIsNotDuplicate is defect 4: a share whose
// ledger write failed was told false, so sending it again must be
// accepted (and only then is a third copy a duplicate).
func TestShareAfterLedgerFailureIsNotDuplicate(t *testing.T) {
	var led *failingLedger
	h := newHarness(t, harnessOpts{shareDiff: 1e-7, cfg: func(c *coordinator.Config) {
		led = &failingLedger{Store: c.Store.(*store.Store), fail: 1}
		c.Store = led
	}})
	c := h.dial()
	n := c.ready("alice")
	s := c.solve(n, 1, 1e-7, false, 0)
	s.worker = "alice"
	if ok, code := c.submit(s); ok || code != stratum.CodeOther {
		t.Fatalf("share during a ledger failure: accepted=%v code=%d, want false with code %d", ok, code, stratum.CodeOther)
	}
	if ok, code := c.submit(s); !ok {
		t.Fatalf("the same share resent after the failure: rejected with %d, want accepted", code)
	}
	if ok, code := c.submit(s); ok || code != stratum.CodeDuplicate {
		t.Fatalf("third copy: accepted=%v code=%d, want duplicate", ok, code)
	}
	if got := shareCount(t, h.store); got != 1 {
		t.Fatalf("ledger holds %d shares, want 1", got)
	}
	st := h.coord.Status()
	if len(st.Workers) != 1 || st.Workers[0].Accepted != 1 || st.Workers[0].Rejected[coordinator.ReasonLedger] != 1 || st.Workers[0].Rejected[coordinator.ReasonDuplicate] != 1 {
		t.Fatalf("worker stats %+v", st.Workers)
	}
}

func shareCount(t *testing.T, st *store.Store) int64 {
	t.Helper()
	n, err := st.ShareCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// flakySource is the embedded chain behind a link that can be cut: while
// down (for every block, or for given hashes) Submit fails the way an
// unreachable node does, without the chain seeing the block.
type flakySource struct {
	work.Source
	mu      sync.Mutex
	downAll bool
	downFor map[chainmath.Hash]bool
	tries   map[chainmath.Hash]int
	maxTime uint32 // if set, templates carry MaxTime = CurTime + maxTime
}

func newFlaky(chain *simchain.Chain) *flakySource {
	return &flakySource{Source: chain, downFor: map[chainmath.Hash]bool{}, tries: map[chainmath.Hash]int{}}
}

func (f *flakySource) setDown(down bool) {
	f.mu.Lock()
	f.downAll = down
	f.mu.Unlock()
}

func (f *flakySource) Submit(ctx context.Context, blk *wire.MsgBlock, finder string) error {
	hash := chainmath.Hash(blk.BlockHash())
	f.mu.Lock()
	f.tries[hash]++
	down := f.downAll || f.downFor[hash]
	f.mu.Unlock()
	if down {
		return fmt.Errorf("submitting block %s: dial tcp 127.0.0.1:18556: connect: connection refused (injected)", hash)
	}
	return f.Source.Submit(ctx, blk, finder)
}

func (f *flakySource) Current() *work.Template {
	t := f.Source.Current()
	if f.maxTime == 0 {
		return t
	}
	c := *t
	c.MaxTime = c.CurTime + f.maxTime
	return &c
}

func (f *flakySource) triesOf(h chainmath.Hash) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[h]
}

func foundState(t *testing.T, st *store.Store, h chainmath.Hash) store.FoundBlock {
	t.Helper()
	fb, ok, err := st.FoundBlock(context.Background(), h)
	if err != nil || !ok {
		t.Fatalf("found block %s: recorded=%v err=%v", h, ok, err)
	}
	return fb
}

// TestBlockFoundWhileSourceUnreachable is defect 3: the block is recorded
// before it is submitted, stays pending while the chain cannot be asked,
// and is submitted again with backoff until the chain takes it.
func TestBlockFoundWhileSourceUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var src *flakySource
		var events []coordinator.BlockEvent
		var evMu sync.Mutex
		h := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, pipe: true,
			source: func(c *simchain.Chain) work.Source { src = newFlaky(c); src.setDown(true); return src },
			cfg: func(c *coordinator.Config) {
				c.BlockRetryMin, c.BlockRetryMax = time.Second, 4*time.Second
				c.OnBlock = func(ev coordinator.BlockEvent) { evMu.Lock(); events = append(events, ev); evMu.Unlock() }
			}})
		c := h.dial()
		n := c.ready("alice")
		height := h.chain.Current().Height
		s := c.solve(n, 1, 1e-7, true, 0)
		s.worker = "alice"
		if ok, code := c.submit(s); !ok {
			t.Fatalf("block share rejected with %d", code)
		}
		fb := foundState(t, h.store, s.hash)
		if fb.State != store.FoundPending || fb.Height != height || fb.Finder != "alice" || fb.Attempts != 1 {
			t.Fatalf("found block after a failed submission: state %s height %d finder %q attempts %d", fb.State, fb.Height, fb.Finder, fb.Attempts)
		}
		if h.coord.PendingBlocks() != 1 || h.coord.Status().BlocksPending != 1 {
			t.Fatalf("pending blocks %d (status %d), want 1", h.coord.PendingBlocks(), h.coord.Status().BlocksPending)
		}
		// Backoff 1 s, 2 s, 4 s, 4 s: after 12 s, five submissions.
		time.Sleep(11*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if got := src.triesOf(s.hash); got != 5 {
			t.Fatalf("%d submissions after 11.5 s down, want 5 (backoff 1, 2, 4, 4 s)", got)
		}
		if h.chain.Current().Height != height {
			t.Fatal("the chain moved while its link was down")
		}
		src.setDown(false)
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if got := h.chain.Current(); got.Height != height+1 || got.PrevHash != s.hash {
			t.Fatalf("chain tip after the link came back: height %d prev %s, want %d on %s", got.Height-1, got.PrevHash, height, s.hash)
		}
		fb = foundState(t, h.store, s.hash)
		if fb.State != store.FoundAccepted || fb.Attempts != 6 {
			t.Fatalf("found block: state %s attempts %d, want accepted after 6", fb.State, fb.Attempts)
		}
		evMu.Lock()
		defer evMu.Unlock()
		if len(events) != 1 || !events[0].Accepted || events[0].Hash != s.hash.String() {
			t.Fatalf("block events %+v, want one accepted", events)
		}
		if st := h.coord.Status(); st.BlocksFound != 1 || h.coord.PendingBlocks() != 0 {
			t.Fatalf("blocks found %d, pending %d", st.BlocksFound, h.coord.PendingBlocks())
		}
	})
}

// TestPendingBlockResubmittedAfterRestart: a block still pending when the
// coordinator stops is submitted by the next coordinator on the same
// ledger.
func TestPendingBlockResubmittedAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		h := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, pipe: true, store: st,
			source: func(c *simchain.Chain) work.Source { f := newFlaky(c); f.setDown(true); return f }})
		c := h.dial()
		n := c.ready("alice")
		height := h.chain.Current().Height
		s := c.solve(n, 1, 1e-7, true, 0)
		s.worker = "alice"
		if ok, code := c.submit(s); !ok {
			t.Fatalf("block share rejected with %d", code)
		}
		c.conn.Close()
		h.stop()
		if fb := foundState(t, st, s.hash); fb.State != store.FoundPending {
			t.Fatalf("after stop: state %s, want pending", fb.State)
		}
		h2 := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, pipe: true, store: st})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := h2.chain.Current(); got.Height != height+1 || got.PrevHash != s.hash {
			t.Fatalf("after restart the tip is at %d on %s, want the pending block %s", got.Height-1, got.PrevHash, s.hash)
		}
		if fb := foundState(t, st, s.hash); fb.State != store.FoundAccepted || fb.Attempts != 2 {
			t.Fatalf("after restart: state %s attempts %d, want accepted on attempt 2", fb.State, fb.Attempts)
		}
		h2.stop()
	})
}

// TestPendingBlockAbandonedWhenChainMovesPast: a block the chain still
// cannot be asked about once another block has taken its height is
// abandoned, not retried for ever.
func TestPendingBlockAbandonedWhenChainMovesPast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var src *flakySource
		h := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, pipe: true,
			source: func(c *simchain.Chain) work.Source { src = newFlaky(c); return src }})
		a, b := h.dial(), h.dial()
		na, nb := a.ready("alice"), b.ready("bob")
		height := h.chain.Current().Height
		sa := a.solve(na, 1, 1e-7, true, 0)
		sa.worker = "alice"
		sb := b.solve(nb, 1, 1e-7, true, 0)
		sb.worker = "bob"
		src.mu.Lock()
		src.downFor[sa.hash] = true // alice's block never gets through
		src.mu.Unlock()
		if ok, code := a.submit(sa); !ok {
			t.Fatalf("alice's block share rejected with %d", code)
		}
		if ok, code := b.submit(sb); !ok {
			t.Fatalf("bob's block share rejected with %d", code)
		}
		if got := h.chain.Current(); got.Height != height+1 || got.PrevHash != sb.hash {
			t.Fatalf("tip at %d on %s, want bob's block", got.Height-1, got.PrevHash)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		fb := foundState(t, h.store, sa.hash)
		if fb.State != store.FoundAbandoned || fb.Attempts != 2 || h.coord.PendingBlocks() != 0 {
			t.Fatalf("alice's block: state %s attempts %d (pending %d), want abandoned after 2", fb.State, fb.Attempts, h.coord.PendingBlocks())
		}
		if fb := foundState(t, h.store, sb.hash); fb.State != store.FoundAccepted {
			t.Fatalf("bob's block: state %s", fb.State)
		}
	})
}

// TestShareNTimeAtTemplateLimit: a share at exactly the template's latest
// valid ntime is accepted; one second later is refused as bad-ntime.
func TestShareNTimeAtTemplateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{shareDiff: 1e-7, pipe: true,
			source: func(c *simchain.Chain) work.Source { f := newFlaky(c); f.maxTime = 30; return f }})
		c := h.dial()
		n := c.ready("alice")
		tmpl := h.chain.Current()
		limit := tmpl.CurTime + 30 + uint32(time.Since(tmpl.Created)/time.Second)
		over := c.solveAt(n, 1, 1e-7, false, 0, limit+1)
		over.worker = "alice"
		if ok, code := c.submit(over); ok || code != stratum.CodeOther {
			t.Fatalf("share 1 s past the template's limit: accepted=%v code=%d", ok, code)
		}
		at := c.solveAt(n, 2, 1e-7, false, 0, limit)
		at.worker = "alice"
		if ok, code := c.submit(at); !ok {
			t.Fatalf("share at the template's limit rejected with %d", code)
		}
		st := h.coord.Status()
		if len(st.Workers) != 1 || st.Workers[0].Rejected[coordinator.ReasonNTime] != 1 || st.Workers[0].Accepted != 1 {
			t.Fatalf("worker stats %+v", st.Workers)
		}
	})
}

// TestExtranonce1Prefix: with a prefix, every extranonce1 starts with it,
// and two coordinators with distinct prefixes never hand out the same one.
func TestExtranonce1Prefix(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []uint32{0x2a, 0x2b} {
		h := newHarness(t, harnessOpts{cfg: func(c *coordinator.Config) {
			c.Extranonce1Prefix, c.Extranonce1PrefixBits = prefix, 8
		}})
		for range 20 {
			c := h.dial()
			c.subscribe()
			if c.en1[0] != byte(prefix) {
				t.Fatalf("extranonce1 %x does not start with the prefix %02x", c.en1, prefix)
			}
			if seen[string(c.en1)] {
				t.Fatalf("extranonce1 %x handed out twice", c.en1)
			}
			seen[string(c.en1)] = true
		}
	}
	h := newHarness(t, harnessOpts{})
	for _, bad := range []struct {
		prefix uint32
		bits   int
		want   string
	}{{0x100, 8, "does not fit in 8 bits"}, {1, 17, "must be 0..16"}, {1, -1, "must be 0..16"}} {
		_, err := coordinator.New(coordinator.Config{Source: h.chain, Store: h.store, Extranonce1Prefix: bad.prefix, Extranonce1PrefixBits: bad.bits})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("prefix %x in %d bits: %v, want %q", bad.prefix, bad.bits, err, bad.want)
		}
	}
}

// emfileListener fails its first n Accepts the way accept(2) does when the
// process has no file descriptor left.
type emfileListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.n > 0
	if fail {
		l.n--
	}
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfFilesKeepsServing: running out of file descriptors is a
// passing condition: Serve backs off and accepts again instead of
// stopping (a front-end at the open-file limit used to exit).
func TestAcceptOutOfFilesKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{pipe: true})
		pl := newPipeListener()
		ln := &emfileListener{Listener: pl, n: 3}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.coord.Serve(ctx, ln) }()
		conn := pl.dial()
		c := &client{t: t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
		if n := c.ready("alice"); n == nil {
			t.Fatal("no job after the accept errors")
		}
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Serve: %v, want nil after out-of-files accept errors", err)
		}
	})
}

// cancelOnFound ends the serving context the moment a found block is to
// be recorded: the front-end's term ending (its lease lost) while a
// miner's block share is in hand.
type cancelOnFound struct {
	*store.Store
	cancel func()
}

func (s *cancelOnFound) AddFoundBlock(ctx context.Context, b ledger.Block) error {
	s.cancel()
	return s.Store.AddFoundBlock(ctx, b)
}

// TestBlockFoundAsServingEnds: a block share handled while Serve's
// context ends (a cluster front-end losing its lease as the block
// arrives, seen in scripts/netns-frontend.sh) is still recorded as
// pending and submitted by the next coordinator on the same store; it
// was lost ("record found block: context canceled").
func TestBlockFoundAsServingEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var h *harness
		wrap := &cancelOnFound{Store: st, cancel: func() { h.cancel() }}
		h = newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, pipe: true, store: st,
			cfg: func(c *coordinator.Config) { c.Store = wrap }})
		c := h.dial()
		n := c.ready("alice")
		height := h.chain.Current().Height
		s := c.solve(n, 1, 1e-7, true, 0)
		s.worker = "alice"
		b, _ := stratum.AppendRequest(nil, 99, "mining.submit", s.params())
		c.send(strings.TrimSuffix(string(b), "\n"))
		h.stop()
		fb := foundState(t, st, s.hash)
		if fb.State != store.FoundPending && fb.State != store.FoundAccepted {
			t.Fatalf("block found as serving ended: state %q, want pending (or accepted)", fb.State)
		}
		h2 := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7, pipe: true, store: st})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := h2.chain.Current(); got.Height != height+1 || got.PrevHash != s.hash {
			t.Fatalf("after restart the tip is at %d on %s, want the block %s found as serving ended", got.Height-1, got.PrevHash, s.hash)
		}
		h2.stop()
	})
}
