// Package sim is the model behind `powcoord demo`: a plan of simulated
// miners (their speeds and when they join and leave), running them
// against a pool, and a summary that compares what happened with what
// proof of work predicts: block intervals against the exponential
// distribution, and each agent's share of the blocks against its share
// of the hashing.
//
// The package knows nothing of the coordinator: the demo feeds it the
// blocks (Simulation.Block) and the chain's difficulty
// (Simulation.TrackDifficulty), and serves or prints its Summary.
package sim

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/hasher"
)

// MaxAgents is the largest plan ParsePlan accepts.
const MaxAgents = 1000

// Agent is one simulated miner of a Plan: its speed, its place in the
// join/leave schedule and, once the simulation runs, its time online.
type Agent struct {
	Name  string        // worker name it mines under: "agent1", "agent2", ...
	Speed string        // as given in --agent-rates ("2x", "150k"); "" for full speed
	Mult  float64       // multiple of the base rate; 0 for an absolute rate or full speed
	Rate  float64       // hashes/s limit; 0: unthrottled (Plan.SetBaseRate fills it for multiples)
	Join  time.Duration // when it starts mining, from the simulation's start
	Leave time.Duration // when it stops, from the simulation's start; 0: never

	mu      sync.Mutex
	miner   Miner
	online  bool
	onSince time.Time
	onFor   time.Duration // completed online spells
}

// Plan is the simulated miners, in agent-number order (agent1 first).
type Plan []*Agent

// ParsePlan builds a plan from the demo's flags: agents is --agents
// (agentsSet reports whether it was given), rates is --agent-rates (one
// agent per comma-separated entry, a multiple of the base rate like 2x
// or hashes/s like 150k), schedule is --agent-schedule
// (comma-separated N:JOIN[-LEAVE], agent numbers from 1, durations from
// the start). Errors name the flag, the entry and the value at fault.
func ParsePlan(agents int, agentsSet bool, rates, schedule string) (Plan, error) {
	n := agents
	var speeds []string
	if strings.TrimSpace(rates) != "" {
		speeds = strings.Split(rates, ",")
		if agentsSet && n != len(speeds) {
			return nil, fmt.Errorf("--agents %d but --agent-rates %q has %d entries", n, rates, len(speeds))
		}
		n = len(speeds)
	}
	if n < 0 || n > MaxAgents {
		return nil, fmt.Errorf("--agents %d: must be 0..%d", n, MaxAgents)
	}
	plan := make(Plan, n)
	for i := range plan {
		plan[i] = &Agent{Name: fmt.Sprintf("agent%d", i+1)}
	}
	for i, s := range speeds {
		s = strings.TrimSpace(s)
		a := plan[i]
		a.Speed = s
		if m, ok := strings.CutSuffix(strings.ToLower(s), "x"); ok {
			v, err := strconv.ParseFloat(m, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("--agent-rates: entry %d %q: want a positive multiple like 2x or a rate like 150k", i+1, s)
			}
			a.Mult = v
			continue
		}
		v, err := ParseRate(s)
		if err != nil {
			return nil, fmt.Errorf("--agent-rates: entry %d %q: want a positive rate like 150k or a multiple like 2x", i+1, s)
		}
		a.Rate = v
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
		a := plan[k-1]
		if a.Join, err = time.ParseDuration(joinS); err != nil || a.Join < 0 {
			return nil, fmt.Errorf("--agent-schedule: entry %q: join time %q is not a duration like 30s", e, joinS)
		}
		if hasLeave {
			if a.Leave, err = time.ParseDuration(leaveS); err != nil || a.Leave <= a.Join {
				return nil, fmt.Errorf("--agent-schedule: entry %q: leave time %q must be a duration after the join time", e, leaveS)
			}
		}
	}
	return plan, nil
}

// ParseRate parses a positive hash rate: "250000", "250k", "1.5M", "2G",
// optionally followed by "H/s".
func ParseRate(s string) (float64, error) {
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
	if err != nil || !(v > 0) || math.IsInf(v*mult, 0) {
		return 0, fmt.Errorf("rate %q: want a positive number of hashes/s with an optional k, M or G suffix (150k)", s)
	}
	return v * mult, nil
}

// FormatRate prints hashes per second with an SI prefix: "1.50 MH/s".
func FormatRate(h float64) string {
	units := []string{"H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s"}
	i := 0
	for h >= 1000 && i < len(units)-1 {
		h /= 1000
		i++
	}
	return fmt.Sprintf("%.2f %s", h, units[i])
}

// NeedsBaseRate reports whether any agent's speed is a multiple of the
// base rate.
func (p Plan) NeedsBaseRate() bool {
	for _, a := range p {
		if a.Mult > 0 {
			return true
		}
	}
	return false
}

// SetBaseRate sets the hash limit of every agent given as a multiple:
// Rate = Mult × base hashes/s.
func (p Plan) SetBaseRate(base float64) {
	for _, a := range p {
		if a.Mult > 0 {
			a.Rate = a.Mult * base
		}
	}
}

// MeasureBaseRate measures one thread of the default hashing kernel for
// 300 ms and returns the 1x rate that keeps the plan's agents together
// at about half the machine even with every one online, so the speed
// ratios hold when other work shares the cores.
func MeasureBaseRate(ctx context.Context, p Plan) (float64, error) {
	var sum float64
	for _, a := range p {
		sum += a.Mult
	}
	if !(sum > 0) {
		return 0, fmt.Errorf("measuring the base rate: no agent of the %d is a multiple of it", len(p))
	}
	var hdr [chainmath.HeaderSize]byte
	tgt, err := chainmath.TargetForDifficulty(1e6) // essentially never a hit
	if err != nil {
		return 0, err
	}
	r, err := hasher.Measure(ctx, hasher.Default(), hasher.NewJob(&hdr, tgt), 1, 300*time.Millisecond)
	if err != nil {
		return 0, fmt.Errorf("measuring the hash rate for --base-rate: %w", err)
	}
	return 0.5 * r.Wall * 1e6 * float64(runtime.NumCPU()) / sum, nil
}

// Online reports whether the agent is mining now.
func (a *Agent) Online() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.online
}

// OnlineFor is the agent's total time online up to now.
func (a *Agent) OnlineFor(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.onFor
	if a.online {
		t += now.Sub(a.onSince)
	}
	return t
}

// Hashrate is the agent's current hash rate (H/s over about the last
// 10 s), or 0 before it has a miner.
func (a *Agent) Hashrate() float64 {
	if m := a.getMiner(); m != nil {
		return m.Stats().Hashrate
	}
	return 0
}

func (a *Agent) getMiner() Miner {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.miner
}
