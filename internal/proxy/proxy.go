// Package proxy is `powcoord proxy`: a Stratum V1 to V2 translator. V1
// miners connect to it; it opens one extended channel on a V2 pool (the
// first of its upstreams that answers, the next one when that connection
// is lost), gives every miner its own slice of the channel's extranonce
// space, turns the pool's jobs into mining.notify, judges each V1 share
// locally (the miner's own difficulty, vardiff or suggest_difficulty) and
// forwards the shares that meet the channel's target as
// SubmitSharesExtended (docs/stratum-v2-guide.md, "Proxy in front of a V2
// pool").
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// DefaultVersionMask is BIP 323's general-purpose version bits, the most
// a miner is granted in mining.configure.
const DefaultVersionMask uint32 = 0x1fffffe0

// SlotSize is the number of extranonce bytes the proxy puts between the
// channel's extranonce prefix and each miner's extranonce2: a miner's
// extranonce1 is prefix ‖ slot (‖ zero padding, when the channel leaves
// more than MaxExtranonce2 bytes to the miner).
const SlotSize = 2

// MinExtranonce2 and MaxExtranonce2 bound the extranonce2 size miners are
// given; the channel asked for must leave at least MinExtranonce2 after
// the slot.
const (
	MinExtranonce2 = 2
	MaxExtranonce2 = 8
)

// Config configures a Proxy. Upstreams and User are required.
type Config struct {
	// Upstreams are the V2 pools, stratum2+tcp://host:port/AUTHORITYKEY,
	// tried in order; a lost connection moves to the next one (cycling).
	Upstreams []string
	// User is the user identity of the upstream channel: every share the
	// proxy forwards is credited to it.
	User string
	// VersionMask is what miners may roll, inside DefaultVersionMask
	// (0: DefaultVersionMask).
	VersionMask uint32
	// MinDifficulty and MaxDifficulty bound the miners' share difficulty
	// (0: none); the upstream channel's difficulty is always a floor.
	MinDifficulty, MaxDifficulty float64
	// StartDifficulty is a new miner's difficulty (0: the channel's).
	StartDifficulty float64
	// SharesPerMinute is the vardiff aim per miner (0: 20; negative: off).
	SharesPerMinute float64
	// VardiffInterval is the longest time between two retargets (0: 1 min).
	VardiffInterval time.Duration
	// HandshakeTimeout closes a miner that has not subscribed and
	// authorized in time; it also bounds an upstream's Noise handshake and
	// channel opening (0: 30 s and 5 s).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a miner that sends nothing for this long (0: 10 min).
	IdleTimeout time.Duration
	// MaxLine is the longest line a miner may send (0: 4096 bytes).
	MaxLine int
	// RetryWait is the pause after every upstream failed in turn (0: 1 s).
	RetryWait time.Duration
	// StatsInterval is how often the counters are logged (0: 1 min).
	StatsInterval time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// upstreamAddr is one parsed --upstream.
type upstreamAddr struct {
	url       string
	addr      string
	authority [32]byte
}

// Proxy serves V1 miners over one upstream V2 channel at a time.
type Proxy struct {
	cfg Config
	log *slog.Logger
	ups []upstreamAddr

	mu        sync.Mutex
	up        *channel // the open channel; nil while there is none
	upReady   chan struct{}
	miners    map[uint16]*miner
	nextSlot  uint16
	jobs      map[string]*job
	jobOrder  []string
	cur       *job   // the newest job
	jobSeq    uint64 // local job ids, unique across upstream connections
	gen       uint64 // previous-block generations (duplicate sets)
	totals    totals
	perUp     map[string]*UpstreamStats
	wg        sync.WaitGroup
	closed    bool
	failovers uint64
}

// New checks cfg and returns a Proxy; Run starts it.
func New(cfg Config) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("proxy: no upstream pool: give at least one stratum2+tcp://host:port/KEY")
	}
	if cfg.User == "" {
		return nil, errors.New("proxy: the upstream user identity is empty")
	}
	p := &Proxy{cfg: cfg, miners: map[uint16]*miner{}, jobs: map[string]*job{}, perUp: map[string]*UpstreamStats{}, upReady: make(chan struct{})}
	for _, u := range cfg.Upstreams {
		addr, key, err := sv2.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("proxy upstream: %w", err)
		}
		p.ups = append(p.ups, upstreamAddr{url: u, addr: addr, authority: key})
		p.perUp[u] = &UpstreamStats{URL: u}
	}
	c := &p.cfg
	if c.VersionMask == 0 {
		c.VersionMask = DefaultVersionMask
	}
	if c.VersionMask&^DefaultVersionMask != 0 {
		return nil, fmt.Errorf("proxy: version mask %08x reaches outside %08x (BIP 323)", c.VersionMask, DefaultVersionMask)
	}
	if c.MinDifficulty < 0 || c.MaxDifficulty < 0 || c.StartDifficulty < 0 {
		return nil, fmt.Errorf("proxy: difficulties must not be negative (min %v, max %v, start %v)", c.MinDifficulty, c.MaxDifficulty, c.StartDifficulty)
	}
	if c.MaxDifficulty > 0 && c.MaxDifficulty < c.MinDifficulty {
		return nil, fmt.Errorf("proxy: max difficulty %v is below min difficulty %v", c.MaxDifficulty, c.MinDifficulty)
	}
	if c.SharesPerMinute == 0 {
		c.SharesPerMinute = 20
	}
	if c.VardiffInterval <= 0 {
		c.VardiffInterval = time.Minute
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.MaxLine <= 0 {
		c.MaxLine = 4096
	}
	if c.RetryWait <= 0 {
		c.RetryWait = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = time.Minute
	}
	p.log = c.Logger
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return p, nil
}

// Run serves miners on ln and keeps an upstream channel open until ctx
// ends; it then closes ln and every connection and returns nil.
func (p *Proxy) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.upstreams(ctx)
	}()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.cfg.StatsInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s := p.Stats()
				p.log.Info("proxy stats", "upstream", s.Upstream, "miners", len(s.Miners), "accepted", s.Accepted, "rejected", s.Rejected,
					"forwarded", s.Forwarded, "upstream_accepted", s.UpstreamAccepted, "upstream_rejected", s.UpstreamRejected, "unanswered", s.Unanswered, "failovers", s.Failovers)
			}
		}
	}()
	var err error
	for {
		conn, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("proxy: accepting miners on %s: %w", ln.Addr(), aerr)
			}
			break
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serveMiner(ctx, conn)
		}()
	}
	cancel()
	p.mu.Lock()
	p.closed = true
	for _, m := range p.miners {
		m.conn.Close()
	}
	if p.up != nil {
		p.up.raw.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// upstreams keeps one channel open: each upstream in turn, moving to the
// next when a connection ends, pausing RetryWait after a whole round in
// which none could be opened (or kept for RetryWait).
func (p *Proxy) upstreams(ctx context.Context) {
	failed := 0
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(p.ups) {
		u := p.ups[i]
		began := time.Now()
		opened, err := p.runUpstream(ctx, u)
		if ctx.Err() != nil {
			return
		}
		if opened {
			// A channel that lived less than RetryWait counts as a
			// failure: a pool that drops every channel at once is not
			// redialled in a tight loop.
			if time.Since(began) >= p.cfg.RetryWait {
				failed = 0
			} else {
				failed++
			}
			p.log.Warn("upstream connection lost", "upstream", u.url, "err", err)
		} else {
			failed++
			p.log.Warn("upstream unavailable", "upstream", u.url, "err", err)
		}
		if failed >= len(p.ups) {
			failed = 0
			select {
			case <-ctx.Done():
				return
			case <-time.After(p.cfg.RetryWait):
			}
		}
	}
}

// channel is one upstream connection with its extended channel.
type channel struct {
	url    string
	raw    net.Conn
	conn   *sv2.Conn
	id     uint32
	prefix []byte
	size   int // extranonce_size: the bytes after the prefix
	wmu    sync.Mutex

	// Under Proxy.mu.
	target  chainmath.Target
	seq     uint32
	upJobs  map[uint32]*sv2.NewExtendedMiningJob
	prev    chainmath.Hash
	nbits   uint32
	hasPrev bool
	pending map[uint32]*forwarded
}

// forwarded is a share sent upstream and not yet answered.
type forwarded struct {
	m *miner
}

// runUpstream connects to u, opens the channel and relays its messages
// until the connection ends; opened says whether the channel was opened.
func (p *Proxy) runUpstream(ctx context.Context, u upstreamAddr) (opened bool, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(min(p.cfg.HandshakeTimeout, 5*time.Second)))
	conn, err := sv2.ClientHandshake(raw, sv2.ClientConfig{Authority: u.authority})
	if err != nil {
		return false, err
	}
	if err := sv2.Setup(conn, raw, &sv2.SetupConnection{Protocol: 0, MinVersion: 2, MaxVersion: 2, Vendor: "powcoord", HardwareVersion: "proxy", Firmware: "powcoord proxy"}); err != nil {
		return false, err
	}
	var maxT sv2.U256
	for i := range maxT {
		maxT[i] = 0xff
	}
	if err := conn.WriteMessages(&sv2.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: p.cfg.User, MaxTarget: maxT, MinExtranonceSize: SlotSize + MinExtranonce2}); err != nil {
		return false, err
	}
	ch := &channel{url: u.url, raw: raw, conn: conn, upJobs: map[uint32]*sv2.NewExtendedMiningJob{}, pending: map[uint32]*forwarded{}}
	var early []sv2.Message
	for ch.prefix == nil {
		_, m, err := conn.ReadMessage()
		if err != nil {
			return false, err
		}
		switch m := m.(type) {
		case *sv2.OpenExtendedMiningChannelSuccess:
			if int(m.ExtranonceSize) < SlotSize+MinExtranonce2 {
				return false, fmt.Errorf("channel extranonce of %d bytes: the proxy needs at least %d (%d per miner, %d for the miner's extranonce2)", m.ExtranonceSize, SlotSize+MinExtranonce2, SlotSize, MinExtranonce2)
			}
			if len(m.ExtranoncePrefix)+int(m.ExtranonceSize) > 32 {
				return false, fmt.Errorf("channel extranonce prefix of %d bytes and extranonce of %d: more than 32 bytes in all", len(m.ExtranoncePrefix), m.ExtranonceSize)
			}
			ch.id, ch.prefix, ch.size, ch.target = m.ChannelID, append([]byte{}, m.ExtranoncePrefix...), int(m.ExtranonceSize), chainmath.Target(m.Target)
		case *sv2.OpenMiningChannelError:
			return false, fmt.Errorf("channel for user %q refused: %s", p.cfg.User, m.ErrorCode)
		case nil:
		default:
			early = append(early, m)
		}
	}
	raw.SetDeadline(time.Time{})
	p.attach(ch)
	defer p.detach(ch)
	p.log.Info("upstream channel open", "upstream", u.url, "channel", ch.id, "extranonce_prefix", fmt.Sprintf("%x", ch.prefix), "extranonce_size", ch.size, "difficulty", difficultyOf(ch.target))
	for _, m := range early {
		if err := p.upstreamMessage(ch, m); err != nil {
			return true, err
		}
	}
	for {
		_, m, err := conn.ReadMessage()
		if err != nil {
			return true, err
		}
		if m == nil {
			continue
		}
		if err := p.upstreamMessage(ch, m); err != nil {
			return true, err
		}
	}
}

// attach makes ch the channel miners work on: each miner keeps its
// extranonce1 when the new channel gives the same one, else is told the
// new one (mining.set_extranonce) or, when it did not subscribe to that,
// closed so it reconnects.
func (p *Proxy) attach(ch *channel) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.up = ch
	close(p.upReady)
	for _, m := range p.miners {
		if !m.subscribed {
			continue
		}
		en1, size := p.extranonceFor(ch, m.slot)
		if string(en1) == string(m.en1) && size == m.en2Size {
			continue
		}
		if !m.extranonceSub {
			p.log.Info("miner closed: the new upstream channel changes its extranonce1 and it did not subscribe to mining.set_extranonce", "remote", m.remote, "worker", m.user)
			m.conn.Close()
			continue
		}
		m.en1, m.en2Size = en1, size
		b, _ := stratum.AppendRequest(nil, nil, "mining.set_extranonce", []any{fmt.Sprintf("%x", en1), size})
		m.send(b)
		// It applies from the next notify: the current job again, clean.
		if p.cur != nil && p.cur.ch == ch {
			m.workLocked(p.cur, true)
		}
	}
	p.mu.Unlock()
}

// detach forgets ch after its connection ended: its jobs are gone (miners
// get the next channel's jobs with clean_jobs), and its unanswered
// shares are counted lost.
func (p *Proxy) detach(ch *channel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.up != ch {
		return
	}
	p.up = nil
	p.upReady = make(chan struct{})
	p.failovers++
	for id, j := range p.jobs {
		if j.ch == ch {
			delete(p.jobs, id)
		}
	}
	p.jobOrder = p.jobOrder[:0]
	p.cur = nil
	lost := uint64(len(ch.pending))
	p.totals.upLost += lost
	p.perUp[ch.url].Unanswered += lost
	clear(ch.pending)
}

// extranonceFor is a miner's extranonce1 and extranonce2 size on ch.
func (p *Proxy) extranonceFor(ch *channel, slot uint16) ([]byte, int) {
	size := min(ch.size-SlotSize, MaxExtranonce2)
	en1 := make([]byte, len(ch.prefix)+ch.size-size)
	copy(en1, ch.prefix)
	en1[len(ch.prefix)] = byte(slot >> 8)
	en1[len(ch.prefix)+1] = byte(slot)
	return en1, size
}

// upstreamMessage handles one message of the open channel.
func (p *Proxy) upstreamMessage(ch *channel, msg sv2.Message) error {
	switch m := msg.(type) {
	case *sv2.NewExtendedMiningJob:
		if m.ChannelID != ch.id {
			return nil
		}
		p.mu.Lock()
		ch.upJobs[m.JobID] = m
		if len(ch.upJobs) > 64 {
			for id := range ch.upJobs {
				if id != m.JobID {
					delete(ch.upJobs, id)
					break
				}
			}
		}
		if m.MinNTime.Valid && ch.hasPrev {
			p.newJobLocked(ch, m, m.MinNTime.Value, false)
		}
		p.mu.Unlock()
	case *sv2.SetNewPrevHash:
		if m.ChannelID != ch.id {
			return nil
		}
		p.mu.Lock()
		nj := ch.upJobs[m.JobID]
		if nj == nil {
			p.mu.Unlock()
			return fmt.Errorf("SetNewPrevHash for job %d, which the pool never sent", m.JobID)
		}
		ch.prev, ch.nbits, ch.hasPrev = chainmath.Hash(m.PrevHash), m.NBits, true
		for id := range ch.upJobs {
			if id != m.JobID {
				delete(ch.upJobs, id)
			}
		}
		p.newJobLocked(ch, nj, m.MinNTime, true)
		p.mu.Unlock()
	case *sv2.SetTarget:
		if m.ChannelID != ch.id {
			return nil
		}
		p.mu.Lock()
		ch.target = chainmath.Target(m.MaximumTarget)
		p.mu.Unlock()
		p.log.Info("upstream target changed", "upstream", ch.url, "difficulty", difficultyOf(ch.target))
	case *sv2.SubmitSharesSuccess:
		p.mu.Lock()
		n := uint32(0)
		for seq, f := range ch.pending {
			if seq <= m.LastSequenceNumber {
				n++
				p.totals.upAccepted++
				p.perUp[ch.url].Accepted++
				f.m.upAccepted++
				delete(ch.pending, seq)
			}
		}
		p.mu.Unlock()
		if n != m.NewSubmitsAcceptedCount {
			p.log.Info("upstream acknowledged a different number of shares than were waiting", "upstream", ch.url, "acknowledged", m.NewSubmitsAcceptedCount, "waiting", n, "last_sequence", m.LastSequenceNumber)
		}
	case *sv2.SubmitSharesError:
		p.mu.Lock()
		if f := ch.pending[m.SequenceNumber]; f != nil {
			delete(ch.pending, m.SequenceNumber)
			f.m.upRejected++
		}
		p.totals.upRejected++
		if p.totals.upCodes == nil {
			p.totals.upCodes = map[string]uint64{}
		}
		if len(p.totals.upCodes) < 64 || p.totals.upCodes[m.ErrorCode] > 0 {
			p.totals.upCodes[m.ErrorCode]++
		}
		p.perUp[ch.url].Rejected++
		p.mu.Unlock()
		p.log.Info("share rejected upstream", "upstream", ch.url, "error", m.ErrorCode, "sequence", m.SequenceNumber)
	case *sv2.SetExtranoncePrefix:
		if m.ChannelID != ch.id {
			return nil
		}
		if len(m.ExtranoncePrefix)+ch.size > 32 {
			return fmt.Errorf("SetExtranoncePrefix of %d bytes with an extranonce of %d: more than 32 bytes in all", len(m.ExtranoncePrefix), ch.size)
		}
		// Miners move to the new prefix as they would to a new channel.
		p.mu.Lock()
		ch.prefix = append([]byte{}, m.ExtranoncePrefix...)
		p.up, p.upReady = nil, make(chan struct{})
		p.mu.Unlock()
		p.attach(ch)
	case *sv2.CloseChannel:
		if m.ChannelID == ch.id {
			return fmt.Errorf("pool closed the channel: %s", m.ReasonCode)
		}
	case *sv2.Reconnect:
		return fmt.Errorf("pool asked to reconnect (to %q port %d): moving to the next upstream", m.NewHost, m.NewPort)
	case *sv2.OpenMiningChannelError:
		return fmt.Errorf("channel refused: %s", m.ErrorCode)
	default:
		p.log.Debug("ignoring upstream message", "type", fmt.Sprintf("%T", msg))
	}
	return nil
}

// job is one upstream job as miners see it.
type job struct {
	sj      stratum.Job // ID is the proxy's job id
	ch      *channel
	upID    uint32
	rolling bool
	gen     uint64
	block   chainmath.Target
}

// maxJobs is how many recent jobs miners may still submit to.
const maxJobs = 16

// newJobLocked makes upstream job m (active from ntime) the current job
// and queues it to every ready miner. p.mu must be held.
func (p *Proxy) newJobLocked(ch *channel, m *sv2.NewExtendedMiningJob, ntime uint32, clean bool) {
	if p.up != ch {
		return
	}
	if clean || p.cur == nil {
		clean = true
		p.gen++
		clear(p.jobs)
		p.jobOrder = p.jobOrder[:0]
	}
	p.jobSeq++
	j := &job{ch: ch, upID: m.JobID, rolling: m.VersionRollingAllowed, gen: p.gen,
		sj: stratum.Job{ID: fmt.Sprintf("%x", p.jobSeq), PrevHash: ch.prev, Coinb1: m.CoinbaseTxPrefix, Coinb2: m.CoinbaseTxSuffix,
			Version: m.Version, Bits: ch.nbits, NTime: ntime, Clean: clean}}
	j.sj.Branch = make([]chainmath.Hash, len(m.MerklePath))
	for i, b := range m.MerklePath {
		j.sj.Branch[i] = chainmath.Hash(b)
	}
	if t, err := j.sj.BlockTarget(); err == nil {
		j.block = t
	}
	p.jobs[j.sj.ID] = j
	p.jobOrder = append(p.jobOrder, j.sj.ID)
	if len(p.jobOrder) > maxJobs {
		delete(p.jobs, p.jobOrder[0])
		p.jobOrder = p.jobOrder[1:]
	}
	p.cur = j
	for _, mn := range p.miners {
		mn.workLocked(j, false)
	}
}

// difficultyOf is the difficulty of a share target (0 for the zero target).
func difficultyOf(t chainmath.Target) float64 {
	if t == (chainmath.Target{}) {
		return 0
	}
	return chainmath.TargetToDifficulty(t.Big())
}
