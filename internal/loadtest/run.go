package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Config configures a load run.
type Config struct {
	// Addr is the coordinator's Stratum address; it must be on loopback.
	Addr string
	// Addrs, when it holds more than one address, spreads a run over
	// several Stratum servers (a cluster's front-ends): child process k of
	// a several-process run connects to Addrs[k mod len(Addrs)], so Procs
	// must be at least len(Addrs). Addr is then ignored. Each must be on
	// loopback.
	Addrs []string
	// Sessions is how many Stratum sessions to open and hold.
	Sessions int
	// SharesPerSecond is the total rate of valid shares submitted across
	// all sessions during the share phase (0: no share phase).
	SharesPerSecond int
	// Window is how many shares a session may have unanswered in the
	// share phase (1: it waits for each answer; miners send on without
	// waiting, so a pool should be measured with more).
	Window int
	// Duration is the length of the share phase.
	Duration time.Duration
	// Blocks is how many blocks the run mines itself to measure the
	// new-block notify latency to every session (0: none).
	Blocks int
	// BlockDelay is how long the run waits after the share phase before
	// it mines its first block: time for a server still storing the
	// shares (a cluster's ledger draining into PostgreSQL) to finish, so
	// the notify is timed on a quiet server (0: none).
	BlockDelay time.Duration
	// PerSourceIP is how many sessions use one 127.x source address
	// before the next is taken (20,000; one address has about 28,000
	// ephemeral ports). It applies on Linux only; elsewhere every session
	// connects from the default source address.
	PerSourceIP int
	// Readers is how sessions are read: "epoll" (the default on Linux: a
	// few event loops read every ready socket into a shared buffer) or
	// "goroutines" (one goroutine and read buffer per session; the only
	// kind off Linux, where "epoll" falls back to it).
	Readers string
	// Procs is how many processes share the sessions (0 or 1: this one).
	// With more, Run starts Procs children with Command, gives each its
	// share of Sessions and SharesPerSecond, runs the phases in step and
	// merges what they measured (see ServeChild).
	Procs int
	// Command returns the command that runs one child process, a
	// process that calls ServeChild on its standard input and output;
	// Run sets those two. Needed when Procs > 1.
	Command func(ctx context.Context) *exec.Cmd
	// PID is the coordinator's process id for RSS and CPU readings (0:
	// not measured).
	PID int
	// Logger receives progress.
	Logger *slog.Logger
}

// Report is what a run measured.
type Report struct {
	Procs         int           // processes that held the sessions
	Readers       string        // how sessions were read ("epoll", "goroutines")
	Sessions      int           // sessions held after the connect phase
	ConnectErrors int           // sessions that failed to connect
	ConnectTime   time.Duration // time to open them all
	RSSStartBytes int64         // coordinator RSS before the first session
	RSSIdleBytes  int64         // coordinator RSS holding the sessions
	Submitted     int64         // shares sent in the share phase
	Accepted      int64         // of those, answered true
	Rejected      int64
	SharesPerSec  float64 // accepted per second (summed over processes)
	RSSBytes      int64   // coordinator RSS after the share phase
	CPUPercent    float64 // coordinator CPU during the share phase (100 = one core)
	// From the block's submit to each session's complete clean notify.
	NotifyP50 time.Duration
	NotifyP99 time.Duration
	NotifyMax time.Duration
	// Per block, from the earliest moment any session read the first
	// byte of the block's clean notify to each session's complete line:
	// the fan-out alone, without the block's validation.
	SpreadP50      time.Duration
	SpreadP99      time.Duration
	SpreadMax      time.Duration
	NotifySamples  int           // session×block latencies measured
	NotifyMissing  int           // sessions that did not get a measured block's notify in time
	BlocksMeasured int           //
	LoadgenCPU     time.Duration // the load generator's own CPU from each block's submit until its notify was in everywhere
	LoadgenSysCPU  time.Duration // of that, in the kernel
}

// cpuTime is a process's CPU use.
type cpuTime struct{ total, sys time.Duration }

func (c cpuTime) sub(d cpuTime) cpuTime { return cpuTime{c.total - d.total, c.sys - d.sys} }

// LoadgenCPUPerNotify is the load generator's own CPU per notify
// received (0 when nothing was measured).
func (r *Report) LoadgenCPUPerNotify() time.Duration {
	if r.NotifySamples == 0 {
		return 0
	}
	return r.LoadgenCPU / time.Duration(r.NotifySamples)
}

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sessions held:        %d (%d failed) in %v\n", r.Sessions, r.ConnectErrors, r.ConnectTime.Round(time.Millisecond))
	if r.Procs > 0 {
		fmt.Fprintf(&b, "load generator:       %d process(es), %s readers\n", r.Procs, r.Readers)
	}
	if r.RSSIdleBytes > 0 {
		fmt.Fprintf(&b, "coordinator RSS idle: %.1f MiB (%.1f KiB per session)\n", float64(r.RSSIdleBytes)/(1<<20), float64(r.RSSIdleBytes)/1024/float64(max(r.Sessions, 1)))
		if r.RSSStartBytes > 0 {
			fmt.Fprintf(&b, "RSS delta/sessions:   %.2f KiB (%.1f MiB before the first session)\n", float64(r.RSSIdleBytes-r.RSSStartBytes)/1024/float64(max(r.Sessions, 1)), float64(r.RSSStartBytes)/(1<<20))
		}
	}
	if r.Submitted > 0 {
		fmt.Fprintf(&b, "shares:               %d sent, %d accepted, %d rejected; %.0f accepted/s\n", r.Submitted, r.Accepted, r.Rejected, r.SharesPerSec)
		if r.RSSBytes > 0 {
			fmt.Fprintf(&b, "coordinator:          RSS %.1f MiB, CPU %.0f%% of one core during shares\n", float64(r.RSSBytes)/(1<<20), r.CPUPercent)
		}
	}
	if r.BlocksMeasured > 0 {
		us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
		fmt.Fprintf(&b, "new-block notify:     p50 %v p99 %v max %v from the block's submit (%d samples over %d blocks, %d missing)\n",
			us(r.NotifyP50), us(r.NotifyP99), us(r.NotifyMax), r.NotifySamples, r.BlocksMeasured, r.NotifyMissing)
		fmt.Fprintf(&b, "notify spread:        p50 %v p99 %v max %v from the first byte any session read to each complete line\n",
			us(r.SpreadP50), us(r.SpreadP99), us(r.SpreadMax))
		if r.LoadgenCPU > 0 {
			fmt.Fprintf(&b, "load generator CPU:   %v per notify received (%v over the notify waits, %.0f%% of it in the kernel)\n",
				r.LoadgenCPUPerNotify().Round(10*time.Nanosecond), us(r.LoadgenCPU), float64(r.LoadgenSysCPU)/float64(r.LoadgenCPU)*100)
		}
	}
	return b.String()
}

// sourceIP is the loopback source address of session i.
func sourceIP(i, per int) string {
	k := i/per + 1 // 127.0.0.1, 127.0.0.2, ...
	return fmt.Sprintf("127.%d.%d.%d", k>>16&0xff, k>>8&0xff, k&0xff)
}

// arrivals records when the clean notify of one awaited prevhash reached
// each session, without a shared lock on the readers' path.
type arrivals struct {
	cur atomic.Pointer[round] // the block awaited; nil between blocks
}

// round is the record of one block's notify.
type round struct {
	prev  string
	first []atomic.Int64 // per session: when the line's first byte was read, Unix ns; 0 if none
	at    []atomic.Int64 // per session: when the line was complete, Unix ns; 0 if none
	n     atomic.Int64   // sessions with an arrival
	want  int64          // sessions held
	done  chan struct{}  // closed when every session has one
}

// expect starts awaiting prev's clean notify at n sessions.
func (a *arrivals) expect(prev string, n int) *round {
	r := &round{prev: prev, first: make([]atomic.Int64, n), at: make([]atomic.Int64, n), want: int64(n), done: make(chan struct{})}
	a.cur.Store(r)
	return r
}

// note records session i's notify if it is the awaited one.
func (a *arrivals) note(i int, prev []byte, clean bool, first, at time.Time) {
	r := a.cur.Load()
	if !clean || r == nil || r.prev != string(prev) || i >= len(r.at) {
		return
	}
	if r.at[i].CompareAndSwap(0, at.UnixNano()) {
		r.first[i].Store(first.UnixNano())
		if r.n.Add(1) == r.want {
			close(r.done)
		}
	}
}

// roundResult is what one process saw of one block's notify: for every
// session that got it, when its first byte and its end were read (Unix
// ns, the wall clock every process on the machine shares).
type roundResult struct {
	First   []int64 `json:"first"`
	At      []int64 `json:"at"`
	Missing int     `json:"missing"`
	CPU     int64   `json:"cpu_ns"`     // the process's own CPU from expect to the end of the wait
	SysCPU  int64   `json:"sys_cpu_ns"` // of that, in the kernel
}

// notifyStats gathers the notify samples of every block.
type notifyStats struct {
	fromSubmit, spread []time.Duration
	blocks, missing    int
	cpu, sysCPU        time.Duration
}

// add merges one block's results from every process; t0 is when its
// block was submitted (Unix ns). It returns the sessions that got it and
// the first and last arrival from the submit.
func (s *notifyStats) add(t0 int64, parts []roundResult) (got int, first, last, spread time.Duration) {
	earliest := int64(0)
	for _, p := range parts {
		for _, f := range p.First {
			if earliest == 0 || f < earliest {
				earliest = f
			}
		}
		s.cpu += time.Duration(p.CPU)
		s.sysCPU += time.Duration(p.SysCPU)
	}
	for _, p := range parts {
		for _, at := range p.At {
			d := time.Duration(at - t0)
			s.fromSubmit = append(s.fromSubmit, d)
			sp := time.Duration(at - earliest)
			s.spread = append(s.spread, sp)
			if got == 0 || d < first {
				first = d
			}
			last, spread = max(last, d), max(spread, sp)
			got++
		}
	}
	missing := 0
	for _, p := range parts {
		missing += p.Missing
	}
	if got > 0 {
		s.blocks++
		s.missing += missing
	}
	return got, first, last, spread
}

// fill puts the percentiles into rep.
func (s *notifyStats) fill(rep *Report) {
	rep.BlocksMeasured, rep.NotifyMissing, rep.LoadgenCPU, rep.LoadgenSysCPU = s.blocks, s.missing, s.cpu, s.sysCPU
	if len(s.fromSubmit) == 0 {
		return
	}
	rep.NotifySamples = len(s.fromSubmit)
	rep.NotifyP50, rep.NotifyP99, rep.NotifyMax = percentiles(s.fromSubmit)
	rep.SpreadP50, rep.SpreadP99, rep.SpreadMax = percentiles(s.spread)
}

// percentiles sorts d and returns its p50, p99 and max.
func percentiles(d []time.Duration) (p50, p99, top time.Duration) {
	slices.Sort(d)
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)], d[len(d)-1]
}

// group is the sessions one process holds.
type group struct {
	cfg    Config
	log    *slog.Logger
	miners []*Miner
	arr    arrivals
	stop   func() // stops the readers and closes every session
	mined  int    // blocks mined so far (picks the next miner)
}

// connectResult is a group's connect phase.
type connectResult struct {
	Sessions int           `json:"sessions"`
	Errors   int           `json:"errors"`
	Time     time.Duration `json:"time_ns"`
	FirstErr string        `json:"first_err,omitempty"`
}

// openGroup opens n sessions, numbered from offset (for their source
// address and user name), starts their readers and waits for every
// session's first job. On an error the group holds nothing.
func openGroup(ctx context.Context, cfg Config, log *slog.Logger, offset, n int) (*group, connectResult, error) {
	var cr connectResult
	miners := make([]*Miner, n)
	var wg sync.WaitGroup
	var fails atomic.Int64
	// The first connect error, whatever its type (an atomic.Value would
	// panic on a second error of another concrete type).
	var firstErr atomic.Pointer[error]
	start := time.Now()
	sem := make(chan struct{}, 64)
	for i := range miners {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			src := ""
			if manySources {
				src = sourceIP(offset+i, cfg.PerSourceIP)
			}
			m, err := Dial(ctx, cfg.Addr, src, "load"+strconv.Itoa((offset+i)%1000))
			if err != nil {
				fails.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			miners[i] = m
		}()
	}
	wg.Wait()
	cr.Time = time.Since(start)
	cr.Errors = int(fails.Load())
	if e := firstConnectErr(&firstErr); e != nil {
		cr.FirstErr = e.Error()
	}
	g := &group{cfg: cfg, log: log}
	for _, m := range miners {
		if m != nil {
			i := len(g.miners)
			m.OnNotify = func(prev []byte, clean bool, first, at time.Time) { g.arr.note(i, prev, clean, first, at) }
			g.miners = append(g.miners, m)
		}
	}
	cr.Sessions = len(g.miners)
	if len(g.miners) == 0 {
		return nil, cr, fmt.Errorf("no session connected: %v", firstConnectErr(&firstErr))
	}
	if ctx.Err() != nil {
		for _, m := range g.miners {
			m.Close()
		}
		return nil, cr, ctx.Err()
	}
	if cr.Errors > 0 {
		log.Warn("some sessions failed to connect", "failed", cr.Errors, "first_err", cr.FirstErr)
	}
	var mode string
	g.stop, mode = startReaders(ctx, g.miners, cfg.Readers, log)
	g.cfg.Readers = mode
	for _, m := range g.miners {
		if err := m.WaitWork(ctx); err != nil {
			g.stop()
			return nil, cr, err
		}
	}
	return g, cr, nil
}

// shareResult is a group's share phase.
type shareResult struct {
	Submitted int64         `json:"submitted"`
	Accepted  int64         `json:"accepted"`
	Rejected  int64         `json:"rejected"`
	Elapsed   time.Duration `json:"elapsed_ns"`
}

// shares runs the share phase at rate shares a second: a few pacers,
// each submitting to its own slice of the sessions in turn; then it waits
// (up to 10 s) for the answers in flight.
func (g *group) shares(ctx context.Context, rate int) shareResult {
	miners := g.miners
	before, rej0 := counts(miners)
	var sent atomic.Int64
	pacers := min(8, len(miners), max(rate, 1))
	per := max(1, rate/pacers)
	phase, stop := context.WithTimeout(ctx, g.cfg.Duration)
	t0 := time.Now()
	var pw sync.WaitGroup
	for p := range pacers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			pace(phase, miners, p, pacers, per, g.cfg.Window, &sent)
		}()
	}
	pw.Wait()
	stop()
	elapsed := time.Since(t0)
	deadline := time.Now().Add(10 * time.Second)
	var acc, rej int64
	for {
		a, r := counts(miners)
		acc, rej = a-before, r-rej0
		if acc+rej >= sent.Load() || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	return shareResult{Submitted: sent.Load(), Accepted: acc, Rejected: rej, Elapsed: elapsed}
}

// solve finds a block on the next session's current job.
func (g *group) solve() (*Miner, Share, error) {
	m := g.miners[g.mined%len(g.miners)]
	g.mined++
	sh, ok := m.Solve(true, 1<<31)
	if !ok {
		return nil, Share{}, errors.New("no block found in 2^31 nonces")
	}
	return m, sh, nil
}

// expect starts recording the clean notify of prev at every session.
// It collects the garbage of what came before first (the connect and
// share phases), so that no collection the notify did not cause runs
// while it is timed.
func (g *group) expect(prev string) *round {
	runtime.GC()
	return g.arr.expect(prev, len(g.miners))
}

// submit sends a block and returns when it was sent (Unix ns).
func submitBlock(m *Miner, sh Share) (int64, error) {
	t0 := time.Now().UnixNano()
	if err := m.Submit(sh); err != nil {
		return 0, fmt.Errorf("submitting block: %w", err)
	}
	return t0, nil
}

// await waits until every session has r's notify, 10 s or ctx, and
// returns what arrived; cpu0 is the process's CPU when r began.
func (g *group) await(ctx context.Context, r *round, cpu0 cpuTime) roundResult {
	timer := time.NewTimer(10 * time.Second)
	select {
	case <-r.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	g.arr.cur.CompareAndSwap(r, nil)
	used := selfCPU().sub(cpu0)
	res := roundResult{CPU: int64(used.total), SysCPU: int64(used.sys)}
	for i := range r.at {
		if at := r.at[i].Load(); at != 0 {
			res.At = append(res.At, at)
			res.First = append(res.First, r.first[i].Load())
		}
	}
	res.Missing = len(r.at) - len(res.At)
	return res
}

// waitAnswered waits (up to 10 s) until m has the answers to all it
// submitted, so that a block's share is in the ledger when a run ends.
func waitAnswered(ctx context.Context, m *Miner) {
	deadline := time.Now().Add(10 * time.Second)
	for m.inFlight() > 0 && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

// loopbackAddr checks that addr is host:port on loopback.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("address %q: load stays on loopback", addr)
	}
	return nil
}

// Run opens the sessions, runs the share phase and the notify phase, and
// closes everything. It stops by itself.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Addrs) == 1 {
		cfg.Addr, cfg.Addrs = cfg.Addrs[0], nil
	}
	if len(cfg.Addrs) > 1 {
		if cfg.Procs < len(cfg.Addrs) {
			return nil, fmt.Errorf("%d addresses with procs %d: want a process per address at least", len(cfg.Addrs), cfg.Procs)
		}
		for _, a := range cfg.Addrs {
			if err := loopbackAddr(a); err != nil {
				return nil, err
			}
		}
	} else if err := loopbackAddr(cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.Sessions < 1 {
		return nil, fmt.Errorf("sessions %d: want at least 1", cfg.Sessions)
	}
	if cfg.BlockDelay < 0 {
		return nil, fmt.Errorf("block delay %v: want 0 or more", cfg.BlockDelay)
	}
	if cfg.Window <= 0 {
		cfg.Window = 1
	}
	if cfg.PerSourceIP <= 0 {
		cfg.PerSourceIP = 20000
	}
	switch cfg.Readers {
	case "", "epoll", "goroutines":
	default:
		return nil, fmt.Errorf("readers %q: want epoll or goroutines", cfg.Readers)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Procs > 1 {
		return runProcs(ctx, cfg)
	}
	log := cfg.Logger
	rep := &Report{Procs: 1}
	if cfg.PID > 0 {
		rep.RSSStartBytes, _ = rss(cfg.PID)
	}
	g, cr, err := openGroup(ctx, cfg, log, 0, cfg.Sessions)
	rep.Sessions, rep.ConnectErrors, rep.ConnectTime = cr.Sessions, cr.Errors, cr.Time
	if err != nil {
		return rep, err
	}
	defer g.stop()
	rep.Readers = g.cfg.Readers
	log.Info("sessions connected", "sessions", rep.Sessions, "took", rep.ConnectTime, "readers", rep.Readers)
	if cfg.PID > 0 {
		rep.RSSIdleBytes, _ = rss(cfg.PID)
	}

	if cfg.SharesPerSecond > 0 && cfg.Duration > 0 {
		cpu0, _ := cpuTicks(cfg.PID)
		sr := g.shares(ctx, cfg.SharesPerSecond)
		cpu1, _ := cpuTicks(cfg.PID)
		rep.addShares(sr)
		if cfg.PID > 0 {
			rep.RSSBytes, _ = rss(cfg.PID)
			rep.CPUPercent = float64(cpu1-cpu0) / clockTicks / sr.Elapsed.Seconds() * 100
		}
		log.Info("share phase done", "sent", rep.Submitted, "accepted", rep.Accepted, "per_second", rep.SharesPerSec)
	}

	// Notify phase: mine a block on one session and time the clean
	// notify of that block's hash at every session.
	if err := blockDelay(ctx, cfg); err != nil {
		return rep, err
	}
	var stats notifyStats
	for b := 0; b < cfg.Blocks && ctx.Err() == nil; b++ {
		m, sh, err := g.solve()
		if err != nil {
			return rep, err
		}
		r := g.expect(chainmath.StratumPrevHash(sh.Hash))
		cpu0 := selfCPU()
		t0, err := submitBlock(m, sh)
		if err != nil {
			return rep, err
		}
		res := g.await(ctx, r, cpu0)
		waitAnswered(ctx, m)
		stats.logBlock(log, sh.Hash.String(), t0, []roundResult{res})
	}
	stats.fill(rep)
	return rep, nil
}

// addShares adds one process's share phase.
func (r *Report) addShares(sr shareResult) {
	r.Submitted += sr.Submitted
	r.Accepted += sr.Accepted
	r.Rejected += sr.Rejected
	if sr.Elapsed > 0 {
		r.SharesPerSec += float64(sr.Accepted) / sr.Elapsed.Seconds()
	}
}

// logBlock merges one block's results and logs them.
func (s *notifyStats) logBlock(log *slog.Logger, hash string, t0 int64, parts []roundResult) {
	got, first, last, spread := s.add(t0, parts)
	if got == 0 {
		log.Warn("block not announced (stale or rejected)", "hash", hash)
		return
	}
	log.Info("block notify measured", "hash", hash, "sessions", got, "first", first, "last", last, "spread", spread)
}

// pace submits per shares per second to miners p, p+n, p+2n, ... in turn,
// skipping a miner with window shares unanswered.
func pace(ctx context.Context, miners []*Miner, p, n, per, window int, sent *atomic.Int64) {
	interval := time.Second / time.Duration(per)
	next := time.Now()
	i := p
	skipped := 0
	for ctx.Err() == nil {
		m := miners[i]
		if i += n; i >= len(miners) {
			i = p
		}
		if m.inFlight() >= window {
			// A miner waits for answers once window shares are out:
			// an open loop would only build a queue that goes stale.
			if skipped++; skipped >= len(miners)/n {
				skipped = 0
				time.Sleep(time.Millisecond) // every miner is waiting
			}
			continue
		}
		skipped = 0
		sh, ok := m.Solve(false, 1<<16)
		if !ok || sh.Block {
			// A share that is also a block would move the chain and make
			// every share in flight stale: the share phase keeps it.
			continue
		}
		if m.Submit(sh) == nil {
			sent.Add(1)
		}
		next = next.Add(interval)
		if d := time.Until(next); d > time.Millisecond {
			time.Sleep(d) // rate pacing
		} else if d < -time.Second {
			next = time.Now() // fell behind: do not burst
		}
	}
}

func (m *Miner) inFlight() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

func counts(miners []*Miner) (acc, rej int64) {
	for _, m := range miners {
		a, r := m.Counts()
		acc += int64(a)
		rej += int64(r)
	}
	return acc, rej
}

const clockTicks = 100 // USER_HZ on Linux

// rss reads a process's resident set size from /proc.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// cpuTicks reads a process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (int64, error) {
	if pid <= 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unparsable", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad cpu times %q %q", pid, f[11], f[12])
	}
	return u + st, nil
}

// firstConnectErr is the first connect error stored in p, or nil.
func firstConnectErr(p *atomic.Pointer[error]) error {
	if e := p.Load(); e != nil {
		return *e
	}
	return nil
}

// blockDelay waits cfg.BlockDelay before the notify phase (when it mines
// any block), or until ctx ends.
func blockDelay(ctx context.Context, cfg Config) error {
	if cfg.BlockDelay <= 0 || cfg.Blocks <= 0 {
		return nil
	}
	t := time.NewTimer(cfg.BlockDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
