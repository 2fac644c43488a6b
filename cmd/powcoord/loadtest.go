package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/loadtest"
)

const loadtestUsage = `Usage: powcoord loadtest [flags]

Opens many real Stratum sessions to a coordinator on loopback, submits
valid shares at a set total rate, mines a few blocks itself to time the
new-block notify at every session, reports the numbers and stops. Past
--per-ip sessions it moves to the next 127.x source address (one address
runs out of ephemeral ports near 28,000).

Reading: on Linux a few epoll loops (one per CPU, at most 4) read every
ready socket into a shared buffer and handle the lines on the spot, so the
load generator holds no goroutine or buffer per session (--readers
goroutines, and every other system, use one goroutine per session).

Several processes: --procs N starts N copies of this program as children
(powcoord loadtest --child), each holding its share of --sessions and of
--rate, so that more sessions than one process's open-file limit (20,000
here) fit and the reading is spread over processes. The phases run in
step: every child starts the share phase at once (the accepted/s are
summed); for each block one child in turn mines it and reports when it
submitted it, and every child records when each of its sessions read the
first byte of that block's clean notify and when the line was complete,
by the wall clock all processes on the machine share. The parent computes
the percentiles over all the raw samples. POWCOORD_CPUPROFILE, with its
process-id placeholder, profiles every process. A cluster's front-ends
are measured by one run: --url a,b,c with --procs at least the number of
addresses puts process k on address k mod n, so one block's notify is
timed over the sessions of every front-end.

Notify numbers, per block, over every session:
  new-block notify  from the block's submit to each session's complete line
                    (includes the coordinator validating the block);
  notify spread     from the earliest moment any session read the first
                    byte of the clean notify to each session's complete
                    line (the fan-out alone; its p99 is issue 13's metric).

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
	fs.StringVar(&cfg.Addr, "url", "127.0.0.1:3333", "coordinator Stratum `address` (loopback only; a stratum+tcp:// prefix is accepted); a comma-separated list spreads the processes of --procs over several servers, process k on address k mod n")
	fs.IntVar(&cfg.Sessions, "sessions", 1000, "`number` of Stratum sessions to open and hold")
	fs.IntVar(&cfg.Window, "window", 1, "shares a session may have `unanswered` in the share phase (1: wait for each answer)")
	fs.IntVar(&cfg.SharesPerSecond, "rate", 10000, "total valid `shares per second` across all sessions; 0 skips the share phase")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the share `phase`")
	fs.IntVar(&cfg.Blocks, "blocks", 3, "`number` of blocks to mine for the new-block notify latency; 0 skips it")
	fs.DurationVar(&cfg.BlockDelay, "block-delay", 0, "`wait` after the share phase before mining the first block (for a server still storing shares, e.g. a cluster's ledger catching up)")
	fs.IntVar(&cfg.PerSourceIP, "per-ip", 20000, "sessions per 127.x source `address`")
	fs.IntVar(&cfg.PID, "pid", 0, "coordinator process `id`, for its RSS and CPU (0: not measured)")
	fs.IntVar(&cfg.Procs, "procs", 1, "`number` of processes holding the sessions (see above)")
	fs.StringVar(&cfg.Readers, "readers", "epoll", "how sessions are read (`mode`): epoll (Linux; elsewhere it falls back) or goroutines")
	child := fs.Bool("child", false, "internal: run as one child of a --procs run, taking orders on standard input (the other flags but --log-level are ignored)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, a := range strings.Split(cfg.Addr, ",") {
		cfg.Addrs = append(cfg.Addrs, strings.TrimPrefix(strings.TrimSpace(a), "stratum+tcp://"))
	}
	cfg.Addr = cfg.Addrs[0]
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	limit, err := loadtest.RaiseFileLimit()
	if err != nil {
		return fmt.Errorf("raising the open-file limit: %w", err)
	}
	if *child {
		return loadtest.ServeChild(ctx, os.Stdin, stdout, log)
	}
	perProc := (cfg.Sessions + max(cfg.Procs, 1) - 1) / max(cfg.Procs, 1)
	if uint64(perProc)+64 > limit {
		log.Warn("open-file limit below the sessions of one process", "limit", limit, "sessions_per_process", perProc)
	}
	if cfg.Procs > 1 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this program for --procs: %w", err)
		}
		var childErr io.Writer = stderr
		if _, ok := stderr.(*os.File); !ok {
			childErr = &lockedWriter{w: stderr} // the children's copiers share it
		}
		cfg.Command = func(ctx context.Context) *exec.Cmd {
			cmd := exec.CommandContext(ctx, exe, "loadtest", "--child", "--log-level", *logLevel)
			cmd.Stderr = childErr
			return cmd
		}
	}
	rep, err := loadtest.Run(ctx, cfg)
	if rep != nil {
		fmt.Fprint(stdout, rep.String())
	}
	return err
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
