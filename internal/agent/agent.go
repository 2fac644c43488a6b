// Package agent is a CPU miner for any Stratum V1 pool: a client that
// subscribes, authorizes and follows the pool's jobs, a pool of hashing
// threads on disjoint work, and reconnection with backoff and failover
// between several pools. The wire format is described in docs/stratum-v1.md.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of an agent's counters and connection.
type Stats struct {
	Hashes         uint64         // nonces hashed since Run started
	Hashrate       float64        // H/s over about the last 10 s
	Accepted       uint64         // shares the pool accepted
	Rejected       uint64         // shares the pool rejected
	RejectedByCode map[int]uint64 // rejections by Stratum error code (20 when the pool gave none)
	Stale          uint64         // shares found but not sent: their job was cleaned or the connection lost
	Difficulty     float64        // share difficulty of the job being hashed (or the last one set)
	Pool           string         // URL of the current (or last) pool
	Connected      bool           // a session is subscribed and authorized
	Extranonce1    string         // hex, from the current session
	JobID          string         // the job being hashed, "" when idle
	Threads        int            // hashing threads
	Kernel         string         // hashing kernel name
	Sessions       uint64         // sessions that completed the handshake
}

// Agent is a Stratum V1 CPU miner. Create it with New and start it with
// Run; Stats may be called at any time from any goroutine.
type Agent struct {
	cfg   Config
	pools []pool
	log   *slog.Logger

	// Reconnection backoff; tests shorten them.
	minBackoff, maxBackoff time.Duration

	running atomic.Bool

	// Work published to the threads.
	gen        atomic.Uint64 // generation of the current job; bumped on every change
	cleanFloor atomic.Uint64 // shares of jobs with a lower generation are stale
	workMu     sync.Mutex
	cur        *job
	changed    chan struct{} // closed and replaced on every change

	shares   chan share
	counters []counter
	dropped  atomic.Uint64

	mu      sync.Mutex // guards the fields below
	st      Stats      // connection and share fields of Stats
	samples []sample   // hashrate window
	started time.Time

	// Test knobs and hooks, set before Run.
	span        uint64                         // pretend nonce space per extranonce2 (0: 2^32)
	hookAbandon func(gen uint64, at time.Time) // a thread left job gen
	hookJob     func(j *job, at time.Time)     // a job was published
}

type sample struct {
	t time.Time
	h uint64
}

// New validates cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	cfg, pools, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:        cfg,
		pools:      pools,
		log:        cfg.Logger,
		minBackoff: 100 * time.Millisecond,
		// Capped low so that a miner is back within 2 s of its pool
		// returning (1.5 s + 25% jitter), however long the outage.
		maxBackoff: 1500 * time.Millisecond,
		changed:    make(chan struct{}),
		shares:     make(chan share, 4096),
		counters:   make([]counter, cfg.Threads),
	}
	a.st.RejectedByCode = map[int]uint64{}
	a.st.Pool = pools[0].url
	a.st.Threads = cfg.Threads
	a.st.Kernel = cfg.Kernel.Name()
	return a, nil
}

// Run mines until ctx is cancelled, then stops every goroutine it started
// and returns nil. It returns an error only when called twice.
//
// Run raises GOMAXPROCS to Threads+1 when it is lower (it never lowers
// it): with every P busy hashing, the Go runtime notices a readable
// socket only every 10 ms, too late to drop a cleaned job in time; one
// spare P keeps the connection served at once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	raiseGOMAXPROCS(a.cfg.Threads+1, a.log)
	a.mu.Lock()
	a.started = time.Now()
	a.samples = append(a.samples[:0], sample{t: a.started})
	a.mu.Unlock()
	a.log.Info("agent starting", "pools", a.cfg.URLs, "threads", a.cfg.Threads, "kernel", a.cfg.Kernel.Name(), "user", a.cfg.User)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range a.cfg.Threads {
		w := &worker{a: a, hashes: &a.counters[i]}
		wg.Go(func() { w.run(stop) })
	}
	wg.Go(func() { a.submitLoop(stop) })
	wg.Go(func() { a.statsLoop(stop) })

	a.connectLoop(ctx)

	a.publish(nil)
	close(stop)
	wg.Wait()
	a.log.Info("agent stopped", "hashes", a.Stats().Hashes)
	return nil
}

// procsMu serializes raiseGOMAXPROCS between agents in one process.
var procsMu sync.Mutex

// raiseGOMAXPROCS sets GOMAXPROCS to want if it is lower.
func raiseGOMAXPROCS(want int, log *slog.Logger) {
	procsMu.Lock()
	defer procsMu.Unlock()
	if have := runtime.GOMAXPROCS(0); have < want {
		log.Info("raising GOMAXPROCS to serve the connection while hashing", "from", have, "to", want)
		runtime.GOMAXPROCS(want)
	}
}

// currentWork returns the job to hash (nil when idle) and a channel closed
// at the next change.
func (a *Agent) currentWork() (*job, <-chan struct{}) {
	a.workMu.Lock()
	defer a.workMu.Unlock()
	return a.cur, a.changed
}

// publish makes j the job every thread hashes (nil: stop hashing). Threads
// see the new generation within one chunk.
func (a *Agent) publish(j *job) {
	a.workMu.Lock()
	g := a.gen.Load() + 1
	if j != nil {
		j.gen = g
	}
	if j == nil || j.Clean {
		a.cleanFloor.Store(g)
	}
	a.cur = j
	a.gen.Store(g)
	close(a.changed)
	a.changed = make(chan struct{})
	a.workMu.Unlock()

	if j != nil {
		if h := a.hookJob; h != nil {
			h(j, time.Now())
		}
	}
	a.mu.Lock()
	if j != nil {
		a.st.JobID = j.ID
		a.st.Difficulty = j.diff
	} else {
		a.st.JobID = ""
	}
	a.mu.Unlock()
}

// submitLoop checks found nonces and sends them to the pool.
func (a *Agent) submitLoop(stop <-chan struct{}) {
	for {
		select {
		case s := <-a.shares:
			a.submit(s)
		case <-stop:
			return
		}
	}
}

func (a *Agent) submit(s share) {
	j := s.job
	if j.gen < a.cleanFloor.Load() {
		a.mu.Lock()
		a.st.Stale++
		a.mu.Unlock()
		return
	}
	h, ok := j.check(s.en2, s.nonce)
	if !ok {
		// Only a broken kernel gets here; do not bother the pool with it.
		a.log.Warn("kernel returned a nonce that misses the share target",
			"kernel", a.cfg.Kernel.Name(), "job", j.ID, "nonce", s.nonce, "hash", h.String())
		return
	}
	if bt, err := j.BlockTarget(); err == nil && bt.Meets(&h) {
		a.log.Debug("block candidate found", "job", j.ID, "hash", h.String())
	}
	j.sess.submit(j, s.en2, s.nonce)
}

// statsLoop logs the counters every StatsInterval.
func (a *Agent) statsLoop(stop <-chan struct{}) {
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s := a.Stats()
			a.log.Info("agent stats",
				"hashrate", s.Hashrate, "hashes", s.Hashes,
				"accepted", s.Accepted, "rejected", s.Rejected, "stale", s.Stale,
				"difficulty", s.Difficulty, "pool", s.Pool, "connected", s.Connected)
		case <-stop:
			return
		}
	}
}

// hashes sums the per-thread counters.
func (a *Agent) hashes() uint64 {
	var n uint64
	for i := range a.counters {
		n += a.counters[i].n.Load()
	}
	return n
}

// hashrateWindow is the span Stats.Hashrate averages over.
const hashrateWindow = 10 * time.Second

// Stats returns a snapshot of the agent's counters.
func (a *Agent) Stats() Stats {
	now := time.Now()
	total := a.hashes()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.RejectedByCode = maps.Clone(a.st.RejectedByCode)
	s.Hashes = total
	s.Stale += a.dropped.Load()
	// Keep one sample at or before the window's start, so the rate covers
	// the whole window once the agent has run that long.
	for len(a.samples) > 1 && !a.samples[1].t.After(now.Add(-hashrateWindow)) {
		a.samples = a.samples[1:]
	}
	if len(a.samples) > 0 {
		base := a.samples[0]
		if dt := now.Sub(base.t).Seconds(); dt > 0.01 && total >= base.h {
			s.Hashrate = float64(total-base.h) / dt
		}
		if now.Sub(a.samples[len(a.samples)-1].t) >= 250*time.Millisecond {
			a.samples = append(a.samples, sample{t: now, h: total})
		}
	}
	return s
}

// jitter returns d scaled by a random factor in [0.75, 1.25).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2))
}

// wait blocks for d or until ctx ends; it reports whether ctx is still live.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// connectLoop runs sessions until ctx ends: on failure it moves to the next
// pool with exponential backoff and jitter; after a session that worked it
// retries the same pool at once; a session on a backup pool ends when the
// primary answers again.
func (a *Agent) connectLoop(ctx context.Context) {
	idx := 0
	backoff := a.minBackoff
	redirect := ""
	for ctx.Err() == nil {
		p := a.pools[idx]
		addr := p.addr
		redirected := redirect != ""
		if redirected {
			addr, redirect = redirect, ""
		}
		r := a.runSession(ctx, p, addr, idx != 0)
		a.publish(nil)
		a.mu.Lock()
		a.st.Connected = false
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		var delay time.Duration
		switch {
		case r.primaryBack:
			idx, backoff = 0, a.minBackoff
			a.log.Info("primary pool answers again: moving back", "pool", a.pools[0].url)
			continue
		case r.redirect != "":
			redirect = r.redirect
			delay = r.redirectWait
			a.log.Info("pool asked to reconnect", "pool", p.url, "addr", redirect, "wait", delay)
		case r.established:
			backoff = a.minBackoff
			delay = jitter(backoff)
			a.log.Warn("pool connection lost", "pool", p.url, "err", r.err)
		case redirected:
			// The address client.reconnect named does not answer (the
			// pool restarting, say): the same pool again, at its own
			// address, before any failover.
			delay = jitter(backoff)
			backoff = min(2*backoff, a.maxBackoff)
			a.log.Warn("pool's reconnect address failed; retrying the pool", "pool", p.url, "addr", addr, "err", r.err, "retry_in", delay)
		default:
			delay = jitter(backoff)
			backoff = min(2*backoff, a.maxBackoff)
			next := (idx + 1) % len(a.pools)
			a.log.Warn("pool connection failed", "pool", p.url, "err", r.err, "next", a.pools[next].url, "retry_in", delay)
			idx = next
		}
		if !wait(ctx, delay) {
			return
		}
	}
}
