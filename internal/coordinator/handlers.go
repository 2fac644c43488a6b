package coordinator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/stratum"
)

// The request handlers of a session, one per Stratum method, and sendWork,
// which turns an epoch into a job for the session.

func (s *session) handleSubscribe(m *stratum.Message) {
	s.mu.Lock()
	s.subscribed = true
	ready := s.user != ""
	s.mu.Unlock()
	result := []any{
		[][]string{{"mining.set_difficulty", s.en1Hex}, {"mining.notify", s.en1Hex}},
		s.en1Hex,
		s.c.cfg.Extranonce2Size,
	}
	s.reply(m.ID, result, nil)
	if ready {
		s.sendWork(s.c.jobs.current(), false)
	}
}

func (s *session) handleAuthorize(m *stratum.Message) {
	var p []string
	if err := json.Unmarshal(m.Params, &p); err != nil || len(p) < 1 {
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("mining.authorize: want [user, password], have %s", m.Params)})
		return
	}
	user := p[0]
	if user == "" {
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: "empty username"})
		return
	}
	if err := ledger.CheckWorker(user); err != nil {
		s.c.log.Info("miner not authorized: bad worker name", "remote", s.remote, "err", err)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: "mining.authorize: " + err.Error()})
		return
	}
	password := ""
	if len(p) > 1 {
		password = p[1]
	}
	password, fixed, err := parsePassword(password)
	if err != nil {
		s.c.log.Info("miner not authorized: bad password field", "remote", s.remote, "user", user, "err", err)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
		return
	}
	if why := s.c.authorized(user, password); why != "" {
		s.c.log.Info("miner not authorized", "remote", s.remote, "user", user, "reason", why)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: why})
		return
	}
	// The payout label's script (the name up to its first '.'): every
	// worker of one address mines the same coinbase.
	script, err := s.c.scriptOf(user)
	if err != nil {
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: err.Error()})
		return
	}
	s.mu.Lock()
	first := s.user == ""
	newPayee := false
	switch {
	case first:
		s.user = user
		// A copy of exact size: txscript's builder hands back a
		// script in a 500-byte array, kept as long as the session.
		s.payout = bytes.Clone(script)
	case user != s.user:
		if _, ok := s.moreWorkers[user]; ok {
			break
		}
		pay := s.payeeScriptLocked(script)
		if pay == nil {
			// Another address: its work gets a coinbase of its own.
			if 1+len(s.morePayees) >= maxPayeesPerSession {
				s.mu.Unlock()
				s.c.log.Info("miner not authorized: too many payout addresses on one connection", "remote", s.remote, "user", user, "max", maxPayeesPerSession)
				s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: fmt.Sprintf("worker %q: this connection already mines for %d payout addresses, the most one connection may", user, maxPayeesPerSession)})
				return
			}
			pay = bytes.Clone(script)
			s.morePayees = append(s.morePayees, payee{script: pay, worker: user})
			newPayee = true
		}
		if s.moreWorkers == nil {
			s.moreWorkers = make(map[string][]byte, 1)
		}
		s.moreWorkers[user] = pay
	}
	ready := s.subscribed
	refix := false
	if fixed > 0 {
		// d=N: this difficulty from now on, vardiff off; the listener's
		// floor still applies.
		d := s.clampSession(fixed)
		refix = s.lastEpoch != nil && d != s.diff
		s.diff, s.fixedDiff = d, true
		s.vd.perMinute = -1
	}
	s.mu.Unlock()
	if first {
		s.c.stats.connected(user, s.remote, s.c.cfg.Now())
		s.c.log.Debug("miner authorized", "remote", s.remote, "user", user, "extranonce1", s.en1Hex)
	}
	s.reply(m.ID, true, nil)
	switch {
	case first && ready:
		s.sendWork(s.c.jobs.current(), false)
	case refix:
		s.sendWork(s.c.jobs.current(), true)
	case newPayee && ready:
		s.sendPayeeWork(s.c.jobs.current(), script)
	}
}

func (s *session) handleConfigure(m *stratum.Message) {
	result, mask, e := stratum.Configure(m.Params, s.c.cfg.VersionMask)
	if e != nil {
		s.reply(m.ID, nil, e)
		return
	}
	if mask != 0 {
		s.mu.Lock()
		s.mask = mask
		s.mu.Unlock()
	}
	s.reply(m.ID, result, nil)
}

func (s *session) handleSuggestDifficulty(m *stratum.Message) {
	d, err := stratum.ParseSuggestDifficulty(m.Params)
	if err != nil {
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
		return
	}
	d = s.clampSession(d)
	s.mu.Lock()
	if s.fixedDiff {
		// A d= password field is the operator's choice and wins.
		s.mu.Unlock()
		s.reply(m.ID, true, nil)
		return
	}
	changed := d != s.diff
	s.diff = d
	// Vardiff measures afresh from the suggested difficulty: the shares
	// counted so far were found at another one.
	s.vd.shares, s.vd.start = 0, s.c.cfg.Now()
	started := s.lastEpoch != nil
	s.mu.Unlock()
	s.reply(m.ID, true, nil)
	if started && changed {
		s.sendWork(s.c.jobs.current(), true)
	}
}

// sendWork sends ep to the session as new jobs, one for each payout
// address the session mines for (its workers' payout scripts, in
// authorize order; one job when the coinbase pays the epoch's outputs),
// preceded by mining.set_difficulty when the difficulty changed. It does
// nothing for a session without subscribe and authorize, or one that
// already has ep, unless force is set (a difficulty change).
func (s *session) sendWork(ep *epoch, force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.subscribed || s.user == "" {
		return
	}
	if s.lastEpoch == ep && !force {
		return
	}
	s.sendJobsLocked(ep, force, nil)
}

// sendPayeeWork sends the job of ep for script, a payout address a
// worker just authorized on a session that has work already: the other
// addresses' jobs stand. When ep is newer than the session's work, every
// address gets its job of ep (sendWork).
func (s *session) sendPayeeWork(ep *epoch, script []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.subscribed || s.user == "" || s.lastEpoch == nil {
		return
	}
	if s.lastEpoch != ep {
		s.sendJobsLocked(ep, false, nil)
		return
	}
	s.sendJobsLocked(ep, true, script)
}

// sendJobsLocked sends ep's jobs for the session's payout addresses, or
// only for the address only when it is set. The first job of a new
// generation goes out clean, the rest not: a miner drops its old jobs
// once and keeps every address's new one. s.mu must be held.
func (s *session) sendJobsLocked(ep *epoch, force bool, only []byte) {
	// A re-issue of the same epoch (a new difficulty) gets a new coinbase
	// variant: miners that reset extranonce2 on every job id would
	// otherwise hash, and send, the same headers again. A new payout
	// address's first job takes the variant the others' jobs have.
	variant := s.reissue.n
	if only == nil {
		v, ok := s.reissue.variant(ep)
		if !ok {
			return
		}
		variant = v
	}
	var cbArr [maxPayeesPerSession]*coinbaseParts
	cbs := cbArr[:0]
	for i := 0; i <= len(s.morePayees); i++ {
		script := s.payout
		if i > 0 {
			script = s.morePayees[i-1].script
		}
		if only != nil && !bytes.Equal(script, only) {
			continue
		}
		cb, err := ep.coinbase(script, variant)
		if err != nil {
			s.c.log.Error("building coinbase", "user", s.user, "err", err)
			return
		}
		if !slices.Contains(cbs, cb) { // PPLNS: one coinbase for all
			cbs = append(cbs, cb)
		}
	}
	if only != nil {
		// A coinbase the session has a job of already (PPLNS: the
		// one coinbase) needs no second job.
		cbs = slices.DeleteFunc(cbs, func(cb *coinbaseParts) bool {
			return slices.ContainsFunc(s.jobs, func(r jobRef) bool { return r.j.ep == ep && r.j.cb == cb })
		})
	}
	if len(cbs) == 0 {
		return
	}
	if d, changed := s.vd.retarget(s.c.cfg.Now(), s.diff, false); changed {
		s.diff = d
	}
	clean := s.lastEpoch == nil || s.lastEpoch.gen != ep.gen
	if clean {
		// Keep the previous generation's jobs: a late share on one is
		// answered "stale", and still becomes a block if it is one.
		s.jobs = slices.DeleteFunc(s.jobs, func(r jobRef) bool { return r.j.ep.gen+1 < ep.gen })
		if ep.gen != s.dupGen {
			clear(s.dups)
			s.dupGen = ep.gen
		}
	}
	if s.diffTgtFor != s.diff {
		tgt, err := chainmath.TargetForDifficulty(s.diff)
		if err != nil {
			s.c.log.Error("share target", "difficulty", s.diff, "err", err)
			return
		}
		s.diffTgt, s.diffTgtFor = tgt, s.diff
	}
	s.lastEpoch = ep
	bp := wbufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if s.diffSent != s.diff {
		buf, _ = stratum.AppendRequest(buf, nil, "mining.set_difficulty", []float64{s.diff})
		s.diffSent = s.diff
		// Accounting before the write: a miner that has read the new
		// difficulty must find it in Status. Only on a change: the
		// accounting lock is shared by every session, and a broadcast
		// would otherwise take it once per session.
		s.c.stats.setDifficulty(s.user, s.diff)
	}
	for i, cb := range cbs {
		s.jobSeq++
		// The job itself is shared by every session with this epoch,
		// payout and difficulty; the session keeps its id and a
		// pointer.
		j := ep.job(cb, s.diff, s.diffTgt)
		if len(s.jobs) == maxJobsPerSession {
			s.jobs = slices.Delete(s.jobs, 0, 1)
		}
		s.jobs = append(s.jobs, jobRef{seq: s.jobSeq, j: j})
		var idHex [16]byte
		buf = ep.appendNotifyID(buf, j, strconv.AppendUint(idHex[:0], s.jobSeq, 16), clean && i == 0)
	}
	s.writeLocked(bp, buf)
	if !force {
		s.c.metrics.observeNotify(ep.made)
	}
}

// isWorker reports whether name was authorized on the session; s.mu held.
func (s *session) isWorker(name string) bool {
	if name == s.user {
		return name != ""
	}
	_, ok := s.moreWorkers[name]
	return ok
}

// payoutOf returns the payout script of the session's worker name (nil
// when name is not authorized); s.mu held.
func (s *session) payoutOf(name string) []byte {
	if name == s.user {
		return s.payout
	}
	return s.moreWorkers[name]
}

// payeeScriptLocked returns the session's copy of script when one of its
// workers is paid to it already, else nil; s.mu held.
func (s *session) payeeScriptLocked(script []byte) []byte {
	if bytes.Equal(script, s.payout) {
		return s.payout
	}
	for _, p := range s.morePayees {
		if bytes.Equal(script, p.script) {
			return p.script
		}
	}
	return nil
}

// payeeWorkerLocked returns the first worker of the session paid to
// script: the finder of a block mined on a job whose coinbase pays
// script; s.mu held.
func (s *session) payeeWorkerLocked(script []byte) string {
	if bytes.Equal(script, s.payout) {
		return s.user
	}
	for _, p := range s.morePayees {
		if bytes.Equal(script, p.script) {
			return p.worker
		}
	}
	return ""
}
