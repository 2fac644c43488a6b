package proxy

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
	"github.com/powcoord/powcoord/internal/vardiff"
)

// maxQueued is how many bytes may wait for a miner that does not read
// before it is closed.
const maxQueued = 1 << 20

// ntimeFuture is how far ahead of the clock a share's ntime may be.
const ntimeFuture = 7000

// miner is one V1 connection. Its fields but conn, remote, slot and the
// output queue are guarded by Proxy.mu; everything it is sent is queued
// under Proxy.mu, so lines go out in the order the state changed.
type miner struct {
	p      *Proxy
	conn   net.Conn
	remote string
	slot   uint16

	omu    sync.Mutex
	out    []byte
	wake   chan struct{}
	closed bool

	subscribed, authorized, extranonceSub bool
	user                                  string
	mask                                  uint32
	en1                                   []byte
	en2Size                               int
	diff, oldDiff                         float64
	sentDiff                              float64
	vd                                    vardiff.Controller
	last                                  *job
	dups                                  map[chainmath.Hash]struct{}
	dupGen                                uint64

	accepted, forwarded, upAccepted, upRejected uint64
	rejected                                    map[int]uint64
}

// serveMiner runs one miner connection until it ends.
func (p *Proxy) serveMiner(ctx context.Context, conn net.Conn) {
	m := &miner{p: p, conn: conn, remote: conn.RemoteAddr().String(), wake: make(chan struct{}, 1), dups: map[chainmath.Hash]struct{}{}, rejected: map[int]uint64{},
		vd: vardiff.Controller{PerMinute: p.cfg.SharesPerMinute, Interval: p.cfg.VardiffInterval, Max: math.MaxFloat64}}
	if p.cfg.MaxDifficulty > 0 {
		m.vd.Max = p.cfg.MaxDifficulty
	}
	p.mu.Lock()
	ok := !p.closed && p.allocSlot(m)
	p.mu.Unlock()
	if !ok {
		p.log.Info("miner refused: every extranonce slot is taken", "remote", m.remote, "slots", 1<<(8*SlotSize))
		conn.Close()
		return
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		m.writer()
	}()
	defer func() {
		conn.Close()
		m.omu.Lock()
		m.closed = true
		m.omu.Unlock()
		select {
		case m.wake <- struct{}{}:
		default:
		}
		<-writerDone
		p.mu.Lock()
		delete(p.miners, m.slot)
		p.mu.Unlock()
	}()
	start := p.cfg.Now()
	lr := stratum.NewLineReader(conn, p.cfg.MaxLine, 1024)
	for {
		p.mu.Lock()
		ready := m.subscribed && m.authorized
		p.mu.Unlock()
		if ready {
			conn.SetReadDeadline(time.Now().Add(p.cfg.IdleTimeout))
		} else {
			conn.SetReadDeadline(time.Now().Add(p.cfg.HandshakeTimeout - p.cfg.Now().Sub(start)))
		}
		line, err := lr.ReadLine()
		if err != nil {
			switch {
			case errors.Is(err, stratum.ErrLineTooLong):
				p.log.Info("miner closed: line too long", "remote", m.remote, "max", p.cfg.MaxLine)
			case errors.Is(err, net.ErrClosed) || ctx.Err() != nil:
			default:
				p.log.Debug("miner disconnected", "remote", m.remote, "err", err)
			}
			return
		}
		msg, err := stratum.Parse(line)
		if err != nil {
			p.log.Info("miner closed: bad line", "remote", m.remote, "err", err)
			return
		}
		m.handle(ctx, msg)
	}
}

// allocSlot gives m the next free extranonce slot. p.mu must be held.
func (p *Proxy) allocSlot(m *miner) bool {
	for range 1 << (8 * SlotSize) {
		s := p.nextSlot
		p.nextSlot++
		if _, taken := p.miners[s]; !taken {
			m.slot = s
			p.miners[s] = m
			return true
		}
	}
	return false
}

// send queues b for the miner; a miner that lets too much pile up is
// closed.
func (m *miner) send(b []byte) {
	m.omu.Lock()
	if m.closed {
		m.omu.Unlock()
		return
	}
	if len(m.out)+len(b) > maxQueued {
		m.omu.Unlock()
		m.p.log.Info("miner closed: not reading its work", "remote", m.remote, "queued_bytes", len(m.out))
		m.conn.Close()
		return
	}
	m.out = append(m.out, b...)
	m.omu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// writer writes the queue until the miner is closed.
func (m *miner) writer() {
	var buf []byte
	for range m.wake {
		m.omu.Lock()
		buf, m.out = m.out, buf[:0]
		closed := m.closed
		m.omu.Unlock()
		if len(buf) > 0 {
			m.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := m.conn.Write(buf); err != nil {
				m.conn.Close()
			}
		}
		if closed {
			return
		}
	}
}

// replyLocked queues a response. Proxy.mu must be held.
func (m *miner) replyLocked(id json.RawMessage, result any, e *stratum.Error) {
	b, err := stratum.AppendResponse(nil, id, result, e)
	if err != nil {
		m.p.log.Error("encoding a response", "err", err)
		return
	}
	m.send(b)
}

func (m *miner) reply(id json.RawMessage, result any, e *stratum.Error) {
	m.p.mu.Lock()
	m.replyLocked(id, result, e)
	m.p.mu.Unlock()
}

// handle answers one request.
func (m *miner) handle(ctx context.Context, msg *stratum.Message) {
	p := m.p
	switch msg.Method {
	case "mining.subscribe":
		m.subscribe(ctx, msg)
	case "mining.authorize":
		var params []string
		if err := json.Unmarshal(msg.Params, &params); err != nil || len(params) < 1 {
			m.reply(msg.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("mining.authorize: want [user, password], have %.100s", msg.Params)})
			return
		}
		if err := ledger.CheckWorker(params[0]); err != nil {
			p.log.Info("miner not authorized: bad worker name", "remote", m.remote, "err", err)
			m.reply(msg.ID, false, &stratum.Error{Code: stratum.CodeUnauthorized, Message: "mining.authorize: " + err.Error()})
			return
		}
		p.mu.Lock()
		first := !m.authorized
		m.authorized = true
		if first {
			m.user = params[0]
		}
		m.replyLocked(msg.ID, true, nil)
		if p.cur != nil {
			m.workLocked(p.cur, false)
		}
		p.mu.Unlock()
		if first {
			p.log.Debug("miner authorized", "remote", m.remote, "worker", params[0], "slot", m.slot)
		}
	case "mining.configure":
		result, mask, e := stratum.Configure(msg.Params, p.cfg.VersionMask)
		p.mu.Lock()
		if e == nil && mask != 0 {
			m.mask = mask
		}
		m.replyLocked(msg.ID, result, e)
		p.mu.Unlock()
	case "mining.suggest_difficulty":
		d, err := stratum.ParseSuggestDifficulty(msg.Params)
		if err != nil {
			m.reply(msg.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
			return
		}
		p.mu.Lock()
		m.setDiffLocked(d)
		m.vd.Shares, m.vd.Start = 0, p.cfg.Now()
		m.replyLocked(msg.ID, true, nil)
		m.announceDiffLocked()
		p.mu.Unlock()
	case "mining.extranonce.subscribe":
		p.mu.Lock()
		m.extranonceSub = true
		m.replyLocked(msg.ID, true, nil)
		p.mu.Unlock()
	case "mining.submit":
		m.submit(msg)
	default:
		if !msg.IsNotification() && msg.Method != "" {
			m.reply(msg.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("method %.60q not supported", msg.Method)})
		}
	}
}

// subscribe answers mining.subscribe once a channel is open (waiting up
// to the handshake timeout for one).
func (m *miner) subscribe(ctx context.Context, msg *stratum.Message) {
	p := m.p
	p.mu.Lock()
	ready := p.upReady
	p.mu.Unlock()
	t := time.NewTimer(p.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
	case <-ctx.Done():
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.up
	if ch == nil {
		m.replyLocked(msg.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: "no upstream pool connected: try again"})
		return
	}
	m.en1, m.en2Size = p.extranonceFor(ch, m.slot)
	m.subscribed = true
	if m.diff == 0 {
		m.setDiffLocked(p.cfg.StartDifficulty)
	}
	id := hex.EncodeToString(m.en1)
	m.replyLocked(msg.ID, []any{[][]string{{"mining.set_difficulty", id}, {"mining.notify", id}}, id, m.en2Size}, nil)
	if p.cur != nil {
		m.workLocked(p.cur, false)
	}
}

// floorLocked is the lowest difficulty a miner may have: the channel's
// (every share the miner finds can then go upstream) or the configured
// minimum, whichever is higher.
func (m *miner) floorLocked() float64 {
	lo := m.p.cfg.MinDifficulty
	if up := m.p.up; up != nil {
		lo = max(lo, difficultyOf(up.target))
	}
	return lo
}

// setDiffLocked sets the miner's difficulty to d within its bounds.
func (m *miner) setDiffLocked(d float64) {
	lo := m.floorLocked()
	if hi := m.p.cfg.MaxDifficulty; hi > 0 {
		d = min(d, hi)
	}
	d = max(d, lo)
	if d <= 0 {
		d = 1
	}
	if m.diff != d {
		m.oldDiff = m.diff
	}
	m.diff = d
}

// workLocked queues job j (with mining.set_difficulty first when the
// difficulty changed) unless the miner is not ready or already has it;
// force sends it again, clean (the miner has a new extranonce1). p.mu must be
// held.
func (m *miner) workLocked(j *job, force bool) {
	if !m.subscribed || !m.authorized || (m.last == j && !force) {
		return
	}
	if m.diff < m.floorLocked() {
		m.setDiffLocked(m.diff)
	}
	m.announceDiffLocked()
	var b []byte
	n := j.sj.Notify()
	n.Clean = j.sj.Clean || force
	if m.last == nil || m.last.ch != j.ch {
		n.Clean = true // a new channel: nothing older is worth finishing
	}
	b, _ = stratum.AppendRequest(b, nil, "mining.notify", n)
	if m.last == nil || m.last.gen != j.gen {
		m.oldDiff = 0 // shares of older blocks are stale anyway
	}
	m.last = j
	m.send(b)
}

// announceDiffLocked queues mining.set_difficulty when the difficulty
// changed since the last one. It applies from the miner's next job: a
// job is never sent twice (a miner restarting its extranonce2 on each
// job would only find the same shares again); until the next job comes,
// shares are judged at the lower of the two difficulties.
func (m *miner) announceDiffLocked() {
	if m.diff == m.sentDiff || !m.subscribed || !m.authorized {
		return
	}
	b, _ := stratum.AppendRequest(nil, nil, "mining.set_difficulty", []float64{m.diff})
	m.sentDiff = m.diff
	m.send(b)
}

// reject counts a refused share and queues the error. p.mu must be held.
func (m *miner) rejectLocked(id json.RawMessage, code int, msg string) {
	m.rejected[code]++
	m.p.totals.rejected++
	m.replyLocked(id, nil, &stratum.Error{Code: code, Message: msg})
}

// submit judges a V1 share: job known and of the open channel,
// extranonce2 of the right size, ntime and version bits in bounds, not a
// duplicate, meeting the miner's difficulty. The answer is queued at
// once; a share that meets the channel's target is then forwarded.
func (m *miner) submit(msg *stratum.Message) {
	p := m.p
	now := p.cfg.Now()
	p.mu.Lock()
	if !m.subscribed {
		m.rejectLocked(msg.ID, stratum.CodeNotSubscribed, "not subscribed")
		p.mu.Unlock()
		return
	}
	if !m.authorized {
		m.rejectLocked(msg.ID, stratum.CodeUnauthorized, "not authorized")
		p.mu.Unlock()
		return
	}
	fwd, err := m.judgeLocked(msg, now)
	if err != nil {
		m.rejectLocked(msg.ID, err.Code, err.Message)
		p.mu.Unlock()
		return
	}
	m.accepted++
	p.totals.accepted++
	m.replyLocked(msg.ID, true, nil)
	m.vd.Min = m.floorLocked()
	if d, changed := m.vd.Retarget(now, m.diff, true); changed {
		m.setDiffLocked(d)
		m.announceDiffLocked()
	}
	p.mu.Unlock()
	if fwd != nil {
		p.forward(m, fwd)
	}
}

// share is a share on its way upstream.
type share struct {
	ch    *channel
	msg   sv2.SubmitSharesExtended
	block bool
}

// judgeLocked checks one submit; it returns the share to forward (nil
// when it does not meet the channel's target) or the error to answer.
func (m *miner) judgeLocked(msg *stratum.Message, now time.Time) (*share, *stratum.Error) {
	p := m.p
	s, err := stratum.ParseSubmit(msg.Params)
	if err != nil {
		return nil, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()}
	}
	j := p.jobs[s.JobID]
	if j == nil || j.ch != p.up {
		return nil, &stratum.Error{Code: stratum.CodeJobNotFound, Message: fmt.Sprintf("job %.40q not found (stale)", s.JobID)}
	}
	en2, err := hex.DecodeString(s.Extranonce2)
	if err != nil || len(en2) != m.en2Size {
		return nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("extranonce2 %.40q: want %d bytes of hex", s.Extranonce2, m.en2Size)}
	}
	ntime, err := stratum.ParseHex32("ntime", s.NTime)
	if err != nil {
		return nil, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()}
	}
	if ntime < j.sj.NTime || int64(ntime) > now.Unix()+ntimeFuture {
		return nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("ntime %08x out of range: from the job's %08x to %d s ahead of now", ntime, j.sj.NTime, ntimeFuture)}
	}
	nonce, err := stratum.ParseHex32("nonce", s.Nonce)
	if err != nil {
		return nil, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()}
	}
	var vbits uint32
	mask := m.mask
	if !j.rolling {
		mask = 0
	}
	if s.VersionBits != "" {
		if vbits, err = stratum.ParseHex32("version bits", s.VersionBits); err != nil {
			return nil, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()}
		}
		if vbits&^mask != 0 {
			return nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("version bits %08x outside the granted mask %08x", vbits, mask)}
		}
	}
	h := j.sj.Header(m.en1, en2, ntime, nonce, vbits, mask)
	hash := h.Hash()
	if j.gen != m.dupGen {
		clear(m.dups)
		m.dupGen = j.gen
	}
	if _, dup := m.dups[hash]; dup {
		return nil, &stratum.Error{Code: stratum.CodeDuplicate, Message: "duplicate share"}
	}
	d := m.diff
	if m.oldDiff > 0 {
		d = min(d, m.oldDiff) // shares of jobs sent before a difficulty change
	}
	tgt, terr := chainmath.TargetForDifficulty(d)
	if terr != nil || !tgt.Meets(&hash) {
		return nil, &stratum.Error{Code: stratum.CodeLowDifficulty, Message: fmt.Sprintf("low difficulty share: %.6g, want %.6g", chainmath.HashDifficulty(hash), d)}
	}
	m.dups[hash] = struct{}{}
	if !j.ch.target.Meets(&hash) {
		return nil, nil
	}
	ext := make([]byte, 0, j.ch.size)
	ext = append(ext, m.en1[len(j.ch.prefix):]...)
	ext = append(ext, en2...)
	return &share{ch: j.ch, block: j.block.Meets(&hash), msg: sv2.SubmitSharesExtended{ChannelID: j.ch.id, JobID: j.upID, Nonce: nonce, NTime: ntime, Version: h.Version, Extranonce: ext}}, nil
}

// forward sends s upstream, numbered in the order it is written (so the
// pool's SubmitShares.Success, which acknowledges every share up to a
// sequence number, names exactly the shares it took).
func (p *Proxy) forward(m *miner, s *share) {
	ch := s.ch
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	p.mu.Lock()
	if p.up != ch {
		p.mu.Unlock()
		return // the channel closed in between: the pool will not take it
	}
	ch.seq++
	s.msg.SequenceNumber = ch.seq
	ch.pending[ch.seq] = &forwarded{m: m}
	m.forwarded++
	p.totals.forwarded++
	p.perUp[ch.url].Forwarded++
	if s.block {
		p.totals.blocks++
	}
	p.mu.Unlock()
	if s.block {
		p.log.Info("block candidate forwarded", "upstream", ch.url, "worker", m.user)
	}
	ch.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ch.conn.WriteMessages(&s.msg); err != nil {
		p.log.Info("share not sent upstream", "upstream", ch.url, "err", err)
		ch.raw.Close()
	}
}
