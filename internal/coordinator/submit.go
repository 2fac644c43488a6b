package coordinator

import (
	"context"
	"encoding/json"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
)

// handleSubmit is mining.submit: its hex fields parsed into a
// submission, then the one share path (shares.go): validation,
// duplicates, the found-block record, the ledger, and only then true.
//
// id is the request's raw id; it may alias the session's read buffer, so
// it is used before the next line is read.
func (s *session) handleSubmit(ctx context.Context, id json.RawMessage, p *stratum.Submit) {
	in := shareIn{start: time.Now(), lane: &s.shareLane, en1: s.en1Hex, to: answerTo{id: id}}
	in.j, in.f, in.user = s.shareFacts(p, s.c.cfg.Now())
	parseSubmit(p, in.f.en2Size, &in.sub, &s.en2Buf)
	s.c.takeShare(ctx, s, &in, &s.scratch)
}

// shares, answerLocked, rejectLocked, retargetLocked and sendRetargeted
// make a session a shareConn: its answers are JSON results.
func (s *session) shares() *connShares { return &s.connShares }

func (s *session) answerLocked(heads []*pendingShare) {
	bp := wbufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, h := range heads {
		if h.err != nil {
			buf = stratum.AppendResult(buf, h.to.id, false, errNotRecorded)
		} else {
			buf = stratum.AppendResult(buf, h.to.id, true, nil)
		}
	}
	s.writeLocked(bp, buf)
}

func (s *session) rejectLocked(to answerTo, err *stratum.Error, _ string) {
	s.replyLocked(to.id, false, err)
}

func (s *session) payeeWorker(script []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.payeeWorkerLocked(script)
}

func (s *session) retargetLocked(h *pendingShare) bool {
	d, changed := s.vd.retarget(h.now, s.diff, true)
	if changed {
		s.diff = d
	}
	return changed
}

func (s *session) sendRetargeted() { s.sendWork(s.c.jobs.current(), true) }

var errNotRecorded = &stratum.Error{Code: stratum.CodeOther, Message: "share could not be recorded; send it again"}

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
