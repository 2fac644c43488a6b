package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/work"
)

// Rejection reasons, as counted per worker and in metrics.
const (
	ReasonMalformed     = "malformed"
	ReasonNotSubscribed = "not-subscribed"
	ReasonUnauthorized  = "unauthorized"
	ReasonJobNotFound   = "job-not-found"
	ReasonStale         = "stale"
	ReasonDuplicate     = "duplicate"
	ReasonExtranonce2   = "bad-extranonce2"
	ReasonNTime         = "bad-ntime"
	ReasonVersion       = "bad-version"
	ReasonLowDifficulty = "low-difficulty"
	ReasonLedger        = "ledger-error"
)

const maxJobsPerSession = 64

// dupKey identifies the work of a share. It names the epoch, not the job
// id: jobs re-sent for a new difficulty carry the same work, and a miner
// that restarts its extranonce2 on every job would otherwise be paid twice
// for the same hash.
type dupKey struct {
	ep                  *epoch
	en2                 uint64
	ntime, nonce, vbits uint32
}

// session is one miner connection. The reader goroutine handles requests
// in order; the broadcaster sends work concurrently. mu guards the state
// and serializes writes so a set_difficulty always precedes its notify.
type session struct {
	c           *Coordinator
	conn        net.Conn
	ln          net.Listener // the listener it came from
	id          uint64
	en1         uint32
	en1Bytes    [4]byte
	en1Hex      string
	remote      string
	ip          string
	connectedAt time.Time

	mu          sync.Mutex
	closed      bool
	subscribed  bool
	workers     map[string]bool
	user        string // first authorized name: payout and accounting
	payout      []byte
	mask        uint32
	diff        float64 // difficulty for the next job
	diffSent    float64 // last mining.set_difficulty sent
	diffTgt     chainmath.Target
	diffTgtFor  float64
	jobs        map[string]*job
	jobOrder    []string
	jobSeq      uint64
	lastEpoch   *epoch
	dups        map[dupKey]struct{}
	vdShares    int
	vdStart     time.Time
	banTotal    int // shares counted towards a ban
	banRejected int
	scratch     []byte
}

func newSession(c *Coordinator, conn net.Conn, id uint64, en1 uint32) *session {
	s := &session{
		c:           c,
		conn:        conn,
		id:          id,
		en1:         en1,
		remote:      conn.RemoteAddr().String(),
		connectedAt: c.cfg.Now(),
		workers:     make(map[string]bool, 1),
		diff:        c.cfg.ShareDifficulty,
		jobs:        make(map[string]*job),
		dups:        make(map[dupKey]struct{}),
	}
	binary.BigEndian.PutUint32(s.en1Bytes[:], en1)
	s.en1Hex = hex.EncodeToString(s.en1Bytes[:])
	return s
}

func (s *session) serve(ctx context.Context) {
	defer func() {
		s.mu.Lock()
		s.closed = true
		user := s.user
		s.mu.Unlock()
		s.conn.Close()
		s.c.dropSession(s)
		if user != "" {
			s.c.stats.disconnected(user)
		}
	}()
	// A small read buffer: a longer line is gathered in pieces, and an
	// idle session (most of them) keeps only this much.
	lr := stratum.NewLineReader(s.conn, s.c.cfg.MaxLineBytes, 256)
	for {
		timeout := s.c.cfg.IdleTimeout
		s.mu.Lock()
		if !s.subscribed || s.user == "" {
			timeout = s.c.cfg.HandshakeTimeout
			if d := time.Until(s.connectedAt.Add(timeout)); d < timeout {
				timeout = max(d, time.Millisecond)
			}
		}
		s.mu.Unlock()
		s.conn.SetReadDeadline(time.Now().Add(timeout))
		line, err := lr.ReadLine()
		if err != nil {
			s.logClose(err)
			return
		}
		m, err := stratum.Parse(line)
		if err != nil {
			s.c.log.Info("closing miner: invalid message", "remote", s.remote, "err", err)
			s.reply(nil, nil, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
			return
		}
		if m.Method == "" {
			continue // a response to something we asked; nothing to do
		}
		s.dispatch(ctx, m)
	}
}

func (s *session) logClose(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		s.c.log.Debug("miner disconnected", "remote", s.remote)
	case errors.Is(err, stratum.ErrLineTooLong):
		s.c.log.Info("closing miner: line too long", "remote", s.remote, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		s.c.log.Info("closing miner: read deadline passed", "remote", s.remote)
	default:
		s.c.log.Debug("miner connection ended", "remote", s.remote, "err", err)
	}
}

func (s *session) dispatch(ctx context.Context, m *stratum.Message) {
	switch m.Method {
	case "mining.subscribe":
		s.handleSubscribe(m)
	case "mining.authorize":
		s.handleAuthorize(m)
	case "mining.configure":
		s.handleConfigure(m)
	case "mining.suggest_difficulty":
		s.handleSuggestDifficulty(m)
	case "mining.extranonce.subscribe":
		s.reply(m.ID, true, nil)
	case "mining.submit":
		s.handleSubmit(ctx, m)
	default:
		s.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("unknown method %q", m.Method)})
	}
}

// reply writes a response. A nil id (a notification) gets no response
// unless it carries an error.
func (s *session) reply(id json.RawMessage, result any, e *stratum.Error) {
	if e == nil && (len(id) == 0 || bytes.Equal(id, []byte("null"))) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bp := wbufPool.Get().(*[]byte)
	buf, err := stratum.AppendResponse((*bp)[:0], id, result, e)
	if err != nil {
		wbufPool.Put(bp)
		s.c.log.Error("encoding response", "err", err)
		return
	}
	s.writeLocked(bp, buf)
}

// wbufPool holds write buffers, so that an idle session keeps none.
var wbufPool = sync.Pool{New: func() any { return new([]byte) }}

// writeLocked sends b, built on the pooled buffer bp, and returns bp to
// the pool; a failed write closes the connection.
func (s *session) writeLocked(bp *[]byte, b []byte) {
	defer func() {
		if cap(b) <= 64<<10 {
			*bp = b[:0]
			wbufPool.Put(bp)
		}
	}()
	if s.closed {
		return
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.WriteTimeout))
	if _, err := s.conn.Write(b); err != nil {
		s.closed = true
		s.conn.Close()
	}
}

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
	password := ""
	if len(p) > 1 {
		password = p[1]
	}
	if why := s.c.authorized(user, password); why != "" {
		s.c.log.Info("miner not authorized", "remote", s.remote, "user", user, "reason", why)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: why})
		return
	}
	script, err := s.c.cfg.Source.PayoutScript(user)
	if err != nil {
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: err.Error()})
		return
	}
	s.mu.Lock()
	s.workers[user] = true
	first := s.user == ""
	if first {
		s.user = user
		s.payout = script
	}
	ready := s.subscribed
	s.mu.Unlock()
	if first {
		s.c.stats.connected(user, s.c.cfg.Now())
		s.c.log.Debug("miner authorized", "remote", s.remote, "user", user, "extranonce1", s.en1Hex)
	}
	s.reply(m.ID, true, nil)
	if first && ready {
		s.sendWork(s.c.jobs.current(), false)
	}
}

func (s *session) handleConfigure(m *stratum.Message) {
	var p []json.RawMessage
	if err := json.Unmarshal(m.Params, &p); err != nil || len(p) < 1 {
		s.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("mining.configure: want [extensions, params], have %s", m.Params)})
		return
	}
	var exts []string
	if err := json.Unmarshal(p[0], &exts); err != nil {
		s.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("mining.configure: extensions %s: want a list of names", p[0])})
		return
	}
	opts := map[string]json.RawMessage{}
	if len(p) > 1 {
		json.Unmarshal(p[1], &opts)
	}
	result := map[string]any{}
	for _, ext := range exts {
		if ext != "version-rolling" {
			result[ext] = false
			continue
		}
		minerMask := uint32(0xffffffff)
		var maskHex string
		if raw, ok := opts["version-rolling.mask"]; ok && json.Unmarshal(raw, &maskHex) == nil {
			v, err := strconv.ParseUint(maskHex, 16, 32)
			if err != nil {
				s.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("mining.configure: version-rolling.mask %q is not hex", maskHex)})
				return
			}
			minerMask = uint32(v)
		}
		mask := s.c.cfg.VersionMask & minerMask
		minBits := 0
		if raw, ok := opts["version-rolling.min-bit-count"]; ok {
			json.Unmarshal(raw, &minBits)
		}
		if bits.OnesCount32(mask) < minBits {
			result["version-rolling"] = false
			continue
		}
		s.mu.Lock()
		s.mask = mask
		s.mu.Unlock()
		result["version-rolling"] = true
		result["version-rolling.mask"] = fmt.Sprintf("%08x", mask)
	}
	s.reply(m.ID, result, nil)
}

func (s *session) handleSuggestDifficulty(m *stratum.Message) {
	var p []json.RawMessage
	var d float64
	if err := json.Unmarshal(m.Params, &p); err == nil && len(p) > 0 {
		if json.Unmarshal(p[0], &d) != nil {
			var str string
			if json.Unmarshal(p[0], &str) == nil {
				d, _ = strconv.ParseFloat(str, 64)
			}
		}
	}
	if !(d > 0) || math.IsInf(d, 0) {
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("mining.suggest_difficulty: %s is not a positive difficulty", m.Params)})
		return
	}
	d = s.c.clampDiff(d)
	s.mu.Lock()
	s.diff = d
	started := s.lastEpoch != nil
	s.mu.Unlock()
	s.reply(m.ID, true, nil)
	if started {
		s.sendWork(s.c.jobs.current(), true)
	}
}

func (c *Coordinator) clampDiff(d float64) float64 {
	return min(max(d, c.cfg.MinDifficulty), c.cfg.MaxDifficulty)
}

// sendWork sends ep to the session as a new job, preceded by
// mining.set_difficulty when the difficulty changed. It does nothing for
// a session without subscribe and authorize, or one that already has ep,
// unless force is set (a difficulty change).
func (s *session) sendWork(ep *epoch, force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.subscribed || s.user == "" {
		return
	}
	if s.lastEpoch == ep && !force {
		return
	}
	cb, err := ep.coinbase(s.payout)
	if err != nil {
		s.c.log.Error("building coinbase", "user", s.user, "err", err)
		return
	}
	now := s.c.cfg.Now()
	s.retargetLocked(now, false)
	clean := s.lastEpoch == nil || s.lastEpoch.gen != ep.gen
	if clean {
		// Keep the previous generation's jobs: a late share on one is
		// answered "stale", and still becomes a block if it is one.
		for id, j := range s.jobs {
			if j.ep.gen+1 < ep.gen {
				delete(s.jobs, id)
			}
		}
		clear(s.dups)
	}
	if s.diffTgtFor != s.diff {
		tgt, err := chainmath.TargetForDifficulty(s.diff)
		if err != nil {
			s.c.log.Error("share target", "difficulty", s.diff, "err", err)
			return
		}
		s.diffTgt, s.diffTgtFor = tgt, s.diff
	}
	s.jobSeq++
	j := &job{id: strconv.FormatUint(s.jobSeq, 16), ep: ep, cb: cb, diff: s.diff, tgt: s.diffTgt}
	s.jobs[j.id] = j
	s.jobOrder = append(s.jobOrder, j.id)
	if len(s.jobOrder) > maxJobsPerSession {
		delete(s.jobs, s.jobOrder[0])
		s.jobOrder = s.jobOrder[1:]
	}
	s.lastEpoch = ep
	bp := wbufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if s.diffSent != s.diff {
		buf, _ = stratum.AppendRequest(buf, nil, "mining.set_difficulty", []float64{s.diff})
		s.diffSent = s.diff
	}
	buf = ep.appendNotify(buf, j, clean)
	// Accounting first: a miner that has read the new difficulty must
	// find it in Status.
	s.c.stats.setDifficulty(s.user, s.diff)
	s.writeLocked(bp, buf)
	if !force {
		s.c.metrics.observeNotify(ep.made)
	}
}

// retargetLocked is vardiff: it moves the difficulty towards
// SharesPerMinute once VardiffInterval has passed (sooner when shares come
// four times too fast), by at most 4× per step. onShare counts a share.
// It reports whether the difficulty changed.
func (s *session) retargetLocked(now time.Time, onShare bool) bool {
	if s.c.cfg.SharesPerMinute < 0 {
		return false
	}
	if s.vdStart.IsZero() {
		s.vdStart = now
	}
	if onShare {
		s.vdShares++
	}
	elapsed := now.Sub(s.vdStart)
	want := s.c.cfg.SharesPerMinute * elapsed.Minutes()
	interval := s.c.cfg.VardiffInterval
	fast := elapsed >= interval/8 && float64(s.vdShares) > 4*s.c.cfg.SharesPerMinute*interval.Minutes()
	if elapsed < interval && !fast {
		return false
	}
	factor := float64(s.vdShares) / want
	factor = min(max(factor, 0.25), 4)
	s.vdShares, s.vdStart = 0, now
	if factor > 0.8 && factor < 1.25 {
		return false
	}
	nd := s.c.clampDiff(s.diff * factor)
	if nd == s.diff {
		return false
	}
	s.diff = nd
	return true
}

type shareResult struct {
	err    *stratum.Error
	reason string
	block  bool
}

func reject(code int, reason, format string, args ...any) shareResult {
	return shareResult{err: &stratum.Error{Code: code, Message: fmt.Sprintf(format, args...)}, reason: reason}
}

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
	res, sh, blk := s.checkShare(p, now)
	if blk != nil {
		s.submitBlock(ctx, blk, p.Worker)
	}
	if res.err != nil {
		s.c.metrics.shares.WithLabelValues(res.reason).Inc()
		s.c.stats.rejected(s.currentUser(), res.reason)
		s.reply(m.ID, false, res.err)
		if banCountable(res.reason) {
			s.countForBan(true, now)
		}
		return
	}
	if err := s.c.cfg.Store.RecordShare(ctx, *sh); err != nil {
		s.c.log.Error("recording share", "worker", p.Worker, "err", err)
		s.c.metrics.shares.WithLabelValues(ReasonLedger).Inc()
		s.c.stats.rejected(s.currentUser(), ReasonLedger)
		s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: "share could not be recorded"})
		return
	}
	s.c.stats.accepted(s.currentUser(), sh.Difficulty, now)
	s.reply(m.ID, true, nil)
	s.c.metrics.shares.WithLabelValues("accepted").Inc()
	s.c.metrics.shareWork.Add(sh.Difficulty)
	s.c.metrics.shareLatency.Observe(time.Since(start).Seconds())
	s.countForBan(false, now)
	s.mu.Lock()
	changed := s.retargetLocked(now, true)
	s.mu.Unlock()
	if changed {
		s.sendWork(s.c.jobs.current(), true)
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

func (s *session) currentUser() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// checkShare validates a submission. It returns the verdict, the ledger
// record of an accepted share, and the block to submit when the share
// meets the block target (even on a stale job: it may still win).
func (s *session) checkShare(p *stratum.Submit, now time.Time) (shareResult, *store.Share, *foundBlock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.subscribed {
		return reject(stratum.CodeNotSubscribed, ReasonNotSubscribed, "not subscribed"), nil, nil
	}
	if !s.workers[p.Worker] {
		return reject(stratum.CodeUnauthorized, ReasonUnauthorized, "worker %q is not authorized", p.Worker), nil, nil
	}
	j := s.jobs[p.JobID]
	if j == nil {
		return reject(stratum.CodeJobNotFound, ReasonJobNotFound, "job %q not found", p.JobID), nil, nil
	}
	en2Size := s.c.cfg.Extranonce2Size
	if len(p.Extranonce2) != 2*en2Size {
		return reject(stratum.CodeOther, ReasonExtranonce2, "extranonce2 %q: want %d bytes", p.Extranonce2, en2Size), nil, nil
	}
	var en2 [8]byte
	if _, err := hex.Decode(en2[:en2Size], []byte(p.Extranonce2)); err != nil {
		return reject(stratum.CodeOther, ReasonExtranonce2, "extranonce2 %q: not hex", p.Extranonce2), nil, nil
	}
	ntime, err := stratum.ParseHex32("ntime", p.NTime)
	if err != nil {
		return reject(stratum.CodeOther, ReasonNTime, "%v", err), nil, nil
	}
	if ntime < j.ep.ntime {
		return reject(stratum.CodeOther, ReasonNTime, "ntime %s is before the job's %s", p.NTime, j.ep.ntimeHex), nil, nil
	}
	if limit := now.Add(s.c.cfg.NTimeFuture).Unix(); int64(ntime) > limit {
		return reject(stratum.CodeOther, ReasonNTime, "ntime %s is more than %s ahead", p.NTime, s.c.cfg.NTimeFuture), nil, nil
	}
	nonce, err := stratum.ParseHex32("nonce", p.Nonce)
	if err != nil {
		return reject(stratum.CodeOther, ReasonMalformed, "%v", err), nil, nil
	}
	var vbits uint32
	if p.VersionBits != "" {
		if vbits, err = stratum.ParseHex32("version bits", p.VersionBits); err != nil {
			return reject(stratum.CodeOther, ReasonVersion, "%v", err), nil, nil
		}
		if vbits&^s.mask != 0 {
			return reject(stratum.CodeOther, ReasonVersion, "version bits %s outside the mask %08x", p.VersionBits, s.mask), nil, nil
		}
	}
	key := dupKey{ep: j.ep, en2: binary.BigEndian.Uint64(en2[:]), ntime: ntime, nonce: nonce, vbits: vbits}
	if _, dup := s.dups[key]; dup {
		return reject(stratum.CodeDuplicate, ReasonDuplicate, "duplicate share"), nil, nil
	}

	cb := append(s.scratch[:0], j.cb.coinb1...)
	cb = append(cb, s.en1Bytes[:]...)
	cb = append(cb, en2[:en2Size]...)
	cb = append(cb, j.cb.coinb2...)
	s.scratch = cb
	tmpl := j.ep.tmpl
	h := chainmath.Header{
		Version:    tmpl.Version&^s.mask | vbits&s.mask,
		PrevBlock:  tmpl.PrevHash,
		MerkleRoot: chainmath.RootFromBranch(chainmath.DoubleSHA256(cb), j.ep.branch),
		Time:       ntime,
		Bits:       tmpl.Bits,
		Nonce:      nonce,
	}
	hb := h.Bytes()
	hash := chainmath.DoubleSHA256(hb[:])
	var blk *foundBlock
	if j.ep.target.Meets(&hash) {
		blk = &foundBlock{tmpl: tmpl, header: hb, coinbase: append([]byte(nil), cb...), hash: hash}
	}
	if s.c.jobs.stale(j.ep) {
		return reject(stratum.CodeJobNotFound, ReasonStale, "job %q is stale", p.JobID), nil, blk
	}
	if blk == nil && !j.tgt.Meets(&hash) {
		return reject(stratum.CodeLowDifficulty, ReasonLowDifficulty, "low difficulty share: %.6g, want %.6g", chainmath.HashDifficulty(hash), j.diff), nil, nil
	}
	s.dups[key] = struct{}{}
	sh := &store.Share{
		Time:        now,
		Worker:      p.Worker,
		Extranonce1: s.en1Hex,
		JobID:       p.JobID,
		Extranonce2: p.Extranonce2,
		NTime:       ntime,
		Nonce:       nonce,
		Version:     h.Version,
		Difficulty:  j.diff,
		Achieved:    chainmath.HashDifficulty(hash),
		Hash:        hash,
		Block:       blk != nil,
	}
	return shareResult{block: blk != nil}, sh, blk
}

// foundBlock is a share that meets the block target.
type foundBlock struct {
	tmpl     *work.Template
	header   [chainmath.HeaderSize]byte
	coinbase []byte
	hash     chainmath.Hash
}

func (s *session) submitBlock(ctx context.Context, fb *foundBlock, finder string) {
	c := s.c
	ev := BlockEvent{Height: fb.tmpl.Height, Hash: fb.hash.String(), Finder: finder, Time: c.cfg.Now()}
	blk, err := work.AssembleBlock(fb.tmpl, fb.header, fb.coinbase)
	if err == nil {
		err = c.cfg.Source.Submit(ctx, blk, finder)
	}
	if err != nil {
		c.blocksRejected.Add(1)
		c.metrics.blocks.WithLabelValues("rejected").Inc()
		ev.Reason = err.Error()
		c.log.Warn("block not accepted", "height", ev.Height, "hash", ev.Hash, "finder", finder, "err", err)
		if c.cfg.OnBlock != nil {
			c.cfg.OnBlock(ev)
		}
		return
	}
	ev.Accepted = true
	c.blocksFound.Add(1)
	c.metrics.blocks.WithLabelValues("accepted").Inc()
	c.stats.block(s.currentUser())
	if c.cfg.RecordBlocks {
		var raw bytes.Buffer
		blk.Serialize(&raw)
		rec := store.Block{Height: fb.tmpl.Height, Hash: fb.hash, Header: fb.header, Raw: raw.Bytes(), Finder: finder, Time: uint32(blk.Header.Timestamp.Unix()), FoundAt: ev.Time}
		if err := c.cfg.Store.AddBlock(ctx, rec); err != nil {
			c.log.Error("recording found block", "hash", ev.Hash, "err", err)
		}
	}
	if c.cfg.OnBlock == nil {
		c.log.Info("block found", "height", ev.Height, "hash", ev.Hash, "finder", finder)
	} else {
		c.log.Debug("block found", "height", ev.Height, "hash", ev.Hash, "finder", finder)
	}
	if c.cfg.OnBlock != nil {
		c.cfg.OnBlock(ev)
	}
}
