package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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
	// PerSourceIP is how many sessions use one 127.x source address
	// before the next is taken (20,000; one address has about 28,000
	// ephemeral ports). It applies on Linux only; elsewhere every session
	// connects from the default source address.
	PerSourceIP int
	// PID is the coordinator's process id for RSS and CPU readings (0:
	// not measured).
	PID int
	// Logger receives progress.
	Logger *slog.Logger
}

// Report is what a run measured.
type Report struct {
	Sessions       int           // sessions held after the connect phase
	ConnectErrors  int           // sessions that failed to connect
	ConnectTime    time.Duration // time to open them all
	RSSStartBytes  int64         // coordinator RSS before the first session
	RSSIdleBytes   int64         // coordinator RSS holding the sessions
	Submitted      int64         // shares sent in the share phase
	Accepted       int64         // of those, answered true
	Rejected       int64
	SharesPerSec   float64 // accepted per second
	RSSBytes       int64   // coordinator RSS after the share phase
	CPUPercent     float64 // coordinator CPU during the share phase (100 = one core)
	NotifyP50      time.Duration
	NotifyP99      time.Duration
	NotifyMax      time.Duration
	NotifySamples  int // session×block latencies measured
	NotifyMissing  int // sessions that did not get a measured block's notify in time
	BlocksMeasured int
}

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sessions held:        %d (%d failed) in %v\n", r.Sessions, r.ConnectErrors, r.ConnectTime.Round(time.Millisecond))
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
		fmt.Fprintf(&b, "new-block notify:     p50 %v p99 %v max %v (%d samples over %d blocks, %d missing)\n",
			r.NotifyP50.Round(time.Microsecond), r.NotifyP99.Round(time.Microsecond), r.NotifyMax.Round(time.Microsecond), r.NotifySamples, r.BlocksMeasured, r.NotifyMissing)
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
	prev string
	at   []atomic.Int64 // per session: arrival, Unix ns; 0 if none
	n    atomic.Int64   // sessions with an arrival
	want int64          // sessions held
	done chan struct{}  // closed when every session has one
}

// expect starts awaiting prev's clean notify at held of slots sessions
// (slots counts the failed ones too).
func (a *arrivals) expect(prev string, slots, held int) *round {
	r := &round{prev: prev, at: make([]atomic.Int64, slots), want: int64(held), done: make(chan struct{})}
	a.cur.Store(r)
	return r
}

// note records session i's notify if it is the awaited one.
func (a *arrivals) note(i int, prev []byte, clean bool, at time.Time) {
	r := a.cur.Load()
	if !clean || r == nil || r.prev != string(prev) || i >= len(r.at) {
		return
	}
	if r.at[i].CompareAndSwap(0, at.UnixNano()) && r.n.Add(1) == r.want {
		close(r.done)
	}
}

// Run opens the sessions, runs the share phase and the notify phase, and
// closes everything. It stops by itself.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("address %q: load stays on loopback", cfg.Addr)
	}
	if cfg.Sessions < 1 {
		return nil, fmt.Errorf("sessions %d: want at least 1", cfg.Sessions)
	}
	if cfg.Window <= 0 {
		cfg.Window = 1
	}
	if cfg.PerSourceIP <= 0 {
		cfg.PerSourceIP = 20000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep := &Report{}
	arr := &arrivals{}

	if cfg.PID > 0 {
		rep.RSSStartBytes, _ = rss(cfg.PID)
	}
	// Connect phase.
	miners := make([]*Miner, cfg.Sessions)
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
				src = sourceIP(i, cfg.PerSourceIP)
			}
			m, err := Dial(ctx, cfg.Addr, src, "load"+strconv.Itoa(i%1000))
			if err != nil {
				fails.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			m.OnNotify = func(prev []byte, clean bool, at time.Time) { arr.note(i, prev, clean, at) }
			miners[i] = m
		}()
	}
	wg.Wait()
	rep.ConnectTime = time.Since(start)
	rep.ConnectErrors = int(fails.Load())
	live := miners[:0]
	for _, m := range miners {
		if m != nil {
			live = append(live, m)
		}
	}
	miners = live
	rep.Sessions = len(miners)
	if len(miners) == 0 {
		return rep, fmt.Errorf("no session connected: %v", firstConnectErr(&firstErr))
	}
	if rep.ConnectErrors > 0 {
		log.Warn("some sessions failed to connect", "failed", rep.ConnectErrors, "first_err", firstConnectErr(&firstErr))
	}
	var readers sync.WaitGroup
	for _, m := range miners {
		readers.Add(1)
		go func() {
			defer readers.Done()
			m.Run(ctx)
		}()
	}
	defer func() {
		cancel()
		for _, m := range miners {
			m.Close()
		}
		readers.Wait()
	}()
	for _, m := range miners {
		if err := m.WaitWork(ctx); err != nil {
			return rep, err
		}
	}
	log.Info("sessions connected", "sessions", len(miners), "took", rep.ConnectTime)
	if cfg.PID > 0 {
		rep.RSSIdleBytes, _ = rss(cfg.PID)
	}

	// Share phase: a few pacers, each submitting to its own slice of
	// the sessions in turn.
	if cfg.SharesPerSecond > 0 && cfg.Duration > 0 {
		cpu0, _ := cpuTicks(cfg.PID)
		before, rej0 := counts(miners)
		var sent atomic.Int64
		pacers := min(8, len(miners))
		per := max(1, cfg.SharesPerSecond/pacers)
		phase, stop := context.WithTimeout(ctx, cfg.Duration)
		t0 := time.Now()
		var pw sync.WaitGroup
		for p := range pacers {
			pw.Add(1)
			go func() {
				defer pw.Done()
				pace(phase, miners, p, pacers, per, cfg.Window, &sent)
			}()
		}
		pw.Wait()
		stop()
		elapsed := time.Since(t0)
		// Let the answers in flight arrive.
		deadline := time.Now().Add(10 * time.Second)
		var acc, rej int64
		for time.Now().Before(deadline) {
			a, r := counts(miners)
			acc, rej = a-before, r-rej0
			if acc+rej >= sent.Load() {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling with a deadline
		}
		cpu1, _ := cpuTicks(cfg.PID)
		rep.Submitted, rep.Accepted, rep.Rejected = sent.Load(), acc, rej
		rep.SharesPerSec = float64(acc) / elapsed.Seconds()
		if cfg.PID > 0 {
			rep.RSSBytes, _ = rss(cfg.PID)
			rep.CPUPercent = float64(cpu1-cpu0) / clockTicks / elapsed.Seconds() * 100
		}
		log.Info("share phase done", "sent", rep.Submitted, "accepted", acc, "per_second", rep.SharesPerSec)
	}

	// Notify phase: mine a block on one session and time the clean
	// notify of that block's hash at every session.
	var lat []time.Duration
	for b := 0; b < cfg.Blocks && ctx.Err() == nil; b++ {
		m := miners[b%len(miners)]
		sh, ok := m.Solve(true, 1<<31)
		if !ok {
			return rep, errors.New("no block found in 2^31 nonces")
		}
		prev := chainmath.StratumPrevHash(sh.Hash)
		rd := arr.expect(prev, cfg.Sessions, len(miners))
		t0 := time.Now()
		if err := m.Submit(sh); err != nil {
			return rep, fmt.Errorf("submitting block: %w", err)
		}
		timer := time.NewTimer(10 * time.Second)
		select {
		case <-rd.done:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		arr.cur.Store(nil)
		got := 0
		var first, last time.Duration
		for i := range rd.at {
			if at := rd.at[i].Load(); at != 0 {
				d := time.Unix(0, at).Sub(t0)
				lat = append(lat, d)
				if got == 0 || d < first {
					first = d
				}
				last = max(last, d)
				got++
			}
		}
		if got == 0 {
			log.Warn("block not announced (stale or rejected)", "hash", sh.Hash.String())
			continue
		}
		rep.BlocksMeasured++
		rep.NotifyMissing += len(miners) - got
		log.Info("block notify measured", "hash", sh.Hash.String(), "sessions", got, "first", first, "last", last)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		rep.NotifySamples = len(lat)
		rep.NotifyP50 = lat[len(lat)/2]
		rep.NotifyP99 = lat[min(len(lat)-1, len(lat)*99/100)]
		rep.NotifyMax = lat[len(lat)-1]
	}
	return rep, nil
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
		if !ok {
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
