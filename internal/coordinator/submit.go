package coordinator

import (
	"cmp"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/stratum"
)

// handleSubmit is mining.submit: validate (validate.go), reject
// duplicates of durable work, hand a block to the found-block record
// (blocks.go), make the share durable, and only then answer true.
//
// id is the request's raw id; it may alias the session's read buffer, so
// it is used before the next line is read.
func (s *session) handleSubmit(ctx context.Context, id json.RawMessage, p *stratum.Submit) {
	start := time.Now()
	now := s.c.cfg.Now()

	j, f, user := s.shareFacts(p, now)
	v, scratch := validateShare(j, &f, p, s.scratch)
	s.scratch = scratch
	finder := p.Worker
	if v.reason == ReasonWrongPayout {
		// The block pays the job's address: credited to the worker of
		// the session paid there, not to the name it came under.
		s.mu.Lock()
		finder = cmp.Or(s.payeeWorker(j.cb.payTo), finder)
		s.mu.Unlock()
	}

	if v.err == nil && s.isDuplicate(j, &v) {
		v.err = &stratum.Error{Code: stratum.CodeDuplicate, Message: "duplicate share"}
		v.reason = ReasonDuplicate
		v.block = false // the first copy was the block
	}
	if v.block {
		s.c.blocks.found(ctx, foundBlock{tmpl: j.ep.tmpl, header: v.raw, coinbase: v.cb, hash: v.hash, finder: finder, user: user, pplns: j.ep.pplns})
	}
	if v.err != nil {
		s.drain()
		s.c.metrics.shares.WithLabelValues(v.reason).Inc()
		s.c.stats.rejected(user, v.reason)
		s.reply(id, false, v.err)
		if banCountable(v.reason, f.expired, f.eased(&v)) {
			s.countForBan(true, now)
		}
		return
	}
	sh := ledger.Share{
		Time:        now,
		Worker:      p.Worker,
		Extranonce1: s.en1Hex,
		JobID:       p.JobID,
		Extranonce2: p.Extranonce2,
		NTime:       v.ntime,
		Nonce:       v.nonce,
		Version:     v.version,
		Difficulty:  j.diff,
		Achieved:    chainmath.HashDifficulty(v.hash),
		Hash:        v.hash,
		Block:       v.block,
	}
	s.pipeline(ctx, id, j, sh, user, start)
}

// maxPipelined is how many shares of one session may wait for the ledger
// at once; the session reads no further until one settles.
const maxPipelined = 32

// pendingShare is a valid share handed to the ledger, waiting to be
// answered in its turn. It is held twice, by the session's queue until
// answered and by the ledger's batch until settled, and goes back to
// pendingPool once both are done with it (release).
type pendingShare struct {
	s        *session
	id       []byte // the request id, copied (into idBuf when it fits)
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
	refs     atomic.Int32 // holders left: the session's queue and the ledger's batch
	idBuf    [8]byte
}

var pendingPool = sync.Pool{New: func() any { return new(pendingShare) }}

// release drops one holder of ps; the last one returns it to the pool.
func (ps *pendingShare) release() {
	if ps.refs.Add(-1) != 0 {
		return
	}
	*ps = pendingShare{id: ps.idBuf[:0]}
	pendingPool.Put(ps)
}

// pipeline hands a valid share to the ledger and returns without waiting
// for it: the session goes on reading while the ledger commits (a miner
// sends its shares without waiting for the answers). The share is
// answered true only once the ledger has made it durable, and answers go
// out in the order of the requests: settle writes every settled answer at
// the head of the queue in one write.
func (s *session) pipeline(ctx context.Context, id json.RawMessage, j *job, sh ledger.Share, user string, start time.Time) {
	ps := pendingPool.Get().(*pendingShare)
	ps.s, ps.j, ps.hash, ps.worker, ps.diff, ps.achieved, ps.user, ps.now, ps.start = s, j, sh.Hash, sh.Worker, sh.Difficulty, sh.Achieved, user, sh.Time, start
	if len(id) <= len(ps.idBuf) {
		ps.id = append(ps.idBuf[:0], id...)
	} else {
		ps.id = append([]byte(nil), id...)
	}
	ps.refs.Store(2)
	s.mu.Lock()
	for len(s.pend) >= maxPipelined {
		s.waitSettled()
	}
	s.pend = append(s.pend, ps)
	s.mu.Unlock()
	s.c.ledgerQ.add(ctx, ps, sh)
}

// settle records the ledger's outcome for ps and answers every settled
// share at the head of the session's queue, in order, in one write.
func (s *session) settle(ps *pendingShare, err error, shutdown bool) {
	s.markSettled(ps, err, shutdown)
	s.flushSettled()
}

// markSettled records the ledger's outcome for ps.
func (s *session) markSettled(ps *pendingShare, err error, shutdown bool) {
	s.mu.Lock()
	ps.done, ps.err, ps.shutdown = true, err, shutdown
	s.mu.Unlock()
}

// flushSettled answers every settled share at the head of the session's
// queue, in order, in one write.
func (s *session) flushSettled() {
	s.mu.Lock()
	n := 0
	for n < len(s.pend) && s.pend[n].done {
		n++
	}
	if n == 0 {
		s.mu.Unlock()
		return
	}
	var headArr [maxPipelined]*pendingShare
	heads := headArr[:copy(headArr[:n], s.pend[:n])]
	rest := copy(s.pend, s.pend[n:])
	clear(s.pend[rest:])
	s.pend = s.pend[:rest]
	bp := wbufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	retarget := false
	banned := false
	for _, h := range heads {
		// Accounting before the answer: a miner that has read it
		// finds the share in Status (stats and metrics are leaf locks).
		if h.err != nil {
			s.c.metrics.shares.WithLabelValues(ReasonLedger).Inc()
			s.c.stats.rejected(h.user, ReasonLedger)
			buf = stratum.AppendResult(buf, h.id, false, errNotRecorded)
			continue
		}
		s.c.stats.accepted(h.user, h.diff, h.achieved, h.hash, h.now)
		s.c.metrics.accepted.Inc()
		s.c.metrics.shareWork.Add(h.diff)
		s.c.metrics.shareLatency.Observe(time.Since(h.start).Seconds())
		if h.j.ep.gen == s.dupGen {
			s.rememberLocked(h.hash)
		}
		buf = stratum.AppendResult(buf, h.id, true, nil)
		if s.rejectCount.note(&s.c.cfg, false) && !s.closed {
			banned = true
		}
		if d, changed := s.vd.retarget(h.now, s.diff, true); changed {
			s.diff = d
			retarget = true
		}
	}
	s.writeLocked(bp, buf)
	if banned {
		s.closed = true
	}
	rule, worker := s.rejectCount, s.user
	if len(s.pend) < maxPipelined {
		s.settled.Broadcast()
	}
	s.mu.Unlock()
	for _, h := range heads {
		if h.err != nil {
			if h.shutdown {
				// Shutting down: the miner is told false and may send
				// it again to the next coordinator.
				s.c.log.Debug("share not recorded: shutting down", "worker", h.worker, "err", h.err)
			} else {
				s.c.log.Error("recording share", "worker", h.worker, "err", h.err)
			}
		}
	}
	now := heads[0].now
	for _, h := range heads {
		h.release()
	}
	if banned {
		s.c.closedForRejects(s.ip, s.remote, worker, rule, now)
		s.closeConn()
	}
	if retarget {
		s.sendWork(s.c.jobs.current(), true)
	}
}

var errNotRecorded = &stratum.Error{Code: stratum.CodeOther, Message: "share could not be recorded; send it again"}

// waitSettled waits for some of the session's shares to be answered
// (s.mu held, as for s.settled.Wait). A session read by the event loop
// tells the loop that its reader is blocked meanwhile.
func (s *session) waitSettled() {
	ev := s.ev.Load()
	if ev == nil {
		s.settled.Wait()
		return
	}
	ev.blocking(1)
	s.settled.Wait()
	ev.blocking(-1)
}

// drain waits until every share the session handed to the ledger has
// been answered: an answer that is not a pipelined share's (another
// method, a rejection) must not overtake theirs.
func (s *session) drain() {
	s.mu.Lock()
	for len(s.pend) > 0 {
		s.waitSettled()
	}
	s.mu.Unlock()
}

// shareFacts copies, under the session lock, what validating p needs: its
// job (nil when unknown), the session facts and the session's account.
func (s *session) shareFacts(p *stratum.Submit, now time.Time) (*job, shareFacts, string) {
	s.mu.Lock()
	j := s.findJob(p.JobID)
	var expired bool
	if j == nil {
		seq, ok := parseJobID(p.JobID)
		expired = ok && seq <= s.jobSeq
	}
	f := shareFacts{
		expired:     expired,
		current:     s.diffSent,
		subscribed:  s.subscribed,
		authorized:  s.isWorker(p.Worker),
		payTo:       s.payoutOf(p.Worker),
		en1:         s.en1Bytes,
		en2Size:     s.c.cfg.Extranonce2Size,
		mask:        s.mask,
		now:         now,
		ntimeFuture: s.c.cfg.NTimeFuture,
	}
	user := s.user
	s.mu.Unlock()
	if j != nil {
		f.stale = s.c.jobs.stale(j.ep)
	}
	return j, f, user
}

// isDuplicate reports whether the work of v (its header hash) was already
// made durable in this generation.
func (s *session) isDuplicate(j *job, v *verdict) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The same work still with the ledger: judge it once that settles
	// (durable: a duplicate; failed: not one).
	for s.pendingHash(v.hash) {
		s.waitSettled()
	}
	if j.ep.gen != s.dupGen {
		return false // a newer generation: the job is stale, judged so already
	}
	_, dup := s.dups[v.hash]
	return dup
}

// findJob returns the session's job with id (the lower-case hex that
// sendWork wrote), or nil.
func (s *session) findJob(id string) *job {
	seq, ok := parseJobID(id)
	if !ok {
		return nil
	}
	for i := len(s.jobs) - 1; i >= 0; i-- {
		if s.jobs[i].seq == seq {
			return s.jobs[i].j
		}
	}
	return nil
}

// parseJobID reads a V1 job id: lower-case hex without leading zeros, as
// strconv.FormatUint(seq, 16) writes it; any other spelling names no job.
func parseJobID(id string) (uint64, bool) {
	if id == "" || len(id) > 16 || id[0] == '0' {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// pendingHash reports whether a share of work h waits for the ledger.
// s.mu must be held.
func (s *session) pendingHash(h chainmath.Hash) bool {
	for _, ps := range s.pend {
		if ps.hash == h {
			return true
		}
	}
	return false
}

// rememberDurable records the work of v, now durable in the ledger, so
// that the same header is a duplicate from here on.
func (s *session) rememberDurable(j *job, v *verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.ep.gen == s.dupGen {
		s.rememberLocked(v.hash)
	}
}

// rememberLocked adds h to the durable work of this generation (the set is
// made with the first share: an idle session keeps none). s.mu must be
// held.
func (s *session) rememberLocked(h chainmath.Hash) {
	if s.dups == nil {
		s.dups = make(map[chainmath.Hash]struct{})
	}
	s.dups[h] = struct{}{}
}

// countForBan counts a share towards the reject rule; a session that
// trips it is closed, and its address judged (closedForRejects).
func (s *session) countForBan(rejected bool, now time.Time) {
	s.mu.Lock()
	tripped := s.rejectCount.note(&s.c.cfg, rejected) && !s.closed
	rule, worker := s.rejectCount, s.user
	if tripped {
		s.closed = true
	}
	s.mu.Unlock()
	if !tripped {
		return
	}
	s.c.closedForRejects(s.ip, s.remote, worker, rule, now)
	s.closeConn()
}
