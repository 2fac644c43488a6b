package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sim"
	"github.com/powcoord/powcoord/internal/simchain"
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

// runDemo wires the demo: flags, the coordinator, the simulation of
// internal/sim running the agents against it, and the summary at the end.
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
	plan, err := sim.ParsePlan(*agents, agentsGiven, *rates, *schedule)
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
	if plan.NeedsBaseRate() {
		base := *baseRate
		if base == 0 {
			if base, err = sim.MeasureBaseRate(ctx, plan); err != nil {
				return err
			}
			log.Info("base rate measured", "base_rate", sim.FormatRate(base))
		}
		plan.SetBaseRate(base)
	}

	s := sim.New(plan, f.blockTime)
	var running atomic.Pointer[instance]
	inst, err := startCoordinator(ctx, &f, log, blockLogger(s, log, func(ev coordinator.BlockEvent) { recordIncome(s, running.Load(), plan, ev, log) }))
	if err != nil {
		return err
	}
	running.Store(inst)
	s.TrackDifficulty(inst.coord.Status().Difficulty, func() float64 { return inst.coord.Status().Difficulty })
	if url := inst.httpURL(); url != "" {
		fmt.Fprintf(stdout, "powcoord demo: dashboard at %s  (stratum on %s)\n", url, inst.lns.V1.Addr())
	}
	if err := s.NewMiners("stratum+tcp://"+inst.lns.V1.Addr().String(), *threads, log); err != nil {
		cancel()
		inst.wait()
		return err
	}
	if inst.web != nil {
		inst.web.SetSimulation(func() sim.Summary { return s.Summary(time.Now()) })
	}
	if *duration > 0 {
		// --duration counts from here: start-up (opening the chain,
		// measuring the base rate) on a loaded machine is not mining time.
		stop := time.AfterFunc(*duration, cancel)
		defer stop.Stop()
	}
	simDone := make(chan struct{})
	go func() { defer close(simDone); s.Run(ctx, log) }()
	go logHashrates(ctx, inst, plan, log)
	err = inst.wait()
	cancel()
	<-simDone
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	s.FreezeDifficulty() // the coordinator is gone; keep the last value read
	fmt.Fprint(stdout, s.Summary(time.Now()).Text)
	fmt.Fprintln(stdout, "powcoord demo: stopped")
	return nil
}

// blockLogger is the coordinator's OnBlock hook for the demo: it counts
// every accepted block in s and logs it with the interval since the
// previous one.
func blockLogger(s *sim.Simulation, log *slog.Logger, paid func(coordinator.BlockEvent)) func(coordinator.BlockEvent) {
	var mu sync.Mutex
	var last time.Time
	return func(ev coordinator.BlockEvent) {
		if !ev.Accepted {
			return
		}
		s.Block(ev.Finder, ev.Time)
		if paid != nil {
			paid(ev)
		}
		mu.Lock()
		defer mu.Unlock()
		attrs := []any{"height", ev.Height, "hash", ev.Hash, "finder", ev.Finder}
		if !last.IsZero() {
			attrs = append(attrs, "interval", ev.Time.Sub(last).Round(time.Millisecond).String())
		}
		last = ev.Time
		log.Info("new block", attrs...)
	}
}

// recordIncome tells s what the accepted block ev paid each agent, from
// the block's payout record: its whole value to the finder under solo,
// and under PPLNS each agent's output (scripts mapped back to agent
// names; the pool fee is nobody's).
func recordIncome(s *sim.Simulation, inst *instance, plan sim.Plan, ev coordinator.BlockEvent, log *slog.Logger) {
	if inst == nil {
		return // a block before the coordinator was fully started: nothing to read it from yet
	}
	hash, err := chainmath.HashFromDisplay(ev.Hash)
	if err != nil {
		return
	}
	rec, ok, err := inst.store.BlockPayouts(context.Background(), hash)
	if err != nil || !ok {
		log.Warn("no payout record for an accepted block", "height", ev.Height, "hash", ev.Hash, "err", err)
		return
	}
	var pplns map[string]int64
	if inst.coord.PayoutMode() == coordinator.PayoutPPLNS {
		byScript := map[string]string{}
		for _, a := range plan {
			if script, err := simchain.PayoutScript(a.Name); err == nil {
				byScript[string(script)] = a.Name
			}
		}
		pplns = map[string]int64{}
		for _, o := range rec.Outputs {
			if name, ok := byScript[string(o.Script)]; ok && !o.Fee {
				pplns[name] += o.Amount
			}
		}
		if rec.Mode == coordinator.PayoutSolo {
			// The window was empty: the finder took it all.
			pplns = map[string]int64{ev.Finder: rec.Value}
		}
	}
	s.Paid(ev.Time, ev.Finder, rec.Value, pplns)
}

// logHashrates logs each online agent's hashrate every 10 s.
func logHashrates(ctx context.Context, inst *instance, plan sim.Plan, log *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := inst.coord.Status()
			attrs := []any{"height", st.Height, "difficulty", fmt.Sprintf("%.6g", st.Difficulty), "pool_estimate", sim.FormatRate(st.Hashrate)}
			var total float64
			for _, a := range plan {
				if !a.Online() {
					continue
				}
				r := a.Hashrate()
				total += r
				attrs = append(attrs, a.Name, sim.FormatRate(r))
			}
			attrs = append(attrs, "agents_total", sim.FormatRate(total))
			log.Info("hashrate", attrs...)
		}
	}
}

// rateFlag is the --base-rate flag: hashes/s with k/M/G suffixes, or 0.
type rateFlag float64

func (r *rateFlag) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }

// Set parses a rate; the flag package names the flag and the value.
func (r *rateFlag) Set(s string) error {
	if s == "0" {
		*r = 0
		return nil
	}
	v, err := sim.ParseRate(s)
	if err != nil {
		return fmt.Errorf("want 0 or a positive rate like 200k")
	}
	*r = rateFlag(v)
	return nil
}
