package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/store"
)

const frontendUsage = `Usage: powcoord frontend --cluster URLS [flags]

Runs a Stratum V1 front-end of a powcoord cluster: it serves miners on
--stratum, mines on the jobs the active coordinator publishes to the NATS
JetStream cluster, validates shares itself, and hands found blocks to the
active coordinator through the cluster. Shares are recorded in the SQLite
ledger under --data. Run any number of front-ends.

Examples:
  powcoord frontend --cluster nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222 \
      --stratum 0.0.0.0:3333 --data ./frontend1
  powcoord frontend --cluster nats://127.0.0.1:4222 --stratum 127.0.0.1:3334 \
      --data /tmp/fe2 --share-difficulty 0.01 --wait 1m

Flags:
`

func runFrontend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "", "comma-separated NATS server `URLs` of the cluster (nats://host:port or tls://host:port); required")
	stratum := fs.String("stratum", "127.0.0.1:3333", "Stratum V1 listen `address` (host:port; port 0 picks a free one)")
	data := fs.String("data", "powcoord-frontend-data", "`directory` for the front-end's share ledger (created if missing)")
	shareDiff := fs.Float64("share-difficulty", 0.001, "starting share `difficulty` of every connection; vardiff moves it from there")
	spm := fs.Float64("shares-per-minute", 20, "vardiff aims each connection at this `rate`; 0 or less turns vardiff off")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait at start-up for the cluster to answer and for the first job")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	fs.Usage = func() { fmt.Fprint(fs.Output(), frontendUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("frontend: unexpected argument %q", fs.Arg(0))
	}
	if *cluster == "" {
		return errors.New("frontend: --cluster is required (e.g. --cluster nats://127.0.0.1:4222)")
	}
	urls, err := bus.ParseURLs(*cluster)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	if !(*shareDiff > 0) {
		return fmt.Errorf("--share-difficulty %v: must be a positive number", *shareDiff)
	}
	if *wait <= 0 {
		return fmt.Errorf("--wait %v: must be positive", *wait)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	cctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	nc, err := bus.Connect(cctx, urls, "powcoord-frontend "+host)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	defer nc.Close()
	src, err := jobs.NewSource(cctx, jobs.SourceConfig{Conn: nc, Logger: log})
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	defer src.Close()

	if err := os.MkdirAll(*data, 0o755); err != nil {
		return fmt.Errorf("--data %q: %w", *data, err)
	}
	st, err := store.Open(filepath.Join(*data, "powcoord.db"))
	if err != nil {
		return fmt.Errorf("--data %q: %w", *data, err)
	}
	defer st.Close()
	rate := *spm
	if rate <= 0 {
		rate = -1
	}
	coord, err := coordinator.New(coordinator.Config{Source: src, Store: st, ShareDifficulty: *shareDiff, SharesPerMinute: rate, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *stratum)
	if err != nil {
		return fmt.Errorf("--stratum %q: %w", *stratum, err)
	}
	t := src.Current()
	log.Info("frontend running", "stratum", ln.Addr().String(), "cluster", strings.Join(urls, ","),
		"connected", nc.ConnectedUrlRedacted(), "height", t.Height, "data", *data)
	fmt.Fprintf(stdout, "frontend: Stratum on %s, mining height %d from %s\n", ln.Addr(), t.Height, nc.ConnectedUrlRedacted())
	if err := coord.Run(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
