package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/hasher"
)

const demoUsage = `Usage: powcoord [demo] [flags]

Runs a coordinator on the embedded chain and --agents CPU miners that
connect to it over loopback TCP, in one process. Every block is logged
with its height, hash, finder and the interval since the previous one;
hashrates every 10 s. The dashboard (URL printed at start) shows it live.
Agents can run at different speeds (--agent-rates) and join and leave on
a schedule (--agent-schedule). At the end (Ctrl-C or --duration) a
summary compares the block intervals with the exponential distribution
they should follow and each agent's share of blocks with its share of the
hashing; the dashboard shows the same summary while the demo runs.

Examples:
  powcoord demo
  powcoord demo --agents 5 --block-time 5s --http 127.0.0.1:9090
  powcoord demo --data ./demo-chain     # keep the chain across runs
  powcoord demo --agent-rates 1x,2x,4x --duration 10m
  powcoord demo --agent-rates 1x,1x,1x,3x --agent-schedule 4:2m-6m --block-time 5s
  powcoord demo --agent-rates 50k,100k --block-difficulty 0.002
  powcoord demo --config demo.toml      # keys are flag names: agent-rates = "1x,2x"

Flags:
`

// demoAgent is one simulated miner: its speed and its place in the
// join/leave schedule.
type demoAgent struct {
	name  string
	speed string        // as given in --agent-rates ("2x", "150k") or ""
	mult  float64       // multiple of the base rate; 0 for an absolute rate
	rate  float64       // hashes/s; 0: unthrottled
	join  time.Duration // from the demo's start
	leave time.Duration // 0: never

	mu      sync.Mutex
	a       *agent.Agent
	online  bool
	onSince time.Time
	onFor   time.Duration // completed online spells
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f coordFlags
	f.register(fs, true)
	agents := fs.Int("agents", 3, "number of agents (CPU miners) to run; --agent-rates sets it when given")
	threads := fs.Int("agent-threads", 0, "hashing threads per agent; 0 shares the cores among the agents")
	rates := fs.String("agent-rates", "", "comma-separated agent `speeds`: multiples of --base-rate (1x,2x,4x) or hashes/s with an optional k/M/G suffix (250k); one agent per entry")
	baseRate := new(float64)
	fs.Var((*rateFlag)(baseRate), "base-rate", "hashes/s of a 1x agent (`rate`, k/M/G suffix allowed: 200k); 0 measures this machine and uses half of its cores' speed divided among the agents")
	schedule := fs.String("agent-schedule", "", "agents that join or leave: comma-separated `N:JOIN[-LEAVE]` (agent number from 1, times since the start), e.g. 3:30s-2m,4:1m")
	duration := fs.Duration("duration", 0, "stop after this `long` and print the summary; 0 runs until Ctrl-C")
	configPath := addConfigFlag(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), demoUsage); fs.PrintDefaults() }
	if err := parseArgs(fs, args, configPath); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	agentsGiven := false
	fs.Visit(func(fl *flag.Flag) { agentsGiven = agentsGiven || fl.Name == "agents" })
	plan, err := planAgents(*agents, agentsGiven, *rates, *schedule)
	if err != nil {
		return err
	}
	if *threads < 0 {
		return fmt.Errorf("--agent-threads %d: must be 0 or more", *threads)
	}
	if *duration < 0 {
		return fmt.Errorf("--duration %v: must be 0 (until Ctrl-C) or positive", *duration)
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	if f.data == "" {
		dir, err := os.MkdirTemp("", "powcoord-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		f.data = dir
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *duration > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, *duration)
		defer stop()
	}
	if needsBase(plan) {
		base := *baseRate
		if base == 0 {
			if base, err = autoBaseRate(ctx, plan); err != nil {
				return err
			}
			log.Info("base rate measured", "base_rate", formatRate(base))
		}
		for _, a := range plan {
			if a.mult > 0 {
				a.rate = a.mult * base
			}
		}
	}

	sim := newSimulation(plan, f.blockTime)
	var mu sync.Mutex
	var last time.Time
	onBlock := func(ev coordinator.BlockEvent) {
		if !ev.Accepted {
			return
		}
		sim.block(ev)
		mu.Lock()
		defer mu.Unlock()
		attrs := []any{"height", ev.Height, "hash", ev.Hash, "finder", ev.Finder}
		if !last.IsZero() {
			attrs = append(attrs, "interval", ev.Time.Sub(last).Round(time.Millisecond).String())
		}
		last = ev.Time
		log.Info("new block", attrs...)
	}
	inst, err := startCoordinator(ctx, &f, log, onBlock)
	if err != nil {
		return err
	}
	sim.startDiff = inst.coord.Status().Difficulty
	sim.diff = func() float64 { return inst.coord.Status().Difficulty }
	if url := inst.httpURL(); url != "" {
		fmt.Fprintf(stdout, "powcoord demo: dashboard at %s  (stratum on %s)\n", url, inst.stratumLn.Addr())
	}
	per := *threads
	if per == 0 {
		per = max(1, runtime.NumCPU()/max(1, len(plan)))
	}
	url := "stratum+tcp://" + inst.stratumLn.Addr().String()
	for _, d := range plan {
		n := per
		if d.rate > 0 && *threads == 0 {
			n = runtime.NumCPU() // throttled: the limit, not the threads, sets the speed
		}
		a, err := agent.New(agent.Config{
			URLs: []string{url}, User: d.name, Pass: "x", HashLimit: d.rate,
			Threads: n, Logger: log.With("agent", d.name), StatsInterval: time.Hour,
		})
		if err != nil {
			cancel()
			inst.wait()
			return err
		}
		d.a = a
	}
	sim.start = time.Now()
	// Published only now: everything the summary reads is set above.
	if inst.web != nil {
		inst.web.SetSimulation(func() any { return sim.summary(time.Now()) })
	}
	var wg sync.WaitGroup
	for _, d := range plan {
		wg.Add(1)
		go func() { defer wg.Done(); sim.runAgent(ctx, d, log) }()
	}
	go logHashrates(ctx, inst, plan, log)
	err = inst.wait()
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	sim.diff = nil // the coordinator is gone; keep the last value seen
	fmt.Fprint(stdout, sim.summary(time.Now()).Text)
	fmt.Fprintln(stdout, "powcoord demo: stopped")
	return nil
}

// logHashrates logs each agent's hashrate every 10 s.
func logHashrates(ctx context.Context, inst *instance, plan []*demoAgent, log *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := inst.coord.Status()
			attrs := []any{"height", st.Height, "difficulty", fmt.Sprintf("%.6g", st.Difficulty), "pool_estimate", formatRate(st.Hashrate)}
			var total float64
			for _, d := range plan {
				if !d.isOnline() {
					continue
				}
				s := d.a.Stats()
				total += s.Hashrate
				attrs = append(attrs, d.name, formatRate(s.Hashrate))
			}
			attrs = append(attrs, "agents_total", formatRate(total))
			log.Info("hashrate", attrs...)
		}
	}
}

// planAgents builds the agents from --agents, --agent-rates and
// --agent-schedule.
func planAgents(n int, nGiven bool, rates, schedule string) ([]*demoAgent, error) {
	var speeds []string
	if strings.TrimSpace(rates) != "" {
		speeds = strings.Split(rates, ",")
		if nGiven && n != len(speeds) {
			return nil, fmt.Errorf("--agents %d but --agent-rates %q has %d entries", n, rates, len(speeds))
		}
		n = len(speeds)
	}
	if n < 0 || n > 1000 {
		return nil, fmt.Errorf("--agents %d: must be 0..1000", n)
	}
	plan := make([]*demoAgent, n)
	for i := range plan {
		plan[i] = &demoAgent{name: fmt.Sprintf("agent%d", i+1)}
	}
	for i, s := range speeds {
		s = strings.TrimSpace(s)
		d := plan[i]
		d.speed = s
		if m, ok := strings.CutSuffix(strings.ToLower(s), "x"); ok {
			v, err := strconv.ParseFloat(m, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("--agent-rates: entry %d %q: want a positive multiple like 2x or a rate like 150k", i+1, s)
			}
			d.mult = v
			continue
		}
		v, err := parseSI(s)
		if err != nil {
			return nil, fmt.Errorf("--agent-rates: entry %d %q: %v", i+1, s, err)
		}
		d.rate = v
	}
	if strings.TrimSpace(schedule) == "" {
		return plan, nil
	}
	seen := map[int]bool{}
	for _, e := range strings.Split(schedule, ",") {
		e = strings.TrimSpace(e)
		num, times, ok := strings.Cut(e, ":")
		k, err := strconv.Atoi(num)
		if !ok || err != nil || k < 1 || k > n {
			return nil, fmt.Errorf("--agent-schedule: entry %q: want N:JOIN[-LEAVE] with N an agent number 1..%d", e, n)
		}
		if seen[k] {
			return nil, fmt.Errorf("--agent-schedule: agent %d appears twice", k)
		}
		seen[k] = true
		joinS, leaveS, hasLeave := strings.Cut(times, "-")
		d := plan[k-1]
		if d.join, err = time.ParseDuration(joinS); err != nil || d.join < 0 {
			return nil, fmt.Errorf("--agent-schedule: entry %q: join time %q is not a duration like 30s", e, joinS)
		}
		if hasLeave {
			if d.leave, err = time.ParseDuration(leaveS); err != nil || d.leave <= d.join {
				return nil, fmt.Errorf("--agent-schedule: entry %q: leave time %q must be a duration after the join time", e, leaveS)
			}
		}
	}
	return plan, nil
}

// parseSI parses "250000", "250k", "1.5M", "2G" (optionally followed by
// "H/s") as hashes per second.
func parseSI(s string) (float64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(s, "H/s"), "h/s")
	mult := 1.0
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:len(t)-1]
		case 'M':
			mult, t = 1e6, t[:len(t)-1]
		case 'G':
			mult, t = 1e9, t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("want a positive rate like 150k or a multiple like 2x")
	}
	return v * mult, nil
}

// rateFlag is a hashes/s flag that takes k/M/G suffixes; 0 is allowed.
type rateFlag float64

func (r *rateFlag) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }
func (r *rateFlag) Set(s string) error {
	if s == "0" {
		*r = 0
		return nil
	}
	v, err := parseSI(s)
	if err != nil {
		return fmt.Errorf("want 0 or a positive rate like 200k")
	}
	*r = rateFlag(v)
	return nil
}

func needsBase(plan []*demoAgent) bool {
	for _, d := range plan {
		if d.mult > 0 {
			return true
		}
	}
	return false
}

// autoBaseRate measures one thread of the default kernel and returns the
// 1x rate that keeps the agents together at about half the machine, so
// the speed ratios hold even when other work shares the cores.
func autoBaseRate(ctx context.Context, plan []*demoAgent) (float64, error) {
	var hdr [chainmath.HeaderSize]byte
	tgt, err := chainmath.TargetForDifficulty(1e6) // essentially never a hit
	if err != nil {
		return 0, err
	}
	mhs, err := hasher.Measure(ctx, hasher.Default(), hasher.NewJob(&hdr, tgt), 1, 300*time.Millisecond)
	if err != nil {
		return 0, fmt.Errorf("measuring the hash rate for --base-rate: %w", err)
	}
	var sum float64
	for _, d := range plan {
		sum += d.mult // at most every agent online at once
	}
	return 0.5 * mhs * 1e6 * float64(runtime.NumCPU()) / sum, nil
}

func (d *demoAgent) isOnline() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.online
}

// onlineFor is the agent's total time online up to now.
func (d *demoAgent) onlineFor(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.onFor
	if d.online {
		t += now.Sub(d.onSince)
	}
	return t
}

// formatRate prints hashes per second with an SI prefix.
func formatRate(h float64) string {
	units := []string{"H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"}
	i := 0
	for h >= 1000 && i < len(units)-1 {
		h /= 1000
		i++
	}
	return fmt.Sprintf("%.2f %s", h, units[i])
}

// simulation collects what the end summary reports.
type simulation struct {
	plan      []*demoAgent
	target    time.Duration
	start     time.Time
	startDiff float64
	diff      func() float64 // current difficulty; nil after the coordinator stopped

	mu        sync.Mutex
	lastBlock time.Time
	intervals []float64 // seconds between blocks (the first from the start)
	blocks    map[string]int
	lastDiff  float64
}

func newSimulation(plan []*demoAgent, target time.Duration) *simulation {
	return &simulation{plan: plan, target: target, blocks: map[string]int{}}
}

// runAgent runs d from its join time until its leave time or ctx ends.
func (s *simulation) runAgent(ctx context.Context, d *demoAgent, log *slog.Logger) {
	if d.join > 0 {
		t := time.NewTimer(d.join)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		log.Info("agent joins", "agent", d.name, "at", d.join.String())
	}
	actx := ctx
	if d.leave > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, d.leave-d.join)
		defer cancel()
	}
	d.mu.Lock()
	d.online, d.onSince = true, time.Now()
	d.mu.Unlock()
	d.a.Run(actx)
	d.mu.Lock()
	d.online = false
	d.onFor += time.Since(d.onSince)
	d.mu.Unlock()
	if ctx.Err() == nil {
		log.Info("agent leaves", "agent", d.name, "at", d.leave.String())
	}
}

func (s *simulation) block(ev coordinator.BlockEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.lastBlock
	if prev.IsZero() {
		prev = s.start
	}
	if !prev.IsZero() {
		s.intervals = append(s.intervals, ev.Time.Sub(prev).Seconds())
	}
	s.lastBlock = ev.Time
	s.blocks[ev.Finder]++
}

// simSummary is the end summary, also served to the dashboard at
// /api/simulation.
type simSummary struct {
	Text               string         `json:"text"`
	ElapsedSeconds     float64        `json:"elapsed_seconds"`
	TargetBlockSeconds float64        `json:"target_block_seconds"`
	Blocks             int            `json:"blocks"`
	MeanInterval       float64        `json:"mean_interval_seconds"`
	StartDifficulty    float64        `json:"start_difficulty"`
	Difficulty         float64        `json:"difficulty"`
	Histogram          simHistogram   `json:"histogram"`
	Agents             []simAgentStat `json:"agents"`
}

// simHistogram counts block intervals in bins of BinSeconds (the last bin
// holds everything beyond) next to what an exponential distribution with
// the target as its mean predicts for the same number of intervals.
type simHistogram struct {
	BinSeconds float64   `json:"bin_seconds"`
	Counts     []int     `json:"counts"`
	Expected   []float64 `json:"expected"`
}

// simAgentStat is one agent's line of the summary.
type simAgentStat struct {
	Name          string  `json:"name"`
	Speed         string  `json:"speed"`
	Limit         float64 `json:"limit"` // hashes/s; 0: unthrottled
	Online        bool    `json:"online"`
	OnlineSeconds float64 `json:"online_seconds"`
	Hashes        uint64  `json:"hashes"`
	Hashrate      float64 `json:"hashrate"` // mean while online
	HashrateShare float64 `json:"hashrate_share"`
	Blocks        int     `json:"blocks"`
	BlockShare    float64 `json:"block_share"`
}

// histogram bins intervals (seconds) against an exponential with mean
// target: bins of target/2, the last one open-ended at 4×target.
func histogram(intervals []float64, target float64) simHistogram {
	const bins = 9
	w := target / 2
	h := simHistogram{BinSeconds: w, Counts: make([]int, bins), Expected: make([]float64, bins)}
	for _, v := range intervals {
		h.Counts[min(bins-1, int(v/w))]++
	}
	n := float64(len(intervals))
	for i := range bins {
		a := float64(i) * w
		p := math.Exp(-a / target)
		if i < bins-1 {
			p -= math.Exp(-(a + w) / target)
		}
		h.Expected[i] = n * p
	}
	return h
}

func (s *simulation) summary(now time.Time) simSummary {
	s.mu.Lock()
	intervals := append([]float64(nil), s.intervals...)
	blocks := make(map[string]int, len(s.blocks))
	for k, v := range s.blocks {
		blocks[k] = v
	}
	if s.diff != nil {
		s.lastDiff = s.diff()
	}
	diff := s.lastDiff
	s.mu.Unlock()

	T := s.target.Seconds()
	sum := simSummary{
		TargetBlockSeconds: T, StartDifficulty: s.startDiff, Difficulty: diff,
		Histogram: histogram(intervals, T),
	}
	if !s.start.IsZero() {
		sum.ElapsedSeconds = now.Sub(s.start).Seconds()
	}
	for _, v := range intervals {
		sum.MeanInterval += v
	}
	sum.Blocks = len(intervals)
	if sum.Blocks > 0 {
		sum.MeanInterval /= float64(sum.Blocks)
	}
	var totalHashes uint64
	for _, d := range s.plan {
		st := simAgentStat{Name: d.name, Speed: d.speed, Limit: d.rate, Online: d.isOnline(), Blocks: blocks[d.name]}
		st.OnlineSeconds = d.onlineFor(now).Seconds()
		if d.a != nil {
			st.Hashes = d.a.Stats().Hashes
		}
		if st.OnlineSeconds > 0 {
			st.Hashrate = float64(st.Hashes) / st.OnlineSeconds
		}
		if st.Speed == "" {
			st.Speed = "full"
		}
		totalHashes += st.Hashes
		sum.Agents = append(sum.Agents, st)
	}
	for i := range sum.Agents {
		a := &sum.Agents[i]
		if totalHashes > 0 {
			a.HashrateShare = float64(a.Hashes) / float64(totalHashes)
		}
		if sum.Blocks > 0 {
			a.BlockShare = float64(a.Blocks) / float64(sum.Blocks)
		}
	}
	sum.Text = summaryText(&sum)
	return sum
}

// summaryText renders the summary for the terminal.
func summaryText(s *simSummary) string {
	var b strings.Builder
	T := s.TargetBlockSeconds
	fmt.Fprintf(&b, "\nsimulation summary: %s, %d blocks, mean interval %.2fs (target %gs), difficulty %.4g -> %.4g\n",
		(time.Duration(s.ElapsedSeconds) * time.Second).String(), s.Blocks, s.MeanInterval, T, s.StartDifficulty, s.Difficulty)
	fmt.Fprintf(&b, "\nblock intervals      observed  exponential (mean %gs)\n", T)
	h := s.Histogram
	peak := 1.0
	for i := range h.Counts {
		peak = max(peak, float64(h.Counts[i]), h.Expected[i])
	}
	for i, c := range h.Counts {
		lo := float64(i) * h.BinSeconds
		label := fmt.Sprintf("%5.1fs-%5.1fs", lo, lo+h.BinSeconds)
		if i == len(h.Counts)-1 {
			label = fmt.Sprintf("%5.1fs and up ", lo)
		}
		bar := strings.Repeat("#", int(math.Round(float64(c)/peak*30)))
		fmt.Fprintf(&b, "  %s %6d  %9.1f  %s\n", label, c, h.Expected[i], bar)
	}
	fmt.Fprintf(&b, "\n%-10s %-6s %12s %10s %9s %7s %9s %7s\n", "agent", "speed", "hashrate", "online", "hashes %", "blocks", "blocks %", "ratio")
	rows := append([]simAgentStat(nil), s.Agents...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name && len(rows[i].Name) <= len(rows[j].Name) })
	for _, a := range rows {
		ratio := "-"
		if a.HashrateShare > 0 && s.Blocks > 0 {
			ratio = fmt.Sprintf("%.2f", a.BlockShare/a.HashrateShare)
		}
		fmt.Fprintf(&b, "%-10s %-6s %12s %9.0fs %8.1f%% %7d %8.1f%% %7s\n", a.Name, a.Speed, formatRate(a.Hashrate),
			a.OnlineSeconds, 100*a.HashrateShare, a.Blocks, 100*a.BlockShare, ratio)
	}
	b.WriteString("(ratio = share of blocks / share of hashes; it tends to 1 as blocks accumulate)\n")
	return b.String()
}
