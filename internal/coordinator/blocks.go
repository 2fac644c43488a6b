package coordinator

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

// Found blocks. A share that meets the block target is assembled into a
// full block and written to the ledger's found-block record before it is
// offered to the source; the source's answer settles it:
//
//   - nil: accepted (for a node this includes "duplicate" and
//     "inconclusive", which the node backend reports as taken);
//   - *work.RejectedError: refused for good;
//   - any other error: no answer (nobody could be asked, or the answer
//     was lost on the way back). The block stays pending and is offered
//     again with backoff (BlockRetryMin doubling up to BlockRetryMax)
//     until the source answers, or until the chain has moved past the
//     block's height. Then the chain is asked whether the block is on it
//     at its height (work.ChainLookup; see unanswered): it may be the very
//     block the chain moved on with. On it: accepted, counted and paid;
//     another block there: abandoned. Pending blocks are offered again
//     when the coordinator starts, so a restart loses none.
//
// The same record serves the embedded chain and a node: the coordinator
// does not ask which backend it has.
//
// Accepted is not the end: a chain also takes a block onto a side chain
// (one found on a job a new tip made stale), and a reorg can replace a
// block of the best chain. So an accepted block is asked after (when the
// source is a work.ChainLookup) whether it is on the best chain at its
// height: once at once, and again on every new tip while it is within
// OrphanDepth blocks of the tip. Off it, the block is orphaned (counted
// apart from found blocks, paying nobody: its coinbase never matures);
// a reorg that brings it back makes it accepted again.

// foundBlock is a share that meets the block target.
type foundBlock struct {
	tmpl     *work.Template
	header   [chainmath.HeaderSize]byte
	coinbase []byte
	hash     chainmath.Hash
	finder   string    // the worker name that submitted it
	user     string    // the session's account, for the per-worker block count
	pplns    *pplnsJob // the PPLNS payout of its job; nil for solo
}

// OrphanDepth is how many blocks below the tip an accepted found block is
// still checked for being on the best chain; deeper, its state is final.
const OrphanDepth = 100

// watchedBlock is an accepted or orphaned found block still within
// OrphanDepth of the tip.
type watchedBlock struct {
	height   int64
	finder   string
	orphaned bool
	counted  bool // settled this run, so in blocksFound or blocksOrphaned
}

// pendingBlock is a found block waiting for an answer from the source.
type pendingBlock struct {
	rec     ledger.Block
	block   *wire.MsgBlock
	user    string
	attempt int
	next    time.Time
}

// blockBook owns found-block submission and its retries.
type blockBook struct {
	c *Coordinator

	mu      sync.Mutex
	pending map[chainmath.Hash]*pendingBlock
	settled map[chainmath.Hash]bool // answered this run: a resent share is not submitted again
	wake    chan struct{}
	tip     chan struct{}                    // a new tip: check watched blocks again
	watched map[chainmath.Hash]*watchedBlock // accepted or orphaned, within OrphanDepth of the tip
	// bestAt is the best-chain block of a height as the chain last said
	// when asked about an accepted block: another accepted block at that
	// height is on a side chain without asking again (on regtest, where
	// every share is a block, a height gets hundreds). Emptied on every
	// recheck (a new tip), which asks afresh.
	bestAt map[int64]chainmath.Hash
}

func newBlockBook(c *Coordinator) *blockBook {
	return &blockBook{c: c, pending: make(map[chainmath.Hash]*pendingBlock), settled: make(map[chainmath.Hash]bool), wake: make(chan struct{}, 1),
		tip: make(chan struct{}, 1), watched: make(map[chainmath.Hash]*watchedBlock), bestAt: make(map[int64]chainmath.Hash)}
}

// found records fb durably, submits it once at once, and leaves it to the
// retry loop when the source could not be asked.
func (b *blockBook) found(ctx context.Context, fb foundBlock) {
	c := b.c
	b.mu.Lock()
	_, busy := b.pending[fb.hash]
	done := b.settled[fb.hash]
	b.mu.Unlock()
	if busy || done {
		return
	}
	blk, err := work.AssembleBlock(fb.tmpl, fb.header, fb.coinbase)
	if err != nil {
		// Cannot happen with a template the coordinator built from.
		c.log.Error("assembling found block", "height", fb.tmpl.Height, "hash", fb.hash.String(), "err", err)
		return
	}
	var raw bytes.Buffer
	blk.Serialize(&raw)
	now := c.cfg.Now()
	rec := ledger.Block{Height: fb.tmpl.Height, Hash: fb.hash, Header: fb.header, Raw: raw.Bytes(), Finder: fb.finder, Time: uint32(blk.Header.Timestamp.Unix()), FoundAt: now}
	// What it pays first: a found-block record is resubmitted after a
	// crash, so a crash between the two writes must not leave a pending
	// block whose payouts were never recorded (TestPPLNSWindowSurvivesSIGKILL
	// found one). A payout record whose block was never recorded as found
	// lists with no state and pays nothing.
	//
	// Both writes outlive ctx: a block in hand when serving ends (a
	// cluster front-end's lease lost as the share arrives) is still
	// recorded, pending for the next coordinator on this store, instead
	// of lost with a canceled write (TestBlockFoundAsServingEnds).
	rctx := context.WithoutCancel(ctx)
	c.recordPayouts(rctx, &fb, blk)
	if err := c.cfg.Store.AddFoundBlock(rctx, rec); err != nil {
		// Submit it all the same: a block not recorded is better than a
		// block not sent.
		c.log.Error("recording found block before submitting it", "height", rec.Height, "hash", fb.hash.String(), "err", err)
	}
	c.log.Info("block found", "height", rec.Height, "hash", fb.hash.String(), "finder", fb.finder)
	p := &pendingBlock{rec: rec, block: blk, user: fb.user}
	b.attempt(ctx, p)
}

// attempt offers p to the source once and settles or reschedules it.
func (b *blockBook) attempt(ctx context.Context, p *pendingBlock) {
	c := b.c
	err := c.cfg.Source.Submit(ctx, p.block, p.rec.Finder)
	p.attempt++
	now := c.cfg.Now()
	hash := p.rec.Hash
	ev := BlockEvent{Height: p.rec.Height, Hash: hash.String(), Finder: p.rec.Finder, Time: now}
	state, reason := store.FoundAccepted, ""
	switch {
	case err == nil:
	case work.IsRejected(err):
		state, reason = store.FoundRejected, err.Error()
	case ctx.Err() != nil:
		// Shutting down: leave it pending for the next start.
		b.mu.Lock()
		delete(b.pending, hash)
		b.mu.Unlock()
		return
	default:
		var settled bool
		if state, reason, settled = b.unanswered(ctx, p, err); settled {
			break
		}
		delay := min(c.cfg.BlockRetryMin<<min(p.attempt-1, 16), c.cfg.BlockRetryMax)
		p.next = now.Add(delay)
		c.log.Warn("block not submitted yet; will retry", "height", p.rec.Height, "hash", ev.Hash, "finder", p.rec.Finder, "attempt", p.attempt, "retry_in", delay, "err", err)
		if serr := c.cfg.Store.SetFoundBlockState(ctx, hash, store.FoundPending, err.Error(), now); serr != nil && !errors.Is(serr, store.ErrClosed) {
			c.log.Error("recording found block state", "hash", ev.Hash, "err", serr)
		}
		b.mu.Lock()
		first := b.pending[hash] == nil
		b.pending[hash] = p
		b.mu.Unlock()
		if first {
			c.metrics.blocks.WithLabelValues("pending").Inc()
		}
		select {
		case b.wake <- struct{}{}:
		default:
		}
		return
	}
	if state == store.FoundAccepted {
		b.mu.Lock()
		best, known := b.bestAt[p.rec.Height]
		b.mu.Unlock()
		in, ok := best == hash, known
		if !known {
			in, ok = b.inBestChain(ctx, hash, p.rec.Height)
			if ok && in {
				b.mu.Lock()
				b.bestAt[p.rec.Height] = hash
				b.mu.Unlock()
			}
		}
		if ok && !in {
			state, reason = store.FoundOrphaned, "the chain took it on a side chain"
		}
	}
	b.mu.Lock()
	delete(b.pending, hash)
	b.settled[hash] = true
	if state == store.FoundAccepted || state == store.FoundOrphaned {
		b.watched[hash] = &watchedBlock{height: p.rec.Height, finder: p.rec.Finder, orphaned: state == store.FoundOrphaned, counted: true}
	}
	b.mu.Unlock()
	// Counters first: the chain has moved already, and a status read
	// between the two must not show the new tip without its block.
	c.metrics.blocks.WithLabelValues(state).Inc()
	switch state {
	case store.FoundAccepted:
		ev.Accepted = true
		c.blocksFound.Add(1)
		c.stats.block(cmp.Or(p.user, p.rec.Finder))
		c.resetRound(ctx)
		c.log.Debug("block accepted", "height", ev.Height, "hash", ev.Hash, "finder", ev.Finder, "attempts", p.attempt)
	case store.FoundOrphaned:
		c.blocksOrphaned.Add(1)
		ev.Orphaned, ev.Reason = true, reason
		c.log.Warn("block orphaned", "height", ev.Height, "hash", ev.Hash, "finder", ev.Finder, "reason", reason)
	case store.FoundRejected:
		c.blocksRejected.Add(1)
		ev.Reason = reason
		c.log.Warn("block not accepted", "height", ev.Height, "hash", ev.Hash, "finder", ev.Finder, "err", err)
	case store.FoundAbandoned:
		c.blocksRejected.Add(1)
		ev.Reason = reason
		c.log.Warn("block abandoned", "height", ev.Height, "hash", ev.Hash, "finder", ev.Finder, "attempts", p.attempt, "err", err)
	}
	if serr := c.cfg.Store.SetFoundBlockState(ctx, hash, state, reason, now); serr != nil {
		c.log.Error("recording found block state", "hash", ev.Hash, "state", state, "err", serr)
	}
	if c.cfg.OnBlock != nil {
		c.cfg.OnBlock(ev)
	}
}

// unanswered settles a block whose submission got no answer (subErr),
// if it can be: only once the chain has moved past the block's height,
// and then by what the chain says of the block. The chain may have moved
// past because of this very block (the node took it and the answer was
// lost), so a source that can be asked (work.ChainLookup) is asked: the
// block is accepted when it is on the best chain at its height, abandoned
// when another block is. When the chain cannot be asked the block stays
// pending and is offered again, which asks again. A source that cannot
// be asked at all abandons it, as it can no longer extend the tip.
func (b *blockBook) unanswered(ctx context.Context, p *pendingBlock, subErr error) (state, reason string, settled bool) {
	c := b.c
	if c.cfg.Source.Current().Height <= p.rec.Height {
		return "", "", false
	}
	lookup, ok := c.cfg.Source.(work.ChainLookup)
	if !ok {
		return store.FoundAbandoned, "the chain moved past its height while no node could be asked: " + subErr.Error(), true
	}
	in, err := lookup.InBestChain(ctx, p.rec.Hash, p.rec.Height)
	switch {
	case err != nil:
		c.log.Warn("chain moved past a block with no answer, and cannot say whether it holds it; will retry", "height", p.rec.Height, "hash", p.rec.Hash.String(), "submit_err", subErr, "err", err)
		return "", "", false
	case in:
		c.log.Info("block with no submission answer is on the best chain", "height", p.rec.Height, "hash", p.rec.Hash.String(), "finder", p.rec.Finder, "submit_err", subErr)
		return store.FoundAccepted, "", true
	}
	return store.FoundAbandoned, "the chain moved past its height with another block; its submission had no answer: " + subErr.Error(), true
}

// inBestChain asks the source whether hash is on the best chain at
// height; ok is false when the source cannot be asked or did not answer.
func (b *blockBook) inBestChain(ctx context.Context, hash chainmath.Hash, height int64) (in, ok bool) {
	lookup, can := b.c.cfg.Source.(work.ChainLookup)
	if !can {
		return false, false
	}
	in, err := lookup.InBestChain(ctx, hash, height)
	if err != nil {
		if ctx.Err() == nil {
			b.c.log.Warn("cannot ask whether a found block is on the best chain", "height", height, "hash", hash.String(), "err", err)
		}
		return false, false
	}
	return in, true
}

// newTip tells the resubmit loop that the chain has a new tip, so it
// checks the watched blocks again. It does not wait.
func (b *blockBook) newTip() {
	select {
	case b.tip <- struct{}{}:
	default:
	}
}

// watchStored watches the accepted and orphaned blocks of earlier runs
// within OrphanDepth of the tip, so a reorg after a restart still moves
// them (they are not in this run's counts).
func (b *blockBook) watchStored(ctx context.Context) {
	c := b.c
	tip := c.cfg.Source.Current().Height - 1
	for _, state := range []string{store.FoundAccepted, store.FoundOrphaned} {
		stored, err := c.cfg.Store.FoundBlocks(ctx, state)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Error("reading found blocks to watch", "state", state, "err", err)
			}
			continue
		}
		b.mu.Lock()
		for _, f := range stored {
			if tip-f.Height <= OrphanDepth && b.watched[f.Hash] == nil {
				b.watched[f.Hash] = &watchedBlock{height: f.Height, finder: f.Finder, orphaned: state == store.FoundOrphaned}
			}
		}
		b.mu.Unlock()
	}
}

// recheckLoop rechecks the watched blocks on every new tip (signals
// coalesce), on a goroutine of its own: the chain lookups never hold up
// the submission of a block found meanwhile.
func (b *blockBook) recheckLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.tip:
			b.recheck(ctx)
		}
	}
}

// recheck asks the chain about every watched block: one off the best
// chain becomes orphaned, an orphaned one back on it accepted again, and
// one deeper than OrphanDepth below the tip is no longer watched.
func (b *blockBook) recheck(ctx context.Context) {
	c := b.c
	tip := c.cfg.Source.Current().Height - 1
	type check struct {
		hash chainmath.Hash
		w    watchedBlock
	}
	var todo []check
	b.mu.Lock()
	clear(b.bestAt)
	for h, w := range b.watched {
		if tip-w.height > OrphanDepth {
			delete(b.watched, h)
			continue
		}
		todo = append(todo, check{h, *w})
	}
	b.mu.Unlock()
	// At most one block a height is on the best chain: once one is
	// found there, the others at that height are not, without asking
	// (on regtest, where every share is a block, a height holds many).
	// Blocks on the best chain are asked first, as they are the likely
	// ones.
	slices.SortFunc(todo, func(x, y check) int {
		if c := cmp.Compare(x.w.height, y.w.height); c != 0 {
			return c
		}
		return cmpBool(x.w.orphaned, y.w.orphaned)
	})
	bestAt := map[int64]bool{} // a height whose best-chain block is known
	for _, k := range todo {
		if ctx.Err() != nil {
			return
		}
		in, ok := false, true
		if !bestAt[k.w.height] {
			in, ok = b.inBestChain(ctx, k.hash, k.w.height)
		}
		if ok && in {
			bestAt[k.w.height] = true
		}
		if !ok || in != k.w.orphaned {
			continue // no answer, or no change
		}
		state, reason := store.FoundOrphaned, "a reorg replaced it on the best chain"
		if !in {
			b.mu.Lock()
			if w := b.watched[k.hash]; w != nil {
				w.orphaned = true
			}
			b.mu.Unlock()
			if k.w.counted {
				c.blocksOrphaned.Add(1)
				c.blocksFound.Add(-1)
			}
			c.metrics.blocks.WithLabelValues(store.FoundOrphaned).Inc()
			c.log.Warn("block orphaned", "height", k.w.height, "hash", k.hash.String(), "finder", k.w.finder, "reason", reason)
		} else {
			state, reason = store.FoundAccepted, ""
			b.mu.Lock()
			if w := b.watched[k.hash]; w != nil {
				w.orphaned = false
			}
			b.mu.Unlock()
			if k.w.counted {
				c.blocksFound.Add(1)
				c.blocksOrphaned.Add(-1)
			}
			c.log.Info("orphaned block back on the best chain", "height", k.w.height, "hash", k.hash.String(), "finder", k.w.finder)
		}
		if err := c.cfg.Store.SetFoundBlockState(ctx, k.hash, state, reason, c.cfg.Now()); err != nil && !errors.Is(err, store.ErrClosed) {
			c.log.Error("recording found block state", "hash", k.hash.String(), "state", state, "err", err)
		}
	}
}

// PendingBlocks returns how many found blocks wait for the source to
// answer.
func (c *Coordinator) PendingBlocks() int {
	c.blocks.mu.Lock()
	defer c.blocks.mu.Unlock()
	return len(c.blocks.pending)
}

// resubmitLoop offers pending blocks again when their time comes, starting
// with those the ledger still holds as pending from an earlier run. It
// returns when ctx ends; blocks still pending then stay so in the ledger.
func (b *blockBook) resubmitLoop(ctx context.Context) {
	c := b.c
	stored, err := c.cfg.Store.FoundBlocks(ctx, store.FoundPending)
	if err != nil && ctx.Err() == nil {
		c.log.Error("reading pending found blocks", "err", err)
	}
	for _, f := range stored {
		var blk wire.MsgBlock
		err := blk.Deserialize(bytes.NewReader(f.Raw))
		if err != nil {
			c.log.Error("pending found block unreadable", "hash", f.Hash.String(), "err", err)
			continue
		}
		c.log.Info("submitting a found block left pending", "height", f.Height, "hash", f.Hash.String(), "finder", f.Finder, "attempts_before", f.Attempts)
		b.mu.Lock()
		if b.pending[f.Hash] == nil && !b.settled[f.Hash] {
			b.pending[f.Hash] = &pendingBlock{rec: f.Block, block: &blk, attempt: f.Attempts, next: c.cfg.Now()}
		}
		b.mu.Unlock()
	}
	b.watchStored(ctx)
	b.newTip() // the watched blocks of earlier runs, checked once at start
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := c.cfg.Now()
		var due []*pendingBlock
		var next time.Time
		b.mu.Lock()
		for _, p := range b.pending {
			if !p.next.After(now) {
				due = append(due, p)
			} else if next.IsZero() || p.next.Before(next) {
				next = p.next
			}
		}
		b.mu.Unlock()
		for _, p := range due {
			b.attempt(ctx, p)
			if ctx.Err() != nil {
				return
			}
		}
		if len(due) > 0 {
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = next.Sub(now)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-timer.C:
		}
	}
}

// cmpBool orders false before true.
func cmpBool(x, y bool) int {
	switch {
	case x == y:
		return 0
	case !x:
		return -1
	}
	return 1
}
