package sim

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
)

// Miner is the hashing behind one Agent: *agent.Agent implements it.
type Miner interface {
	// Run mines until ctx ends.
	Run(ctx context.Context) error
	// Stats reports the hashes done since Run started and the current
	// hash rate (only Hashes and Hashrate are read).
	Stats() agent.Stats
}

// Simulation runs a Plan and collects what its Summary reports. Its
// methods are safe for concurrent use.
type Simulation struct {
	plan   Plan
	target time.Duration

	mu        sync.Mutex
	start     time.Time // set by Run
	lastBlock time.Time
	intervals []float64 // seconds between blocks (the first one from the start)
	blocks    map[string]int
	startDiff float64
	diff      func() float64 // the current difficulty; nil when not (or no longer) read
	lastDiff  float64
	payments  []payment // what each block paid (Paid)
}

// New returns a simulation of plan on a chain that aims for one block
// every blockTime.
func New(plan Plan, blockTime time.Duration) *Simulation {
	return &Simulation{plan: plan, target: blockTime, blocks: map[string]int{}}
}

// Plan returns the agents the simulation runs.
func (s *Simulation) Plan() Plan { return s.plan }

// NewMiners gives every agent of the plan a CPU miner (an *agent.Agent)
// for the Stratum pool at url, mining under the agent's name at its hash
// limit. threads is the hashing threads per agent; 0 shares the cores
// among the agents, except that a throttled agent gets every core (its
// limit, not its threads, sets its speed). The miners start with Run.
func (s *Simulation) NewMiners(url string, threads int, log *slog.Logger) error {
	if threads < 0 {
		return fmt.Errorf("%d threads per agent: must be 0 or more", threads)
	}
	per := threads
	if per == 0 {
		per = max(1, runtime.NumCPU()/max(1, len(s.plan)))
	}
	for _, a := range s.plan {
		n := per
		if a.Rate > 0 && threads == 0 {
			n = runtime.NumCPU()
		}
		m, err := agent.New(agent.Config{
			URLs: []string{url}, User: a.Name, Pass: "x", HashLimit: a.Rate,
			Threads: n, Logger: log.With("agent", a.Name), StatsInterval: time.Hour,
		})
		if err != nil {
			return fmt.Errorf("agent %s: %w", a.Name, err)
		}
		a.mu.Lock()
		a.miner = m
		a.mu.Unlock()
	}
	return nil
}

// TrackDifficulty makes the summary report the chain's difficulty: start
// is the difficulty when the simulation began, current reads the
// difficulty now (every Summary calls it).
func (s *Simulation) TrackDifficulty(start float64, current func() float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startDiff, s.diff = start, current
}

// FreezeDifficulty stops reading the current difficulty (for when the
// chain has closed): later summaries report the last value read.
func (s *Simulation) FreezeDifficulty() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.diff = nil
}

// readDifficulty takes a reading of the current difficulty. s.mu is held.
func (s *Simulation) readDifficulty() {
	if s.diff != nil {
		s.lastDiff = s.diff()
	}
}

// Block records a block found by the agent named finder at time at. The
// first block's interval counts from the start of Run; a block recorded
// before Run counts only for its finder.
func (s *Simulation) Block(finder string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.lastBlock
	if prev.IsZero() {
		prev = s.start
	}
	if !prev.IsZero() {
		s.intervals = append(s.intervals, at.Sub(prev).Seconds())
	}
	s.lastBlock = at
	s.blocks[finder]++
}

// Run starts the simulation's clock and runs every agent's miner (see
// NewMiners) on its schedule: from its join time until its leave time or
// until ctx ends. It returns once every miner has stopped. An agent
// without a miner is skipped.
func (s *Simulation) Run(ctx context.Context, log *slog.Logger) {
	s.mu.Lock()
	s.start = time.Now()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range s.plan {
		m := a.getMiner()
		if m == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); runAgent(ctx, a, m, log) }()
	}
	<-ctx.Done()
	// A last reading while the chain still answers: after Run the caller
	// stops the coordinator and freezes the difficulty.
	s.mu.Lock()
	s.readDifficulty()
	s.mu.Unlock()
	wg.Wait()
}

// runAgent runs m for a from its join time until its leave time or until
// ctx ends.
func runAgent(ctx context.Context, a *Agent, m Miner, log *slog.Logger) {
	if a.Join > 0 {
		t := time.NewTimer(a.Join)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		log.Info("agent joins", "agent", a.Name, "at", a.Join.String())
	}
	actx := ctx
	if a.Leave > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, a.Leave-a.Join)
		defer cancel()
	}
	a.mu.Lock()
	a.online, a.onSince = true, time.Now()
	a.mu.Unlock()
	if err := m.Run(actx); err != nil {
		log.Warn("agent stopped with an error", "agent", a.Name, "err", err)
	}
	a.mu.Lock()
	a.online = false
	a.onFor += time.Since(a.onSince)
	a.mu.Unlock()
	if ctx.Err() == nil {
		log.Info("agent leaves", "agent", a.Name, "at", a.Leave.String())
	}
}
