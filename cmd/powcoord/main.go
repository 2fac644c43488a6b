// Command powcoord is a proof-of-work mining coordinator and its agents:
// a Stratum V1 pool on an embedded chain or a Bitcoin node, a CPU miner, a
// demo that runs both in one process, and a hashing benchmark.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := profiled(func() error { return run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "powcoord:", err)
		os.Exit(2)
	}
}

// profiled runs f under a CPU profile when POWCOORD_CPUPROFILE names a
// file ("%p" in it becomes the process id, for the several processes of a
// cluster benchmark); the profile is complete once f returns (SIGINT or
// SIGTERM end every command through its context).
func profiled(f func() error) error {
	path := os.Getenv("POWCOORD_CPUPROFILE")
	if path == "" {
		return f()
	}
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("POWCOORD_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return fmt.Errorf("POWCOORD_CPUPROFILE %s: %w", path, err)
	}
	err = f()
	pprof.StopCPUProfile()
	if cerr := out.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("POWCOORD_CPUPROFILE %s: %w", path, cerr)
	}
	return err
}

const usage = `powcoord — proof-of-work mining coordination

Usage:
  powcoord [demo] [flags]      coordinator on the embedded chain plus agents, in one process
  powcoord coordinator [flags] the Stratum V1 server (embedded chain or a Bitcoin node)
  powcoord frontend [flags]    a Stratum V1 front-end of a cluster (--cluster nats://...)
  powcoord ledger [flags]      a cluster's ledger writer: SHARES stream into PostgreSQL
  powcoord agent [flags]       a CPU miner for any Stratum V1 pool
  powcoord proxy [flags]       Stratum V1 miners onto a Stratum V2 pool, with failover
  powcoord bench [flags]       hashing kernels side by side
  powcoord status [flags]      ask a running powcoord's HTTP API whether it is healthy
  powcoord payouts verify FILE recompute a PPLNS block's outputs from its window download
  powcoord version             the version of this binary

Run "powcoord <command> --help" for the flags of a command.
`

// run dispatches a subcommand; with none (or only flags) it runs the demo.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "demo"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	case "coordinator":
		return runCoordinator(ctx, args, stdout, stderr)
	case "frontend":
		return runFrontend(ctx, args, stdout, stderr)
	case "ledger":
		return runLedger(ctx, args, stdout, stderr)
	case "agent":
		return runAgent(ctx, args, stdout, stderr)
	case "proxy":
		return runProxy(ctx, args, stdout, stderr)
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "loadtest":
		return runLoadtest(ctx, args, stdout, stderr)
	case "status":
		return runStatus(ctx, args, stdout, stderr)
	case "version":
		return runVersion(ctx, args, stdout, stderr)
	case "payouts":
		return runPayouts(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
