package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/powcoord/powcoord/internal/loadtest"
)

const loadtestUsage = `Usage: powcoord loadtest [flags]

Opens many real Stratum sessions to a coordinator on loopback from this one
process, submits valid shares at a set total rate, mines a few blocks
itself to time the new-block notify at every session, reports the numbers
and stops. Past --per-ip sessions it moves to the next 127.x source
address (one address runs out of ephemeral ports near 28,000).

Example:
  powcoord coordinator --stratum 127.0.0.1:3333 --http '' --share-difficulty 1e-9 \
      --shares-per-minute 0 --block-difficulty 1e-3 &
  powcoord loadtest --url 127.0.0.1:3333 --sessions 10000 --rate 100000 \
      --duration 20s --blocks 5 --pid $!

Flags:
`

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), loadtestUsage); fs.PrintDefaults() }
	var cfg loadtest.Config
	fs.StringVar(&cfg.Addr, "url", "127.0.0.1:3333", "coordinator Stratum `address` (loopback only; a stratum+tcp:// prefix is accepted)")
	fs.IntVar(&cfg.Sessions, "sessions", 1000, "`number` of Stratum sessions to open and hold")
	fs.IntVar(&cfg.Window, "window", 1, "shares a session may have `unanswered` in the share phase (1: wait for each answer)")
	fs.IntVar(&cfg.SharesPerSecond, "rate", 10000, "total valid `shares per second` across all sessions; 0 skips the share phase")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the share `phase`")
	fs.IntVar(&cfg.Blocks, "blocks", 3, "`number` of blocks to mine for the new-block notify latency; 0 skips it")
	fs.IntVar(&cfg.PerSourceIP, "per-ip", 20000, "sessions per 127.x source `address`")
	fs.IntVar(&cfg.PID, "pid", 0, "coordinator process `id`, for its RSS and CPU (0: not measured)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(cfg.Addr) > len("stratum+tcp://") && cfg.Addr[:len("stratum+tcp://")] == "stratum+tcp://" {
		cfg.Addr = cfg.Addr[len("stratum+tcp://"):]
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	limit, err := loadtest.RaiseFileLimit()
	if err != nil {
		return fmt.Errorf("raising the open-file limit: %w", err)
	}
	if uint64(cfg.Sessions)+64 > limit {
		log.Warn("open-file limit below the session count", "limit", limit, "sessions", cfg.Sessions)
	}
	rep, err := loadtest.Run(ctx, cfg)
	if rep != nil {
		fmt.Fprint(stdout, rep.String())
	}
	return err
}
