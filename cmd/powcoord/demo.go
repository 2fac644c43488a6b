package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/coordinator"
)

const demoUsage = `Usage: powcoord [demo] [flags]

Runs a coordinator on the embedded chain and --agents CPU miners that
connect to it over loopback TCP, in one process. Every block is logged
with its height, hash, finder and the interval since the previous one;
hashrates every 10 s. Ctrl-C stops it.

Examples:
  powcoord demo
  powcoord demo --agents 5 --block-time 5s --http 127.0.0.1:9090
  powcoord demo --data ./demo-chain     # keep the chain across runs

Flags:
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f coordFlags
	f.register(fs, true)
	agents := fs.Int("agents", 3, "number of agents (CPU miners) to run")
	threads := fs.Int("agent-threads", 0, "hashing threads per agent; 0 shares the cores among the agents")
	fs.Usage = func() { fmt.Fprint(fs.Output(), demoUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if err := f.check(); err != nil {
		return err
	}
	if *agents < 0 || *agents > 1000 {
		return fmt.Errorf("--agents %d: must be 0..1000", *agents)
	}
	if *threads < 0 {
		return fmt.Errorf("--agent-threads %d: must be 0 or more", *threads)
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
	var mu sync.Mutex
	var last time.Time
	onBlock := func(ev coordinator.BlockEvent) {
		if !ev.Accepted {
			return
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
	inst, err := startCoordinator(ctx, &f, log, onBlock)
	if err != nil {
		return err
	}
	if url := inst.httpURL(); url != "" {
		fmt.Fprintf(stdout, "powcoord demo: dashboard at %s  (stratum on %s)\n", url, inst.stratumLn.Addr())
	}
	per := *threads
	if per == 0 {
		per = max(1, runtime.NumCPU()/max(1, *agents))
	}
	url := "stratum+tcp://" + inst.stratumLn.Addr().String()
	var wg sync.WaitGroup
	miners := make([]*agent.Agent, 0, *agents)
	for i := range *agents {
		a, err := agent.New(agent.Config{
			URLs: []string{url}, User: fmt.Sprintf("agent%d", i+1), Pass: "x",
			Threads: per, Logger: log.With("agent", i+1), StatsInterval: time.Hour,
		})
		if err != nil {
			cancel()
			inst.wait()
			return err
		}
		miners = append(miners, a)
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
	}
	go func() {
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
				for i, a := range miners {
					s := a.Stats()
					total += s.Hashrate
					attrs = append(attrs, fmt.Sprintf("agent%d", i+1), formatRate(s.Hashrate))
				}
				attrs = append(attrs, "agents_total", formatRate(total))
				log.Info("hashrate", attrs...)
			}
		}
	}()
	err = inst.wait()
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintln(stdout, "powcoord demo: stopped")
	return nil
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
