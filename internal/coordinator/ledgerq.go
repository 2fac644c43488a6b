package coordinator

import (
	"context"
	"sync"

	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
)

// ledgerQueue is the hand-off of valid shares from the sessions to the
// ledger. A session appends its share under a mutex and goes on reading;
// one feeder goroutine, running only while shares wait, takes everything
// queued, commits it with one RecordShares call and passes the batch to a
// goroutine that answers its shares (settleBatch) while the next batch
// commits. So a share costs an append, not a channel hop and a goroutine
// of its own. A *store.Store (RecordShares) and a BatchLedger are fed in
// batches; any other ledger gets one RecordShare call per share, each on
// its own goroutine. Only a *store.Store itself is fed through
// RecordShares: a wrapper that embeds one and overrides RecordShare (to
// count or to fail shares) must see every share.
type ledgerQueue struct {
	c       *Coordinator
	mu      sync.Mutex
	shares  []ledger.Share
	owners  []*pendingShare
	running bool // a feeder is running
	// record is batchRecorder of the coordinator's ledger, found once
	// (a method value made per share cost an allocation).
	record func(context.Context, []ledger.Share) error
}

// BatchLedger is a Ledger that records many shares in one call: it
// returns nil once every one of them is durable, and an error when none of
// them may be taken as durable. A cluster front-end's share log is one
// (one SHARES message a call); the coordinator then feeds it the way it
// feeds its own SQLite store, in batches from one queue, instead of one
// call and one goroutine per share. The method has its own name so that a
// wrapper embedding a *store.Store does not offer it by accident.
type BatchLedger interface {
	Ledger
	RecordShareBatch(ctx context.Context, shares []ledger.Share) error
}

// batchRecorder returns how l records many shares in one call: a
// *store.Store's RecordShares, a BatchLedger's RecordShareBatch, or nil
// for a ledger that takes one RecordShare per share. It is the one place
// that decides, for the V1 queue and V2 bursts alike.
func batchRecorder(l Ledger) func(context.Context, []ledger.Share) error {
	switch l := l.(type) {
	case *store.Store:
		return l.RecordShares
	case BatchLedger:
		return l.RecordShareBatch
	}
	return nil
}

func (q *ledgerQueue) add(ctx context.Context, ps *pendingShare, sh ledger.Share) {
	record := q.record
	if record == nil {
		go func() {
			err := q.c.cfg.Store.RecordShare(ctx, sh)
			settle(ps, err, ctx.Err() != nil)
			ps.release()
		}()
		return
	}
	q.mu.Lock()
	if q.shares == nil {
		// Room for a full batch from the start: growing the queue
		// share by share copied it again and again.
		q.shares = make([]ledger.Share, 0, store.MaxBatch)
		q.owners = ownerArray()
	}
	q.shares = append(q.shares, sh)
	q.owners = append(q.owners, ps)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.feed(record)
	}
}

// feed commits batches until the queue is empty. The commit does not take
// a session's context: the shares were valid when taken, the ledger
// finishes what it accepted, and a session waits for its answers before
// it ends (session.drain), so shutdown still waits for every commit.
func (q *ledgerQueue) feed(record func(context.Context, []ledger.Share) error) {
	var spare []ledger.Share
	for {
		q.mu.Lock()
		if len(q.shares) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		shares, owners := q.shares, q.owners
		if cap(spare) < store.MaxBatch {
			spare = make([]ledger.Share, 0, store.MaxBatch)
		}
		q.shares, q.owners = spare[:0], ownerArray()
		q.mu.Unlock()
		err := record(context.Background(), shares)
		go settleBatch(owners, err)
		clear(shares) // the ledger is done with them: reuse the array
		spare = shares
	}
}

// ownerPool holds the owner arrays of settled batches.
var ownerPool = sync.Pool{New: func() any { return make([]*pendingShare, 0, store.MaxBatch) }}

func ownerArray() []*pendingShare { return ownerPool.Get().([]*pendingShare)[:0] }

// settleBatch answers the shares of one committed (or failed) batch:
// first every outcome is marked, then each session writes all its
// settled answers in one write.
func settleBatch(owners []*pendingShare, err error) {
	for _, ps := range owners {
		markSettled(ps, err, false)
	}
	for i, ps := range owners {
		if i > 0 && owners[i-1].owner == ps.owner {
			continue
		}
		flushSettled(ps.owner)
	}
	for _, ps := range owners {
		ps.release()
	}
	clear(owners)
	if cap(owners) <= 4*store.MaxBatch {
		ownerPool.Put(owners[:0])
	}
}
