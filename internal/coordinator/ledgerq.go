package coordinator

import (
	"context"
	"sync"

	"github.com/powcoord/powcoord/internal/store"
)

// ledgerQueue is the hand-off of valid shares from the sessions to the
// ledger. A session appends its share under a mutex and goes on reading;
// one feeder goroutine, running only while shares wait, takes everything
// queued, commits it with one RecordShares call and passes the batch to a
// goroutine that answers its shares (settleBatch) while the next batch
// commits. So a share costs an append, not a channel hop and a goroutine
// of its own. A ledger without RecordShares gets one RecordShare call per
// share, each on its own goroutine. Only a *store.Store itself is fed in
// batches: a wrapper that embeds one and overrides RecordShare (to count
// or to fail shares) must see every share.
type ledgerQueue struct {
	c       *Coordinator
	mu      sync.Mutex
	shares  []store.Share
	owners  []*pendingShare
	running bool // a feeder is running
}

func (q *ledgerQueue) add(ctx context.Context, ps *pendingShare, sh store.Share) {
	bl, ok := q.c.cfg.Store.(*store.Store)
	if !ok {
		go func() {
			err := q.c.cfg.Store.RecordShare(ctx, sh)
			ps.s.settle(ps, err, ctx.Err() != nil)
		}()
		return
	}
	q.mu.Lock()
	q.shares = append(q.shares, sh)
	q.owners = append(q.owners, ps)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.feed(bl)
	}
}

// feed commits batches until the queue is empty. The commit does not take
// a session's context: the shares were valid when taken, the ledger
// finishes what it accepted, and a session waits for its answers before
// it ends (session.drain), so shutdown still waits for every commit.
func (q *ledgerQueue) feed(bl *store.Store) {
	var spare []store.Share
	for {
		q.mu.Lock()
		if len(q.shares) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		shares, owners := q.shares, q.owners
		q.shares, q.owners = spare[:0], make([]*pendingShare, 0, len(owners))
		q.mu.Unlock()
		err := bl.RecordShares(context.Background(), shares)
		go settleBatch(owners, err)
		clear(shares) // the ledger is done with them: reuse the array
		spare = shares
	}
}

// settleBatch answers the shares of one committed (or failed) batch:
// first every outcome is marked, then each session writes all its
// settled answers in one write.
func settleBatch(owners []*pendingShare, err error) {
	for _, ps := range owners {
		ps.s.markSettled(ps, err, false)
	}
	for i, ps := range owners {
		if i > 0 && owners[i-1].s == ps.s {
			continue
		}
		ps.s.flushSettled()
	}
}
