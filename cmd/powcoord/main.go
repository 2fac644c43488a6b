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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "powcoord:", err)
		os.Exit(2)
	}
}

const usage = `powcoord — proof-of-work mining coordination

Usage:
  powcoord [demo] [flags]      coordinator on the embedded chain plus agents, in one process
  powcoord coordinator [flags] the Stratum V1 server (embedded chain or a Bitcoin node)
  powcoord frontend [flags]    a Stratum V1 front-end of a cluster (--cluster nats://...)
  powcoord ledger [flags]      a cluster's ledger writer: SHARES stream into PostgreSQL
  powcoord agent [flags]       a CPU miner for any Stratum V1 pool
  powcoord bench [flags]       hashing kernels side by side
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
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "loadtest":
		return runLoadtest(ctx, args, stdout, stderr)
	case "version":
		return runVersion(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
