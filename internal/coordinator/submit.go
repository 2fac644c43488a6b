package coordinator

import (
	"context"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// handleSubmit is mining.submit: validate (validate.go), reject
// duplicates of durable work, hand a block to the found-block record
// (blocks.go), make the share durable, and only then answer true.
func (s *session) handleSubmit(ctx context.Context, m *stratum.Message) {
	start := time.Now()
	p, err := stratum.ParseSubmit(m.Params)
	if err != nil {
		s.c.metrics.shares.WithLabelValues(ReasonMalformed).Inc()
		s.c.stats.rejected(s.currentUser(), ReasonMalformed)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
		return
	}
	now := s.c.cfg.Now()

	j, f, user := s.shareFacts(p, now)
	v, scratch := validateShare(j, &f, p, s.scratch)
	s.scratch = scratch

	if v.err == nil && s.isDuplicate(j, &v) {
		v.err = &stratum.Error{Code: stratum.CodeDuplicate, Message: "duplicate share"}
		v.reason = ReasonDuplicate
		v.block = false // the first copy was the block
	}
	if v.block {
		s.c.blocks.found(ctx, foundBlock{tmpl: j.ep.tmpl, header: v.raw, coinbase: v.cb, hash: v.hash, finder: p.Worker, user: user})
	}
	if v.err != nil {
		s.c.metrics.shares.WithLabelValues(v.reason).Inc()
		s.c.stats.rejected(user, v.reason)
		s.reply(m.ID, false, v.err)
		if banCountable(v.reason) {
			s.countForBan(true, now)
		}
		return
	}
	sh := store.Share{
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
	if err := s.c.cfg.Store.RecordShare(ctx, sh); err != nil {
		if ctx.Err() != nil {
			// Shutting down: the miner is told false and may send it
			// again to the next coordinator.
			s.c.log.Debug("share not recorded: shutting down", "worker", p.Worker, "err", err)
		} else {
			s.c.log.Error("recording share", "worker", p.Worker, "err", err)
		}
		s.c.metrics.shares.WithLabelValues(ReasonLedger).Inc()
		s.c.stats.rejected(user, ReasonLedger)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: "share could not be recorded; send it again"})
		return
	}
	s.rememberDurable(j, &v)
	s.c.stats.accepted(user, sh.Difficulty, now)
	s.reply(m.ID, true, nil)
	s.c.metrics.shares.WithLabelValues("accepted").Inc()
	s.c.metrics.shareWork.Add(sh.Difficulty)
	s.c.metrics.shareLatency.Observe(time.Since(start).Seconds())
	s.countForBan(false, now)
	s.mu.Lock()
	d, changed := s.vd.retarget(now, s.diff, true)
	if changed {
		s.diff = d
	}
	s.mu.Unlock()
	if changed {
		s.sendWork(s.c.jobs.current(), true)
	}
}

// shareFacts copies, under the session lock, what validating p needs: its
// job (nil when unknown), the session facts and the session's account.
func (s *session) shareFacts(p *stratum.Submit, now time.Time) (*job, shareFacts, string) {
	s.mu.Lock()
	j := s.jobs[p.JobID]
	f := shareFacts{
		subscribed:  s.subscribed,
		authorized:  s.workers[p.Worker],
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
	if j.ep.gen != s.dupGen {
		return false // a newer generation: the job is stale, judged so already
	}
	_, dup := s.dups[v.hash]
	return dup
}

// rememberDurable records the work of v, now durable in the ledger, so
// that the same header is a duplicate from here on.
func (s *session) rememberDurable(j *job, v *verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.ep.gen == s.dupGen {
		s.dups[v.hash] = struct{}{}
	}
}

// countForBan counts a share towards the ban rule; when the session has
// earned a ban, its address is banned and the connection closed.
func (s *session) countForBan(rejected bool, now time.Time) {
	s.mu.Lock()
	banned := s.noteShareLocked(rejected)
	total, bad := s.banTotal, s.banRejected
	if banned {
		s.closed = true
	}
	s.mu.Unlock()
	if !banned {
		return
	}
	s.c.ban(s.ip, now)
	s.c.metrics.bans.Inc()
	s.c.log.Warn("banning miner: shares mostly rejected", "remote", s.remote, "ip", s.ip, "shares", total, "rejected", bad, "for", s.c.cfg.BanDuration)
	s.conn.Close()
}
