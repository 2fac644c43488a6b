// Package coordinator is the Stratum V1 server: it turns templates from a
// work.Source into jobs with a unique extranonce1 per connection, validates
// every share, records accepted shares durably, turns a share that meets
// the block target into a block for the source, and moves every session
// onto the new tip with a clean job.
package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultVersionMask is BIP 323's 24 general-purpose header version bits
// (5 to 28), the most a miner may roll; BIP 320's 0x1fffe000 is inside it.
const DefaultVersionMask uint32 = 0x1fffffe0

// Config configures a Coordinator. Zero values take the documented
// defaults.
type Config struct {
	// Source provides templates and takes blocks. Required.
	Source work.Source
	// Store is the durable ledger of accepted shares and found blocks
	// (a *store.Store). Required.
	Store Ledger
	// BlockRetryMin and BlockRetryMax bound the backoff between two
	// submissions of a found block the source could not take (1 s and
	// 30 s): the delay starts at the minimum and doubles.
	BlockRetryMin, BlockRetryMax time.Duration
	// ShareDifficulty is the starting difficulty of every session (1).
	ShareDifficulty float64
	// MinDifficulty and MaxDifficulty bound vardiff and
	// mining.suggest_difficulty (1e-9 and 1e15).
	MinDifficulty, MaxDifficulty float64
	// SharesPerMinute is what vardiff steers each connection towards (20);
	// a negative value turns vardiff off.
	SharesPerMinute float64
	// VardiffInterval is how often vardiff may retarget a session (30 s).
	VardiffInterval time.Duration
	// Extranonce2Size is the miner's part of the extranonce, 4..8 (4).
	Extranonce2Size int
	// Extranonce1PrefixBits (0..16) high bits of every extranonce1 this
	// coordinator hands out are Extranonce1Prefix: front-ends of a
	// cluster that lease distinct prefixes can never give two miners the
	// same work. 0 (the default) leaves all 32 bits to the coordinator.
	Extranonce1Prefix     uint32
	Extranonce1PrefixBits int
	// JobInterval is the longest time between two jobs (30 s).
	JobInterval time.Duration
	// CoinbaseTag is pushed into every coinbase scriptSig after the
	// extranonce (DefaultCoinbaseTag); New refuses one longer than
	// chainmath.CoinbaseTagBudget leaves room for.
	CoinbaseTag string
	// VersionMask is the set of header version bits miners may roll:
	// inside DefaultVersionMask (BIP 323), which is also the default.
	// A V1 miner is granted its own mask ANDed with this one; a V2
	// channel rolls under this one (docs/stratum-v1.md, version rolling).
	VersionMask uint32
	// NTimeFuture is how far past now a share's ntime may be (7000 s);
	// the template's own limit (work.Template.MaxTime) applies as well.
	NTimeFuture time.Duration
	// MaxLineBytes closes a connection that sends a longer line (4096).
	MaxLineBytes int
	// HandshakeTimeout closes a connection that has not subscribed and
	// authorized in time (30 s); IdleTimeout one that sends nothing for
	// that long (10 min).
	HandshakeTimeout, IdleTimeout time.Duration
	// WriteTimeout bounds a write to one miner (10 s).
	WriteTimeout time.Duration
	// MaxConns refuses connections beyond this many sessions (0: no
	// limit); MaxConnsPerIP does the same per remote IP address. A refused
	// connection gets one Stratum error line, then is closed.
	MaxConns, MaxConnsPerIP int
	// A connection that has submitted at least BanMinShares shares (100;
	// negative: never) of which at least BanRejectRatio (0.9) were
	// rejected for its own fault (banCountable: stale shares, ledger
	// failures and rejects caused by our own job changes do not count)
	// trips the reject rule: it is closed and its worker marked. Its
	// address is refused for BanDuration (10 min) only once BanIPAfter
	// (3; negative: never) of its connections have tripped the rule
	// within BanWindow (10 min), and never when it is in one of the
	// BanExempt networks.
	BanMinShares   int
	BanRejectRatio float64
	BanDuration    time.Duration
	BanIPAfter     int
	BanWindow      time.Duration
	BanExempt      []netip.Prefix
	// AuthMode is AuthOpen (the default), AuthAllowList (only usernames
	// in AllowList, matched whole or by the part before the first '.')
	// or AuthPassword (any username with Password).
	AuthMode  string
	AllowList []string
	Password  string
	// Reconnect is what client.reconnect tells miners when Serve shuts
	// down gracefully (by default: the address they used, no wait).
	Reconnect Reconnect
	// Logger receives the coordinator's logs (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
	// OnBlock, if set, is called once the source has settled a found
	// block: accepted, rejected, or abandoned (BlockEvent.Reason says
	// which); the coordinator then leaves logging accepted blocks to it.
	OnBlock func(BlockEvent)
	// JobDeclarations, when set, lets V2 miners that declared
	// REQUIRES_WORK_SELECTION set jobs declared to this Job Declarator
	// Server on their extended channels (sv2custom.go).
	JobDeclarations JobDeclarations
	// Registerer receives the coordinator's Prometheus metrics; nil
	// keeps them unregistered.
	Registerer prometheus.Registerer

	// Payout is PayoutSolo (the default) or PayoutPPLNS (docs/payouts.md);
	// PPLNS needs a Store that is a PayoutLedger.
	Payout string
	// PPLNSWindow is the window in blocks of network work (8).
	PPLNSWindow float64
	// PoolFeeBasisPoints (hundredths of a percent) of every PPLNS block
	// go to PoolScript; 0 or no script: no fee.
	PoolFeeBasisPoints int64
	PoolScript         []byte
	// PayoutDust is the smallest PPLNS output in satoshis
	// (DefaultPayoutDust); MaxPayoutOutputs caps a PPLNS coinbase's
	// paying outputs, fee included (DefaultMaxPayoutOutputs).
	PayoutDust       int64
	MaxPayoutOutputs int

	// WorkerRetention is how long the per-worker accounting (Status,
	// /api/status) keeps a worker with no session after its last share
	// (DefaultWorkerRetention); one that never had a share goes with its
	// last session. MaxWorkers caps the workers kept (DefaultMaxWorkers):
	// past it the sessionless ones least recently active go first.
	WorkerRetention time.Duration
	MaxWorkers      int
}

// DefaultCoinbaseTag is the coinbase tag of a Config without one.
const DefaultCoinbaseTag = "/powcoord/"

// CheckCoinbaseTag returns an error naming the byte budget when tag does
// not fit into the coinbase scriptSig of a coordinator with extranonce2
// size en2Size (0: the default 4) beside the BIP 34 height and the
// extranonce (chainmath.CoinbaseTagBudget).
func CheckCoinbaseTag(tag string, en2Size int) error {
	if en2Size == 0 {
		en2Size = 4
	}
	if budget := chainmath.CoinbaseTagBudget(4 + en2Size); len(tag) > budget {
		return fmt.Errorf("coinbase tag %q is %d bytes, over its budget of %d: the coinbase scriptSig's %d bytes also hold the BIP 34 height (up to 5), the extranonce (1 + 4 + %d of extranonce2), the job variant (2) and the tag's push opcode",
			tag, len(tag), budget, chainmath.MaxScriptSig, en2Size)
	}
	return nil
}

// Ledger is where the coordinator makes accepted shares and found blocks
// durable. *store.Store implements it.
type Ledger interface {
	// RecordShare returns nil once sh is durable.
	RecordShare(ctx context.Context, sh ledger.Share) error
	// AddFoundBlock records a found block as pending, durably and
	// idempotently (keyed by its hash).
	AddFoundBlock(ctx context.Context, b ledger.Block) error
	// SetFoundBlockState records the outcome of one submission.
	SetFoundBlockState(ctx context.Context, hash chainmath.Hash, state, reason string, at time.Time) error
	// FoundBlocks lists found blocks in a state ("" for all).
	FoundBlocks(ctx context.Context, state string) ([]store.FoundBlock, error)
}

// RejectCounter is a Ledger that also counts refused shares into its
// worker history (a *store.Store does: CountReject). The coordinator
// calls CountReject for every share it refuses from an authorized
// worker, on the share path: it must not block.
type RejectCounter interface {
	CountReject(worker string, at time.Time)
}

// BlockEvent describes a block found through this coordinator.
type BlockEvent struct {
	Height   int64
	Hash     string // display hex
	Finder   string
	Time     time.Time
	Accepted bool
	// Orphaned: the chain took the block onto a side chain (Accepted is
	// false). A later reorg sends no second event.
	Orphaned bool
	Reason   string // the chain's reason when it was rejected or orphaned
}

func (c *Config) setDefaults() error {
	if c.Source == nil {
		return errors.New("coordinator: no work source")
	}
	if c.Store == nil {
		return errors.New("coordinator: no store")
	}
	if c.BlockRetryMin == 0 {
		c.BlockRetryMin = time.Second
	}
	if c.BlockRetryMax == 0 {
		c.BlockRetryMax = 30 * time.Second
	}
	if c.BlockRetryMin < 0 || c.BlockRetryMax < c.BlockRetryMin {
		return fmt.Errorf("block retry backoff %v..%v: want 0 < min <= max", c.BlockRetryMin, c.BlockRetryMax)
	}
	if c.ShareDifficulty == 0 {
		c.ShareDifficulty = 1
	}
	if c.MinDifficulty == 0 {
		c.MinDifficulty = 1e-9
	}
	if c.MaxDifficulty == 0 {
		c.MaxDifficulty = 1e15
	}
	if !(c.ShareDifficulty > 0) {
		return fmt.Errorf("share difficulty %v: must be positive", c.ShareDifficulty)
	}
	if c.MinDifficulty > c.MaxDifficulty {
		return fmt.Errorf("min difficulty %v is above max difficulty %v", c.MinDifficulty, c.MaxDifficulty)
	}
	if c.SharesPerMinute == 0 {
		c.SharesPerMinute = 20
	}
	if c.VardiffInterval == 0 {
		c.VardiffInterval = 30 * time.Second
	}
	if c.Extranonce2Size == 0 {
		c.Extranonce2Size = DefaultExtranonce2Size
	}
	if c.Extranonce1PrefixBits < 0 || c.Extranonce1PrefixBits > 16 {
		return fmt.Errorf("extranonce1 prefix bits %d: must be 0..16", c.Extranonce1PrefixBits)
	}
	if c.Extranonce1PrefixBits < 32 && c.Extranonce1Prefix>>c.Extranonce1PrefixBits != 0 {
		return fmt.Errorf("extranonce1 prefix %d does not fit in %d bits", c.Extranonce1Prefix, c.Extranonce1PrefixBits)
	}
	if c.Extranonce2Size < 4 || c.Extranonce2Size > 8 {
		return fmt.Errorf("extranonce2 size %d: must be 4..8", c.Extranonce2Size)
	}
	if c.JobInterval == 0 {
		c.JobInterval = 30 * time.Second
	}
	if c.CoinbaseTag == "" {
		c.CoinbaseTag = DefaultCoinbaseTag
	}
	if err := CheckCoinbaseTag(c.CoinbaseTag, c.Extranonce2Size); err != nil {
		return err
	}
	if c.VersionMask == 0 {
		c.VersionMask = DefaultVersionMask
	}
	if c.VersionMask&^DefaultVersionMask != 0 {
		return fmt.Errorf("version mask %08x: must be inside %08x (BIP 323's general-purpose bits)", c.VersionMask, DefaultVersionMask)
	}
	if c.NTimeFuture == 0 {
		c.NTimeFuture = 7000 * time.Second
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 4096
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Reconnect.Wait < 0 {
		return fmt.Errorf("reconnect wait %v: must not be negative", c.Reconnect.Wait)
	}
	if c.Reconnect.Port < 0 || c.Reconnect.Port > 65535 {
		return fmt.Errorf("reconnect port %d: must be 0..65535", c.Reconnect.Port)
	}
	if err := c.checkLimits(); err != nil {
		return err
	}
	if err := c.checkPayout(); err != nil {
		return err
	}
	if err := c.checkWorkers(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Coordinator is a Stratum V1 server. Create it with New and run it with
// Serve.
type Coordinator struct {
	cfg Config
	log *slog.Logger

	jobs   *jobBook
	blocks *blockBook

	// mu guards the session table, extranonce1 allocation, per-IP counts
	// and bans. Lock order: Coordinator.mu, then session.mu, then
	// epoch.mu; blockBook.mu, workMu and the accounting and store locks
	// are leaves. Never hold mu across I/O (see sessionsWhere).
	mu       sync.Mutex
	sessions map[uint64]*session
	v2       map[uint64]*v2conn // Stratum V2 connections (sv2session.go)
	en1Live  map[uint32]bool
	en1Next  uint32
	nextSID  uint64
	perIP    map[string]int    // live sessions per remote IP
	bans     map[string]*Ban   // banned IP → its ban (expired ones until looked at)
	trips    map[string][]trip // IP → its connections closed by the reject rule, within BanWindow
	allow    map[string]bool   // AllowList as a set

	stats   *accounting
	ledgerQ ledgerQueue // valid shares on their way to the ledger
	metrics *metrics

	workMu   sync.Mutex
	serving  int    // running Serve calls
	workStop func() // stops the work loop and waits for it

	plan *payout.Plan // nil when the store is no payout.Ledger

	noWork         atomic.Bool // the source's work is stale: refuse miners
	blocksFound    atomic.Int64
	blocksRejected atomic.Int64
	blocksOrphaned atomic.Int64
	started        time.Time
}

// New checks cfg and returns a Coordinator.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var seed [4]byte
	rand.Read(seed[:])
	c := &Coordinator{
		cfg:      cfg,
		log:      cfg.Logger,
		sessions: make(map[uint64]*session),
		v2:       make(map[uint64]*v2conn),
		en1Live:  make(map[uint32]bool),
		perIP:    make(map[string]int),
		bans:     make(map[string]*Ban),
		trips:    make(map[string][]trip),
		allow:    make(map[string]bool, len(cfg.AllowList)),
		en1Next:  binary.BigEndian.Uint32(seed[:]),
		stats:    newAccounting(cfg.Now, cfg.WorkerRetention, cfg.MaxWorkers),
		started:  cfg.Now(),
	}
	for _, u := range cfg.AllowList {
		c.allow[u] = true
	}
	if rc, ok := cfg.Store.(RejectCounter); ok {
		c.stats.onReject = rc.CountReject
	}
	c.ledgerQ.c = c
	c.ledgerQ.record = batchRecorder(cfg.Store)
	plan, err := newPlan(&c.cfg)
	if err != nil {
		return nil, err
	}
	c.plan = plan
	c.jobs = newJobBook(&c.cfg)
	if cfg.Payout == PayoutPPLNS {
		c.jobs.pplns = c.pplnsFor
	}
	c.blocks = newBlockBook(c)
	c.metrics = newMetrics(c, cfg.Registerer)
	if _, err := c.jobs.update(cfg.Source.Current()); err != nil {
		return nil, err
	}
	return c, nil
}

// Serve accepts miners on ln until ctx ends, then closes ln and every
// session and returns nil. Any other accept failure is returned.
//
// Serve may run concurrently on several listeners (plain TCP and TLS, say):
// they share the sessions and the work, which follows the source while
// any Serve runs.
func (c *Coordinator) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	c.startWork()
	defer c.stopWork()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	// Idle plain-TCP sessions wait on the event loop where there is one
	// (Linux), without a goroutine of their own. It starts with the first
	// TCP connection: a listener of other connections never has one.
	var loop *eventLoop
	var loopMu sync.Mutex // V1 sessions of a WithSV2Detect listener start off the accept loop
	loopTried := false
	getLoop := func() *eventLoop {
		loopMu.Lock()
		defer loopMu.Unlock()
		if !loopTried {
			loopTried = true
			loop = newEventLoop(c.log)
		}
		return loop
	}
	sl := sv2ListenerOf(ln)
	protocol := "v1"
	if sl != nil && sl.detect {
		protocol = "v1+v2"
	} else if sl != nil {
		protocol = "v2"
	}
	c.log.Info("stratum listening", "addr", ln.Addr().String(), "protocol", protocol)
	var err error
	var backoff time.Duration // while the process is out of file descriptors
	for {
		conn, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(aerr, &ne) && ne.Timeout() {
					continue
				}
				if outOfFiles(aerr) {
					// Out of file descriptors: the sessions already
					// held go on; accept again once some have closed.
					backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
					c.metrics.refused.WithLabelValues("out of file descriptors").Inc()
					c.log.Warn("accept: out of file descriptors; retrying", "addr", ln.Addr().String(), "sessions", c.SessionCount(), "retry_in", backoff, "err", aerr)
					select {
					case <-time.After(backoff):
						continue
					case <-ctx.Done():
					}
				} else {
					err = fmt.Errorf("accepting on %s: %w", ln.Addr(), aerr)
				}
			}
			break
		}
		backoff = 0
		if sl != nil && sl.detect {
			wg.Add(1)
			go c.serveDetected(ctx, conn, ln, sl.srv, getLoop, wg.Done)
			continue
		}
		if sl != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.serveSV2(ctx, conn, ln, sl.srv)
			}()
			continue
		}
		s, reason := c.newSession(conn, ln)
		if s == nil {
			// Off the accept loop: on a TLS listener the refusal
			// waits for the client's handshake (at most a second).
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.refuse(conn, reason)
			}()
			continue
		}
		wg.Add(1)
		if _, fd := conn.(syscall.Conn); fd && getLoop().add(ctx, s, wg.Done) {
			continue
		}
		go func() {
			defer wg.Done()
			s.serve(ctx)
		}()
	}
	graceful := err == nil
	cancel()
	c.closeSV2(ln, graceful)
	mine := c.sessionsWhere(func(s *session) bool { return s.ln == ln })
	if graceful {
		// Tell the miners to come back (client.reconnect), then close:
		// once they have closed, or after reconnectLinger.
		if lingering := c.closeForShutdown(mine); len(lingering) > 0 {
			ended := make(chan struct{})
			go func() {
				wg.Wait()
				close(ended)
			}()
			t := time.NewTimer(reconnectLinger)
			select {
			case <-ended:
			case <-t.C:
			}
			t.Stop()
			for _, s := range lingering {
				s.abort()
			}
		}
	} else {
		for _, s := range mine {
			s.abort()
		}
	}
	wg.Wait()
	loop.close()
	return err
}

// Run serves miners on every listener in lns until ctx ends or one of
// them fails, then stops the others and returns once every session, the
// work loop and found-block resubmission have ended: after Run returns,
// nothing of the coordinator touches the store or the source, so they may
// be closed. It returns the first listener's failure, or nil.
func (c *Coordinator) Run(ctx context.Context, lns ...net.Listener) error {
	if len(lns) == 0 {
		return errors.New("coordinator: no listener to serve")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() {
			err := c.Serve(ctx, ln)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var first error
	for range lns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// outOfFiles reports whether an accept failed because the process or the
// system has no file descriptor left: a passing condition, not the end of
// the listener.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// startWork starts the work loop for the first running Serve.
func (c *Coordinator) startWork() {
	c.workMu.Lock()
	defer c.workMu.Unlock()
	c.serving++
	if c.serving > 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.workStop = func() { cancel(); wg.Wait() }
	wg.Go(func() { c.workLoop(ctx) })
	wg.Go(func() { c.blocks.resubmitLoop(ctx) })
	wg.Go(func() { c.blocks.recheckLoop(ctx) })
}

// stopWork stops the work loop when the last Serve returns.
func (c *Coordinator) stopWork() {
	c.workMu.Lock()
	defer c.workMu.Unlock()
	if c.serving--; c.serving == 0 {
		c.workStop()
		c.workStop = nil
	}
}

// workLoop follows the source: a new tip becomes a clean job for every
// session; otherwise a fresh job goes out at least every JobInterval.
func (c *Coordinator) workLoop(ctx context.Context) {
	ticker := time.NewTicker(c.cfg.JobInterval)
	defer ticker.Stop()
	health := time.NewTicker(time.Second)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-health.C:
			c.checkSourceStale()
		case <-c.cfg.Source.Updates():
			if c.refreshWork() {
				ticker.Reset(c.cfg.JobInterval)
			}
		case <-ticker.C:
			c.refreshWork()
		}
	}
}

// refreshWork makes the source's current template the work and sends it
// to every session. Whether it is a new block (clean jobs, SetNewPrevHash,
// older jobs stale) is decided by jobBook.update from the previous hash,
// not by which event called: the refresh ticker may be the first to see a
// new tip, and the new-block signal that follows then finds nothing new.
// It reports whether the template was usable.
func (c *Coordinator) refreshWork() bool {
	t := c.cfg.Source.Current()
	clean, err := c.jobs.update(t)
	if err != nil {
		c.log.Error("template unusable", "err", err)
		return false
	}
	if clean {
		c.log.Debug("new block: clean jobs", "height", t.Height, "prev", t.PrevHash.String())
	}
	c.broadcast()
	if clean {
		c.blocks.newTip()
	}
	return true
}

// broadcast sends the current work to every session that has had work.
func (c *Coordinator) broadcast() {
	c.mu.Lock()
	list := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, s)
	}
	c.mu.Unlock()
	ep := c.jobs.current()
	// Writes go out in parallel so that one slow miner does not hold up
	// the rest. Workers take the next session by an atomic index: no
	// channel hand-off per session.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(broadcastWorkers, len(list)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(list)); i = next.Add(1) - 1 {
				list[i].sendWork(ep, false)
			}
		}()
	}
	wg.Wait()
	c.broadcastSV2(ep)
}

// broadcastWorkers is how many goroutines write a new job to the sessions.
var broadcastWorkers = 4 * runtime.GOMAXPROCS(0)

// allocExtranonce1 returns a 4-byte extranonce1 no live session holds,
// starting with the configured prefix.
func (c *Coordinator) allocExtranonce1() uint32 {
	bits := c.cfg.Extranonce1PrefixBits
	low := uint32(0xffffffff) >> bits
	prefix := uint32(0)
	if bits > 0 {
		prefix = c.cfg.Extranonce1Prefix << (32 - bits)
	}
	for {
		c.en1Next++
		v := prefix | c.en1Next&low
		if !c.en1Live[v] {
			c.en1Live[v] = true
			return v
		}
	}
}

// checkSourceStale follows the source's Stale flag: when its work goes
// stale (a node unreachable for too long) every miner is disconnected and
// new ones are refused, so that they fail over to their backup pools;
// when fresh work returns, miners are admitted again.
func (c *Coordinator) checkSourceStale() {
	st := c.cfg.Source.Status()
	if st.Stale == c.noWork.Load() {
		return
	}
	c.noWork.Store(st.Stale)
	if !st.Stale {
		c.log.Info("work source has fresh work again; admitting miners")
		return
	}
	c.log.Warn("work source is stale; disconnecting miners until it recovers", "err", st.Error)
	for _, s := range c.sessionsWhere(nil) {
		s.abort()
	}
}

// sessionsWhere returns the live sessions for which keep is true (all
// when keep is nil). The caller acts on them without c.mu held: closing a
// connection may block (a TLS close writes an alert).
func (c *Coordinator) sessionsWhere(keep func(*session) bool) []*session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		if keep == nil || keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// newSession admits conn and makes its session, or returns nil and the
// reason it was refused.
func (c *Coordinator) newSession(conn net.Conn, ln net.Listener) (*session, string) {
	ip := remoteIP(conn.RemoteAddr())
	if c.noWork.Load() {
		return nil, "no work: the work source is stale"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason := c.admitLocked(ip, c.cfg.Now()); reason != "" {
		return nil, reason
	}
	c.nextSID++
	s := newSession(c, conn, ln, c.nextSID, c.allocExtranonce1())
	s.ip = ip
	c.sessions[s.id] = s
	return s, ""
}

func (c *Coordinator) dropSession(s *session) {
	c.mu.Lock()
	delete(c.sessions, s.id)
	delete(c.en1Live, s.en1)
	if c.perIP[s.ip]--; c.perIP[s.ip] <= 0 {
		delete(c.perIP, s.ip)
	}
	c.mu.Unlock()
}

// SessionCount returns the number of connected miners.
func (c *Coordinator) SessionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions) + len(c.v2)
}
