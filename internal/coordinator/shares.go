package coordinator

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/stratum"
)

// The one share path (docs/architecture.md). A Stratum V1 session and a
// Stratum V2 connection differ only in how a share arrives (JSON hex
// strings or binary fields, parsed into a submission) and how its answer
// leaves (a JSON result, or SubmitShares.Success/Error); everything in
// between is here, once: validation (validateShare), duplicates, the
// found-block record, accounting, the reject rule, the ledger queue with
// its group commit, vardiff and the order of the answers.

// submission is one share as the miner sent it, protocol-neutral.
type submission struct {
	worker string
	jobID  string // as the miner named the job: for messages and the ledger row
	en2    []byte // the extranonce2 bytes the miner chose
	en2Hex string // the same, as the ledger stores it
	ntime  uint32
	nonce  uint32
	// vbits are the version bits the miner rolled (BIP 310's form);
	// hasVBits is false when it sent none.
	vbits    uint32
	hasVBits bool
	// bad is set by a parser that found a field it could not read; it
	// is reported after the session checks (subscribed, authorized, job
	// known), as if validation had read the field itself.
	bad *verdict
}

// answerTo is where a share's answer goes: a V1 request id (copied), or a
// V2 channel and sequence number.
type answerTo struct {
	id    []byte
	chID  uint32
	seq   uint32
	idBuf [8]byte
}

func (a *answerTo) setID(id []byte) {
	if len(id) <= len(a.idBuf) {
		a.id = append(a.idBuf[:0], id...)
	} else {
		a.id = append([]byte(nil), id...)
	}
}

// shareLane is what one stream of work keeps for duplicates: a V1 session
// or a V2 channel. The connection's lock guards it.
type shareLane struct {
	// dups holds the header hash of every share of the current
	// generation that the ledger has made durable: the same work sent
	// again, under any job id of any epoch of this generation, is a
	// duplicate. A share enters only after the ledger took it, so a
	// share whose recording failed can be sent again. A new generation
	// (clean job) empties it: every older job is stale by then.
	dups   map[chainmath.Hash]struct{}
	dupGen uint64
	vd     vardiff
}

// remember adds h to the durable work of this generation (the set is made
// with the first share: an idle lane keeps none).
func (l *shareLane) remember(h chainmath.Hash) {
	if l.dups == nil {
		l.dups = make(map[chainmath.Hash]struct{})
	}
	l.dups[h] = struct{}{}
}

// connShares is the protocol-neutral half of a miner connection: its
// shares waiting for the ledger, in arrival order, and its reject rule.
// mu is the connection's own lock.
type connShares struct {
	coord      *Coordinator
	mu         *sync.Mutex
	ip, remote string

	// Guarded by mu.
	closed      bool
	rejectCount rejectRule // shares counted towards the reject rule
	// pend holds the valid shares handed to the ledger and not yet
	// answered, in arrival order; settled is signalled (with mu) when
	// some are answered.
	pend    []*pendingShare
	settled sync.Cond

	ev *atomic.Pointer[evState] // a V1 session's event loop, when it has one
}

func (q *connShares) init(c *Coordinator, mu *sync.Mutex, ip, remote string) {
	q.coord, q.mu, q.ip, q.remote = c, mu, ip, remote
	q.settled.L = mu
}

// shareConn is a miner connection as the share path sees it.
type shareConn interface {
	shares() *connShares
	// answerLocked writes the answers of settled shares, in order:
	// accepted when err is nil (mu held).
	answerLocked(heads []*pendingShare)
	// rejectLocked writes the rejection of the share to be answered at
	// to (mu held).
	rejectLocked(to answerTo, err *stratum.Error, reason string)
	// payeeWorker names the worker a block on a job paying script is
	// credited to: the connection's worker paid there, or "".
	payeeWorker(script []byte) string
	// retargetLocked applies vardiff after the accepted share h; true
	// when new work must follow (sendRetargeted, without mu).
	retargetLocked(h *pendingShare) bool
	sendRetargeted()
	// closeConn closes the connection from outside its reading.
	closeConn()
}

// shareIn is one parsed share and what the protocol knows of it.
type shareIn struct {
	j     *job // nil when the job id names none
	f     shareFacts
	sub   submission
	lane  *shareLane
	user  string // the connection's account (accounting)
	en1   string // extranonce1 as the ledger stores it
	to    answerTo
	start time.Time
}

// takeShare judges one share and answers it: rejected at once, or handed
// to the ledger and answered true once durable. scratch is the reader's
// coinbase buffer.
func (c *Coordinator) takeShare(ctx context.Context, sc shareConn, in *shareIn, scratch *[]byte) {
	q := sc.shares()
	v, buf := validateShare(in.j, &in.f, &in.sub, *scratch)
	*scratch = buf
	finder := in.sub.worker
	if v.reason == ReasonWrongPayout {
		// The block pays the job's address: credited to the worker of
		// the connection paid there, not to the name it came under.
		finder = cmp.Or(sc.payeeWorker(in.j.cb.payTo), finder)
	}
	if v.err == nil && q.isDuplicate(in.lane, in.j, v.hash) {
		v = rejectf(stratum.CodeDuplicate, ReasonDuplicate, "duplicate share")
	}
	if v.block {
		c.blocks.found(ctx, foundBlock{tmpl: in.j.ep.tmpl, header: v.raw, coinbase: v.cb, hash: v.hash, finder: finder, user: in.user, pplns: in.j.ep.pplns})
	}
	if v.err != nil {
		c.rejectShare(sc, in.to, in.user, v.err, v.reason, banCountable(v.reason, in.f.expired, in.f.eased(&v)))
		return
	}
	sh := ledger.Share{
		Time:        in.f.now,
		Worker:      in.sub.worker,
		Extranonce1: in.en1,
		JobID:       in.sub.jobID,
		Extranonce2: in.sub.en2Hex,
		NTime:       v.ntime,
		Nonce:       v.nonce,
		Version:     v.version,
		Difficulty:  in.j.diff,
		Achieved:    chainmath.HashDifficulty(v.hash),
		Hash:        v.hash,
		Block:       v.block,
	}
	ps := pendingPool.Get().(*pendingShare)
	ps.owner, ps.lane, ps.j, ps.hash, ps.worker, ps.diff, ps.achieved, ps.user, ps.now, ps.start = sc, in.lane, in.j, sh.Hash, sh.Worker, sh.Difficulty, sh.Achieved, in.user, sh.Time, in.start
	ps.to.setID(in.to.id)
	ps.to.chID, ps.to.seq = in.to.chID, in.to.seq
	ps.refs.Store(2)
	q.mu.Lock()
	for len(q.pend) >= maxPipelined {
		q.waitSettled()
	}
	q.pend = append(q.pend, ps)
	q.mu.Unlock()
	c.ledgerQ.add(ctx, ps, sh)
}

// rejectShare answers a share rejected before the ledger (after every
// share before it: answers keep arrival order) and counts it for metrics,
// accounting and, when counts is set (banCountable), the reject rule.
func (c *Coordinator) rejectShare(sc shareConn, to answerTo, user string, err *stratum.Error, reason string, counts bool) {
	q := sc.shares()
	q.drain()
	c.metrics.shares.WithLabelValues(reason).Inc()
	if user != "" {
		c.stats.rejected(user, reason)
	}
	q.mu.Lock()
	sc.rejectLocked(to, err, reason)
	q.mu.Unlock()
	if counts {
		q.countForBan(sc, true, user)
	}
}

// countForBan counts a share towards the reject rule; a connection that
// trips it is closed, and its address judged (closedForRejects).
func (q *connShares) countForBan(sc shareConn, rejected bool, user string) {
	c := q.coord
	q.mu.Lock()
	tripped := q.rejectCount.note(&c.cfg, rejected) && !q.closed
	rule := q.rejectCount
	if tripped {
		q.closed = true
	}
	q.mu.Unlock()
	if !tripped {
		return
	}
	c.closedForRejects(q.ip, q.remote, user, rule, c.cfg.Now())
	sc.closeConn()
}

// isDuplicate reports whether work h was already made durable on lane l
// in this generation; the same work still with the ledger is judged once
// that settles (durable: a duplicate; failed: not one).
func (q *connShares) isDuplicate(l *shareLane, j *job, h chainmath.Hash) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.pendingHash(h) {
		q.waitSettled()
	}
	if j.ep.gen != l.dupGen {
		return false // a newer generation: the job is stale, judged so already
	}
	_, dup := l.dups[h]
	return dup
}

// pendingHash reports whether a share of work h waits for the ledger. mu
// must be held.
func (q *connShares) pendingHash(h chainmath.Hash) bool {
	for _, ps := range q.pend {
		if ps.hash == h {
			return true
		}
	}
	return false
}

// waitSettled waits for some of the connection's shares to be answered
// (mu held, as for settled.Wait). A session read by the event loop tells
// the loop that its reader is blocked meanwhile.
func (q *connShares) waitSettled() {
	var ev *evState
	if q.ev != nil {
		ev = q.ev.Load()
	}
	if ev == nil {
		q.settled.Wait()
		return
	}
	ev.blocking(1)
	q.settled.Wait()
	ev.blocking(-1)
}

// drain waits until every share the connection handed to the ledger has
// been answered: an answer that is not a pipelined share's (another
// method, a rejection) must not overtake theirs.
func (q *connShares) drain() {
	q.mu.Lock()
	for len(q.pend) > 0 {
		q.waitSettled()
	}
	q.mu.Unlock()
}

// maxPipelined is how many shares of one connection may wait for the
// ledger at once; the connection reads no further until one settles.
const maxPipelined = 32

// pendingShare is a valid share handed to the ledger, waiting to be
// answered in its turn. It is held twice, by the connection's queue until
// answered and by the ledger's batch until settled, and goes back to
// pendingPool once both are done with it (release).
type pendingShare struct {
	owner    shareConn
	lane     *shareLane
	to       answerTo
	j        *job
	hash     chainmath.Hash
	worker   string
	diff     float64
	achieved float64
	user     string
	now      time.Time
	start    time.Time
	done     bool
	err      error
	shutdown bool         // err came from the coordinator stopping
	refs     atomic.Int32 // holders left: the connection's queue and the ledger's batch
}

var pendingPool = sync.Pool{New: func() any { return new(pendingShare) }}

// release drops one holder of ps; the last one returns it to the pool.
func (ps *pendingShare) release() {
	if ps.refs.Add(-1) != 0 {
		return
	}
	*ps = pendingShare{}
	pendingPool.Put(ps)
}

// settle records the ledger's outcome for ps and answers every settled
// share at the head of its connection's queue, in order.
func settle(ps *pendingShare, err error, shutdown bool) {
	markSettled(ps, err, shutdown)
	flushSettled(ps.owner)
}

// markSettled records the ledger's outcome for ps.
func markSettled(ps *pendingShare, err error, shutdown bool) {
	q := ps.owner.shares()
	q.mu.Lock()
	ps.done, ps.err, ps.shutdown = true, err, shutdown
	q.mu.Unlock()
}

// flushSettled answers every settled share at the head of sc's queue, in
// order, in one write: accounting first (a miner that has read its
// answer finds the share in Status; stats and metrics are leaf locks),
// then the reject rule and vardiff.
func flushSettled(sc shareConn) {
	q := sc.shares()
	c := q.coord
	q.mu.Lock()
	n := 0
	for n < len(q.pend) && q.pend[n].done {
		n++
	}
	if n == 0 {
		q.mu.Unlock()
		return
	}
	var headArr [maxPipelined]*pendingShare
	heads := headArr[:copy(headArr[:n], q.pend[:n])]
	rest := copy(q.pend, q.pend[n:])
	clear(q.pend[rest:])
	q.pend = q.pend[:rest]
	retarget, banned := false, false
	for _, h := range heads {
		if h.err != nil {
			c.metrics.shares.WithLabelValues(ReasonLedger).Inc()
			c.stats.rejected(h.user, ReasonLedger)
			continue
		}
		c.stats.accepted(h.user, h.diff, h.achieved, h.hash, h.now)
		c.metrics.accepted.Inc()
		c.metrics.shareWork.Add(h.diff)
		c.metrics.shareLatency.Observe(time.Since(h.start).Seconds())
		if h.j.ep.gen == h.lane.dupGen {
			h.lane.remember(h.hash)
		}
		if q.rejectCount.note(&c.cfg, false) && !q.closed {
			banned = true
		}
		if sc.retargetLocked(h) {
			retarget = true
		}
	}
	sc.answerLocked(heads)
	if banned {
		q.closed = true
	}
	rule := q.rejectCount
	if len(q.pend) < maxPipelined {
		q.settled.Broadcast()
	}
	q.mu.Unlock()
	for _, h := range heads {
		if h.err != nil {
			if h.shutdown {
				// Shutting down: the miner is told false and may send
				// it again to the next coordinator.
				c.log.Debug("share not recorded: shutting down", "worker", h.worker, "err", h.err)
			} else {
				c.log.Error("recording share", "worker", h.worker, "err", h.err)
			}
		}
	}
	now, worker := heads[0].now, heads[len(heads)-1].user
	for _, h := range heads {
		h.release()
	}
	if banned {
		c.closedForRejects(q.ip, q.remote, worker, rule, now)
		sc.closeConn()
	}
	if retarget {
		sc.sendRetargeted()
	}
}
