package coordinator

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/proxyproto"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// The Stratum V2 front-end (docs/stratum-v2.md, "The coordinator"): the
// same jobs, validateShare, ledger, accounting and bans as Stratum V1,
// over Noise-encrypted binary frames. A V2 channel is a worker like a V1
// session: it gets its own extranonce1 from the same allocator, and its
// shares are judged by the same validateShare on a stratum.Submit built
// from the binary fields.

// SV2 error codes powcoord sends (the specification lets each
// implementation choose; these follow SRI's where it has one).
const (
	SV2ErrInvalidChannel    = "invalid-channel-id"
	SV2ErrInvalidJob        = "invalid-job-id"
	SV2ErrStale             = "stale-share"
	SV2ErrDuplicate         = "duplicate-share"
	SV2ErrLowDifficulty     = "difficulty-too-low"
	SV2ErrNTime             = "invalid-timestamp"
	SV2ErrVersion           = "invalid-version-bits"
	SV2ErrExtranonceSize    = "bad-extranonce-size"
	SV2ErrLedger            = "share-not-recorded"
	SV2ErrMaxTarget         = "max-target-out-of-range"
	SV2ErrUnknownUser       = "unknown-user"
	SV2ErrTooManyChannels   = "too-many-channels"
	SV2ErrExtranonceTooBig  = "min-extranonce-size-too-large"
	SV2ErrUnsupportedFlags  = "unsupported-feature-flags"
	SV2ErrUnsupportedProto  = "unsupported-protocol"
	SV2ErrVersionMismatch   = "protocol-version-mismatch"
	SV2ErrCustomJobRefused  = "custom-jobs-not-supported"
	sv2MaxChannels          = 64
	sv2FlagWorkSelection    = 1 << 1
	sv2ProtocolMining       = 0
	sv2Version              = 2
	sv2ReasonMalformedFrame = "malformed"
)

// SV2ErrInvalidUserIdentity refuses a channel whose user identity is no
// worker name (ledger.CheckWorker): empty, too long, not UTF-8 or with a
// control character.
const SV2ErrInvalidUserIdentity = "invalid-user-identity"

// sv2Code maps a rejection reason to the SubmitShares.Error code.
func sv2Code(reason string) string {
	switch reason {
	case ReasonJobNotFound:
		return SV2ErrInvalidJob
	case ReasonStale:
		return SV2ErrStale
	case ReasonDuplicate:
		return SV2ErrDuplicate
	case ReasonLowDifficulty:
		return SV2ErrLowDifficulty
	case ReasonNTime:
		return SV2ErrNTime
	case ReasonVersion:
		return SV2ErrVersion
	case ReasonExtranonce2:
		return SV2ErrExtranonceSize
	case ReasonLedger:
		return SV2ErrLedger
	case ReasonUnauthorized, ReasonNotSubscribed:
		return SV2ErrInvalidChannel
	}
	return reason
}

// WithSV2 returns ln marked to speak Stratum V2 with srv's keys: hand the
// result to Serve or Run beside the V1 listeners.
func WithSV2(ln net.Listener, srv *sv2.Server) net.Listener {
	return &sv2Listener{Listener: ln, srv: srv}
}

type sv2Listener struct {
	net.Listener
	srv    *sv2.Server
	detect bool // V1 too (WithSV2Detect)
}

// sv2ListenerOf returns the WithSV2 or WithSV2Detect listener under ln
// (also under WithMinDifficulty), or nil for a V1 listener.
func sv2ListenerOf(ln net.Listener) *sv2Listener {
	if m, ok := ln.(*diffListener); ok {
		ln = m.Listener
	}
	l, _ := ln.(*sv2Listener)
	return l
}

// v2conn is one V2 connection: its reader goroutine handles frames in
// order; the broadcaster sends work concurrently under mu.
type v2conn struct {
	c           *Coordinator
	raw         net.Conn
	ln          net.Listener
	id          uint64
	connectedAt time.Time
	floor, ceil float64 // the listener's difficulty floor and ceiling

	conn *sv2.Conn
	br   *bufio.Reader

	mu sync.Mutex // guards the fields below and orders writes
	// connShares: the share path's half of the connection (its address,
	// closed, the reject rule, the shares with the ledger).
	connShares
	setup       bool
	workSelect  bool // REQUIRES_WORK_SELECTION accepted (sv2custom.go)
	channels    map[uint32]*v2channel
	nextChannel uint32
	retargeted  []*v2channel // channels whose vardiff moved: new work follows

	scratch []byte // the coinbase being rebuilt; reader goroutine only
}

// v2channel is one mining channel; v2conn.mu guards it.
type v2channel struct {
	id       uint32
	extended bool
	user     string
	payout   []byte
	en1      uint32
	en1Bytes [4]byte
	en1Hex   string
	en2      []byte // a standard channel's fixed extranonce2 (zeros)
	mask     uint32

	diff      float64
	tgt       chainmath.Target
	minDiff   float64 // raised by the channel's maximum target
	sentTgt   chainmath.Target
	tgtSent   bool
	jobs      map[uint32]*job
	jobOrder  []uint32
	jobSeq    uint32
	lastEpoch *epoch
	reissue   reissue // coinbase variants of lastEpoch's jobs
	shareLane         // duplicates and vardiff
}

// addJob makes a job of ep and cb one of the channel's jobs, at its
// current difficulty, under the next job id (the oldest dropped past
// maxJobsPerSession); a job of a new generation empties the duplicate
// set first. The pool's work (sendWorkLocked) and a declared custom job
// (registerCustomJob) both come this way. v2conn.mu must be held.
func (ch *v2channel) addJob(ep *epoch, cb *coinbaseParts) *job {
	if ep.gen != ch.dupGen {
		clear(ch.dups)
		ch.dupGen = ep.gen
	}
	ch.jobSeq++
	j := &job{id: strconv.FormatUint(uint64(ch.jobSeq), 10), ep: ep, cb: cb, diff: ch.diff, tgt: ch.tgt}
	ch.jobs[ch.jobSeq] = j
	ch.jobOrder = append(ch.jobOrder, ch.jobSeq)
	if len(ch.jobOrder) > maxJobsPerSession {
		delete(ch.jobs, ch.jobOrder[0])
		ch.jobOrder = ch.jobOrder[1:]
	}
	return j
}

// serveSV2 runs one accepted V2 connection.
func (c *Coordinator) serveSV2(ctx context.Context, raw net.Conn, ln net.Listener, srv *sv2.Server) {
	ip := remoteIP(raw.RemoteAddr())
	now := c.cfg.Now()
	if c.noWork.Load() {
		c.refuseSV2(raw, "no work: the work source is stale")
		return
	}
	c.mu.Lock()
	reason := c.admitLocked(ip, now)
	var v *v2conn
	if reason == "" {
		c.nextSID++
		v = &v2conn{c: c, raw: raw, ln: ln, id: c.nextSID, connectedAt: now,
			channels: make(map[uint32]*v2channel), floor: listenerMinDifficulty(ln), ceil: listenerMaxDifficulty(ln, &c.cfg)}
		v.connShares.init(c, &v.mu, ip, raw.RemoteAddr().String())
		c.v2[v.id] = v
	}
	c.mu.Unlock()
	if v == nil {
		c.refuseSV2(raw, reason)
		return
	}
	defer v.finish()
	raw.SetDeadline(now.Add(c.cfg.HandshakeTimeout))
	v.br = bufio.NewReaderSize(raw, 4096)
	// The handshake's first message is 64 bytes: its first 12 show a
	// PROXY header from a peer not trusted to send one (a trusted
	// proxy's header was taken by the listener).
	if b, _ := v.br.Peek(12); proxyproto.StartsWithHeader(b) {
		c.log.Info("closing sv2 miner: PROXY header from an address not trusted to send one", "remote", v.remote)
		return
	}
	conn, err := srv.Handshake(struct {
		io.Reader
		io.Writer
	}{v.br, raw})
	if err != nil {
		c.log.Info("closing sv2 miner: handshake failed", "remote", v.remote, "err", err)
		return
	}
	v.mu.Lock()
	v.conn = conn
	v.mu.Unlock()
	raw.SetWriteDeadline(time.Time{})
	v.serve(ctx)
}

// refuseSV2 closes a connection refused at admission: V2 has no message a
// server can send before the handshake, so the miner just sees the close.
func (c *Coordinator) refuseSV2(conn net.Conn, reason string) {
	c.metrics.refused.WithLabelValues(reason).Inc()
	c.log.Info("refusing sv2 miner", "remote", conn.RemoteAddr().String(), "reason", reason)
	conn.Close()
}

// finish drops the connection and its channels, once the shares with the
// ledger are answered.
func (v *v2conn) finish() {
	v.drain()
	v.mu.Lock()
	v.closed = true
	chans := v.channels
	v.channels = map[uint32]*v2channel{}
	v.mu.Unlock()
	v.raw.Close()
	v.c.mu.Lock()
	delete(v.c.v2, v.id)
	for _, ch := range chans {
		delete(v.c.en1Live, ch.en1)
	}
	if v.c.perIP[v.ip]--; v.c.perIP[v.ip] <= 0 {
		delete(v.c.perIP, v.ip)
	}
	v.c.mu.Unlock()
	for _, ch := range chans {
		v.c.stats.disconnected(ch.user)
	}
}

func (v *v2conn) serve(ctx context.Context) {
	for {
		now := v.c.cfg.Now()
		deadline := now.Add(v.c.cfg.IdleTimeout)
		v.mu.Lock()
		if !v.setup || len(v.channels) == 0 {
			// SetupConnection and a first channel within the
			// handshake deadline, counted from the connection.
			deadline = v.connectedAt.Add(v.c.cfg.HandshakeTimeout)
			if !deadline.After(now) {
				deadline = now.Add(time.Millisecond)
			}
		}
		v.mu.Unlock()
		v.raw.SetReadDeadline(deadline)
		h, m, err := v.conn.ReadMessage()
		if err != nil {
			v.logClose(err)
			return
		}
		if m == nil {
			continue // an extension's message: ignored (never negotiated)
		}
		if !v.dispatch(ctx, h, m) {
			return
		}
	}
}

func (v *v2conn) logClose(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrClosedPipe):
		v.c.log.Debug("sv2 miner disconnected", "remote", v.remote)
	case errors.Is(err, sv2.ErrDecrypt):
		v.c.log.Info("closing sv2 miner: frame failed authentication", "remote", v.remote)
	case errors.Is(err, sv2.ErrFrameTooLarge):
		v.c.log.Info("closing sv2 miner: frame over the cap", "remote", v.remote, "err", err)
	case errors.Is(err, sv2.ErrUnknownMessage), errors.Is(err, sv2.ErrShort):
		v.c.log.Info("closing sv2 miner: invalid frame", "remote", v.remote, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		v.c.log.Info("closing sv2 miner: read deadline passed", "remote", v.remote)
	default:
		v.c.log.Info("closing sv2 miner: invalid message", "remote", v.remote, "err", err)
	}
}

// dispatch handles one message; false closes the connection.
func (v *v2conn) dispatch(ctx context.Context, h sv2.Header, m sv2.Message) bool {
	v.mu.Lock()
	setup := v.setup
	v.mu.Unlock()
	if _, first := m.(*sv2.SetupConnection); first != !setup {
		v.c.log.Info("closing sv2 miner: SetupConnection must come first, once", "remote", v.remote, "message", sv2.MessageName(h.MsgType))
		return false
	}
	switch m := m.(type) {
	case *sv2.SetupConnection:
		return v.handleSetup(m)
	case *sv2.OpenStandardMiningChannel:
		v.openChannel(m.RequestID, m.UserIdentity, m.NominalHashRate, m.MaxTarget, false, 0)
	case *sv2.OpenExtendedMiningChannel:
		v.openChannel(m.RequestID, m.UserIdentity, m.NominalHashRate, m.MaxTarget, true, int(m.MinExtranonceSize))
	case *sv2.UpdateChannel:
		v.updateChannel(m)
	case *sv2.CloseChannel:
		v.closeChannel(m.ChannelID)
	case *sv2.SubmitSharesStandard:
		v.submit(ctx, m.ChannelID, m.SequenceNumber, m.JobID, m.Nonce, m.NTime, m.Version, nil, false)
	case *sv2.SubmitSharesExtended:
		v.submit(ctx, m.ChannelID, m.SequenceNumber, m.JobID, m.Nonce, m.NTime, m.Version, m.Extranonce, true)
	case *sv2.SetCustomMiningJob:
		v.setCustomJob(m) // sv2custom.go
	default:
		// A message only a server sends: the peer is not a miner.
		v.c.log.Info("closing sv2 miner: unexpected message", "remote", v.remote, "message", sv2.MessageName(h.MsgType))
		return false
	}
	return true
}

func (v *v2conn) handleSetup(m *sv2.SetupConnection) bool {
	var fail *sv2.SetupConnectionError
	switch {
	case m.Protocol != sv2ProtocolMining:
		fail = &sv2.SetupConnectionError{ErrorCode: SV2ErrUnsupportedProto}
	case m.MinVersion > sv2Version || m.MaxVersion < sv2Version:
		fail = &sv2.SetupConnectionError{ErrorCode: SV2ErrVersionMismatch}
	case m.Flags&sv2FlagWorkSelection != 0 && v.c.cfg.JobDeclarations == nil:
		fail = &sv2.SetupConnectionError{Flags: sv2FlagWorkSelection, ErrorCode: SV2ErrUnsupportedFlags}
	}
	if fail != nil {
		v.c.log.Info("refusing sv2 miner: SetupConnection", "remote", v.remote, "error", fail.ErrorCode, "protocol", m.Protocol, "versions", []uint16{m.MinVersion, m.MaxVersion}, "flags", m.Flags)
		v.write(fail)
		return false
	}
	v.mu.Lock()
	v.setup = true
	v.workSelect = m.Flags&sv2FlagWorkSelection != 0
	v.mu.Unlock()
	v.write(&sv2.SetupConnectionSuccess{UsedVersion: sv2Version})
	v.c.log.Debug("sv2 miner set up", "remote", v.remote, "vendor", m.Vendor, "hardware", m.HardwareVersion, "firmware", m.Firmware)
	return true
}

// write sends messages in order; a failed write closes the connection.
func (v *v2conn) write(ms ...sv2.Message) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.writeLocked(ms...)
}

func (v *v2conn) writeLocked(ms ...sv2.Message) {
	if v.closed || v.conn == nil {
		return
	}
	v.raw.SetWriteDeadline(v.c.cfg.Now().Add(v.c.cfg.WriteTimeout))
	if err := v.conn.WriteMessages(ms...); err != nil {
		v.closed = true
		v.raw.Close()
	}
}

// targetFor is the share target of difficulty d.
func targetFor(d float64) (chainmath.Target, error) { return chainmath.TargetForDifficulty(d) }

// difficultyOfTarget is the difficulty whose target is t.
func difficultyOfTarget(t chainmath.Target) float64 {
	if t == (chainmath.Target{}) {
		return math.Inf(1)
	}
	return chainmath.TargetToDifficulty(t.Big())
}

func (v *v2conn) openChannel(reqID uint32, identity string, rate float32, maxTarget sv2.U256, extended bool, minEn int) {
	fail := func(code string) { v.write(&sv2.OpenMiningChannelError{RequestID: reqID, ErrorCode: code}) }
	cfg := &v.c.cfg
	user, password, _ := strings.Cut(identity, ":")
	if user == "" {
		fail(SV2ErrUnknownUser)
		return
	}
	if err := ledger.CheckWorker(user); err != nil {
		v.c.log.Info("sv2 miner not authorized: bad worker name", "remote", v.remote, "err", err)
		fail(SV2ErrInvalidUserIdentity)
		return
	}
	if why := v.c.authorized(user, password); why != "" {
		v.c.log.Info("sv2 miner not authorized", "remote", v.remote, "user", user, "reason", why)
		fail(SV2ErrUnknownUser)
		return
	}
	if extended && minEn > cfg.Extranonce2Size {
		fail(SV2ErrExtranonceTooBig)
		return
	}
	script, err := v.c.scriptOf(user)
	if err != nil {
		v.c.log.Info("sv2 miner not authorized: no payout", "remote", v.remote, "user", user, "err", err)
		fail(SV2ErrUnknownUser)
		return
	}
	// The difficulty: the configured start, or one that gives the wanted
	// share rate at the stated hash rate; never easier than max_target.
	lo := max(cfg.MinDifficulty, v.floor)
	d := cfg.ShareDifficulty
	if h := float64(rate); cfg.SharesPerMinute > 0 && h > 0 && !math.IsInf(h, 0) {
		d = h * 60 / (cfg.SharesPerMinute * 4294967296)
	}
	maxDiff := difficultyOfTarget(chainmath.Target(maxTarget))
	lo = max(lo, maxDiff)
	if lo > v.ceil {
		fail(SV2ErrMaxTarget)
		return
	}
	d = min(max(d, lo), v.ceil)
	tgt, err := targetFor(d)
	if err != nil {
		fail(SV2ErrMaxTarget)
		return
	}
	mt := chainmath.Target(maxTarget)
	if !mt.Meets((*chainmath.Hash)(&tgt)) {
		tgt = mt // rounding: never above the miner's maximum
	}
	// The extranonce1 comes first: Coordinator.mu is taken before v.mu.
	v.c.mu.Lock()
	en1 := v.c.allocExtranonce1()
	v.c.mu.Unlock()
	v.mu.Lock()
	if v.closed || len(v.channels) >= sv2MaxChannels {
		closed := v.closed
		v.mu.Unlock()
		v.c.mu.Lock()
		delete(v.c.en1Live, en1)
		v.c.mu.Unlock()
		if !closed {
			fail(SV2ErrTooManyChannels)
		}
		return
	}
	v.nextChannel++
	ch := &v2channel{id: v.nextChannel, extended: extended, user: user, payout: script, mask: cfg.VersionMask, en1: en1,
		diff: d, tgt: tgt, minDiff: lo, jobs: make(map[uint32]*job)}
	ch.vd = newVardiff(cfg)
	ch.vd.min, ch.vd.max = lo, v.ceil
	binary.BigEndian.PutUint32(ch.en1Bytes[:], ch.en1)
	ch.en1Hex = hex.EncodeToString(ch.en1Bytes[:])
	v.channels[ch.id] = ch
	ch.sentTgt, ch.tgtSent = tgt, true
	// Accounting before the answer (the stats lock is a leaf): a miner
	// that has its channel finds its worker in Status.
	v.c.stats.connected(user, v.remote, v.c.cfg.Now())
	if extended {
		v.writeLocked(&sv2.OpenExtendedMiningChannelSuccess{RequestID: reqID, ChannelID: ch.id, Target: sv2.U256(tgt),
			ExtranonceSize: uint16(cfg.Extranonce2Size), ExtranoncePrefix: append([]byte(nil), ch.en1Bytes[:]...)})
	} else {
		ch.en2 = make([]byte, cfg.Extranonce2Size)
		v.writeLocked(&sv2.OpenStandardMiningChannelSuccess{RequestID: reqID, ChannelID: ch.id, Target: sv2.U256(tgt),
			ExtranoncePrefix: append(append([]byte(nil), ch.en1Bytes[:]...), ch.en2...)})
	}
	v.sendWorkLocked(ch, v.c.jobs.current(), false)
	v.mu.Unlock()
	v.c.log.Debug("sv2 channel opened", "remote", v.remote, "user", user, "channel", ch.id, "extended", extended, "extranonce1", ch.en1Hex, "difficulty", d)
}

// sendWork sends ep to every channel of the connection.
func (v *v2conn) sendWork(ep *epoch, force bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, ch := range v.channels {
		v.sendWorkLocked(ch, ep, force)
	}
}

// sendWorkLocked sends ch a job of ep: SetTarget first when the target
// changed, then NewMiningJob (standard) or NewExtendedMiningJob; on a new
// previous block the job goes out as a future job followed by
// SetNewPrevHash. v.mu must be held.
func (v *v2conn) sendWorkLocked(ch *v2channel, ep *epoch, force bool) {
	if v.closed || (ch.lastEpoch == ep && !force) {
		return
	}
	// A new target on the same epoch comes with a new coinbase variant:
	// SetTarget does not apply to a job already active (the
	// specification's SetTarget), and the same merkle root under a new
	// job id would have the miner hash the same headers again.
	variant, ok := ch.reissue.variant(ep)
	if !ok {
		return
	}
	cb, err := ep.coinbase(ch.payout, variant)
	if err != nil {
		v.c.log.Error("building coinbase", "user", ch.user, "err", err)
		return
	}
	now := v.c.cfg.Now()
	if d, changed := ch.vd.retarget(now, ch.diff, false); changed {
		v.setDiffLocked(ch, d)
	}
	clean := ch.lastEpoch == nil || ch.lastEpoch.gen != ep.gen
	if clean {
		for id, j := range ch.jobs {
			if j.ep.gen+1 < ep.gen {
				delete(ch.jobs, id)
			}
		}
	}
	ch.addJob(ep, cb)
	ch.lastEpoch = ep
	var msgs []sv2.Message
	if !ch.tgtSent || ch.sentTgt != ch.tgt {
		msgs = append(msgs, &sv2.SetTarget{ChannelID: ch.id, MaximumTarget: sv2.U256(ch.tgt)})
		ch.sentTgt, ch.tgtSent = ch.tgt, true
	}
	minNTime := sv2.SomeU32(ep.ntime)
	if clean {
		minNTime = sv2.OptionU32{} // a future job, activated by SetNewPrevHash
	}
	if ch.extended {
		path := make([]sv2.U256, len(ep.branch))
		for i, b := range ep.branch {
			path[i] = sv2.U256(b)
		}
		msgs = append(msgs, &sv2.NewExtendedMiningJob{ChannelID: ch.id, JobID: ch.jobSeq, MinNTime: minNTime, Version: ep.tmpl.Version,
			VersionRollingAllowed: ch.mask != 0, MerklePath: path, CoinbaseTxPrefix: cb.coinb1, CoinbaseTxSuffix: cb.coinb2})
	} else {
		root := cb.sj.MerkleRoot(ch.en1Bytes[:], ch.en2)
		msgs = append(msgs, &sv2.NewMiningJob{ChannelID: ch.id, JobID: ch.jobSeq, MinNTime: minNTime, Version: ep.tmpl.Version, MerkleRoot: sv2.U256(root)})
	}
	if clean {
		msgs = append(msgs, &sv2.SetNewPrevHash{ChannelID: ch.id, JobID: ch.jobSeq, PrevHash: sv2.U256(ep.tmpl.PrevHash), MinNTime: ep.ntime, NBits: ep.tmpl.Bits})
	}
	v.c.stats.setDifficulty(ch.user, ch.diff)
	v.writeLocked(msgs...)
	if !force {
		v.c.metrics.observeNotify(ep.made)
	}
}

// setDiffLocked sets the channel's difficulty and target.
func (v *v2conn) setDiffLocked(ch *v2channel, d float64) {
	d = min(max(d, ch.minDiff), v.ceil)
	tgt, err := targetFor(d)
	if err != nil {
		v.c.log.Error("share target", "difficulty", d, "err", err)
		return
	}
	ch.diff, ch.tgt = d, tgt
}

func (v *v2conn) updateChannel(m *sv2.UpdateChannel) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ch := v.channels[m.ChannelID]
	if ch == nil {
		v.writeLocked(&sv2.UpdateChannelError{ChannelID: m.ChannelID, ErrorCode: SV2ErrInvalidChannel})
		return
	}
	lo := max(v.c.cfg.MinDifficulty, v.floor, difficultyOfTarget(chainmath.Target(m.MaximumTarget)))
	if lo > v.ceil {
		v.writeLocked(&sv2.UpdateChannelError{ChannelID: m.ChannelID, ErrorCode: SV2ErrMaxTarget})
		return
	}
	ch.minDiff, ch.vd.min = lo, lo
	if ch.diff < lo {
		// The miner lowered its maximum target below ours: follow at
		// once (SetTarget, then a job at the new target).
		v.setDiffLocked(ch, lo)
		v.sendWorkLocked(ch, v.c.jobs.current(), true)
	}
}

func (v *v2conn) closeChannel(id uint32) {
	v.mu.Lock()
	ch := v.channels[id]
	delete(v.channels, id)
	v.mu.Unlock()
	if ch == nil {
		return
	}
	v.c.mu.Lock()
	delete(v.c.en1Live, ch.en1)
	v.c.mu.Unlock()
	v.c.stats.disconnected(ch.user)
}

// submit takes one SubmitShares.Standard or .Extended: its binary fields
// become a submission for the one share path (shares.go).
func (v *v2conn) submit(ctx context.Context, chID, seq, jobID, nonce, ntime, version uint32, extranonce []byte, extended bool) {
	in := shareIn{start: time.Now(), to: answerTo{chID: chID, seq: seq}}
	now := v.c.cfg.Now()
	v.mu.Lock()
	ch := v.channels[chID]
	if ch == nil || ch.extended != extended {
		v.mu.Unlock()
		// The V2 answer is the code alone (SV2ErrInvalidChannel).
		v.c.rejectShare(v, in.to, "", &stratum.Error{Code: stratum.CodeUnauthorized, Message: "no such open channel"}, ReasonUnauthorized, true)
		return
	}
	j := ch.jobs[jobID]
	// A job id the channel was sent that our job changes have since
	// dropped: not the miner's fault (banCountable).
	expired := j == nil && jobID != 0 && jobID <= ch.jobSeq
	if j != nil && ch.diff < j.diff {
		// SetTarget applies to jobs already sent: judge at the easier
		// target, credit its difficulty.
		jj := *j
		jj.diff, jj.tgt = ch.diff, ch.tgt
		j = &jj
	}
	en2 := ch.en2
	if extended {
		en2 = extranonce
	}
	in.j, in.lane, in.user, in.en1 = j, &ch.shareLane, ch.user, ch.en1Hex
	in.f = shareFacts{subscribed: true, authorized: true, payTo: ch.payout, en1: ch.en1Bytes, en2Size: v.c.cfg.Extranonce2Size, mask: ch.mask, now: now, ntimeFuture: v.c.cfg.NTimeFuture, expired: expired}
	v.mu.Unlock()
	in.sub = submission{worker: in.user, jobID: strconv.FormatUint(uint64(jobID), 10), en2: en2, en2Hex: hex.EncodeToString(en2), ntime: ntime, nonce: nonce}
	if j != nil {
		// V2 sends the whole version: as version bits, the rolled bits
		// are those under the mask, and any change outside it shows as
		// bits outside the mask (which validateShare rejects).
		jv := j.cb.sj.Version
		in.sub.vbits, in.sub.hasVBits = version&in.f.mask|(version^jv)&^in.f.mask, true
		in.f.stale = v.c.jobs.stale(j.ep)
	}
	v.c.takeShare(ctx, v, &in, &v.scratch)
}

// shares, answerLocked, rejectLocked, retargetLocked and sendRetargeted
// make a V2 connection a shareConn.
func (v *v2conn) shares() *connShares { return &v.connShares }

// answerLocked acknowledges settled shares: one SubmitShares.Success per
// channel for its accepted shares (new_shares_sum: the sum of their
// difficulties, rounded to an integer), a SubmitShares.Error for each the
// ledger could not take, in sequence order.
func (v *v2conn) answerLocked(heads []*pendingShare) {
	type run struct {
		count uint32
		sum   float64
		last  uint32
	}
	var runs map[uint32]*run
	var order []uint32
	var msgs []sv2.Message
	flush := func() {
		for _, id := range order {
			r := runs[id]
			msgs = append(msgs, &sv2.SubmitSharesSuccess{ChannelID: id, LastSequenceNumber: r.last, NewSubmitsAcceptedCount: r.count, NewSharesSum: uint64(math.Round(r.sum))})
		}
		clear(runs)
		order = order[:0]
	}
	for _, h := range heads {
		if h.err != nil {
			flush()
			msgs = append(msgs, &sv2.SubmitSharesError{ChannelID: h.to.chID, SequenceNumber: h.to.seq, ErrorCode: SV2ErrLedger})
			continue
		}
		if runs == nil {
			runs = make(map[uint32]*run)
		}
		r := runs[h.to.chID]
		if r == nil {
			r = &run{}
			runs[h.to.chID] = r
			order = append(order, h.to.chID)
		}
		r.count++
		r.sum += h.diff
		r.last = h.to.seq
	}
	flush()
	v.writeLocked(msgs...)
}

func (v *v2conn) rejectLocked(to answerTo, _ *stratum.Error, reason string) {
	v.writeLocked(&sv2.SubmitSharesError{ChannelID: to.chID, SequenceNumber: to.seq, ErrorCode: sv2Code(reason)})
}

func (v *v2conn) retargetLocked(h *pendingShare) bool {
	ch := v.channels[h.to.chID]
	if ch == nil {
		return false
	}
	d, changed := ch.vd.retarget(h.now, ch.diff, true)
	if changed {
		v.setDiffLocked(ch, d)
		v.retargeted = append(v.retargeted, ch)
	}
	return changed
}

func (v *v2conn) sendRetargeted() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, ch := range v.retargeted {
		if v.channels[ch.id] == ch {
			v.sendWorkLocked(ch, v.c.jobs.current(), true)
		}
	}
	clear(v.retargeted)
	v.retargeted = v.retargeted[:0]
}

// payeeWorker: a channel mines for its own payout only.
func (v *v2conn) payeeWorker([]byte) string { return "" }

// closeConn closes the connection from outside its reading.
func (v *v2conn) closeConn() { v.raw.Close() }

// broadcastSV2 sends the current work to every V2 connection.
func (c *Coordinator) broadcastSV2(ep *epoch) {
	c.mu.Lock()
	list := make([]*v2conn, 0, len(c.v2))
	for _, v := range c.v2 {
		list = append(list, v)
	}
	c.mu.Unlock()
	// In parallel, as for V1: one slow miner must not hold up the rest.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(broadcastWorkers, len(list)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(list)); i = next.Add(1) - 1 {
				list[i].sendWork(ep, false)
			}
		})
	}
	wg.Wait()
}

// closeSV2 ends the V2 connections of a listener being shut down: with
// Reconnect first on a graceful shutdown (unless disabled), bounded by a
// one-second write deadline.
func (c *Coordinator) closeSV2(ln net.Listener, graceful bool) {
	c.mu.Lock()
	var list []*v2conn
	for _, v := range c.v2 {
		if v.ln == ln {
			list = append(list, v)
		}
	}
	c.mu.Unlock()
	for _, v := range list {
		if graceful && !c.cfg.Reconnect.Disabled {
			v.sendReconnect()
		}
		v.raw.SetWriteDeadline(c.cfg.Now())
		v.raw.Close()
	}
}

func (v *v2conn) sendReconnect() {
	r := v.c.cfg.Reconnect
	host, port := r.Host, r.Port
	if ta, ok := v.raw.LocalAddr().(*net.TCPAddr); ok {
		if host == "" {
			host = ta.IP.String()
		}
		if port == 0 {
			port = ta.Port
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed || v.conn == nil || len(v.channels) == 0 {
		return
	}
	v.raw.SetWriteDeadline(v.c.cfg.Now().Add(time.Second))
	if err := v.conn.WriteMessages(&sv2.Reconnect{NewHost: host, NewPort: uint16(port)}); err != nil {
		v.closed = true
		return
	}
	v.c.metrics.reconnects.Inc()
}
