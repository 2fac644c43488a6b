package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/ledgerd"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

const ledgerUsage = `Usage: powcoord ledger --cluster URLS --postgres URL [flags]

Runs a ledger writer of a powcoord cluster: it consumes the accepted
shares of the NATS JetStream stream SHARES and stores each in the
PostgreSQL table shares, acknowledging a batch only once its transaction
committed. Shares are keyed by the work they prove (the header hash), so a
share delivered twice is stored once. Run one or more: the writers share
one durable consumer (--durable) and split the stream between them. The
schema is created or upgraded at start-up.

Every second it writes a heartbeat with its lag to the KV bucket
powcoord-members (listed by the cluster coordinator's GET /api/cluster).
With --http the writer serves /metrics (Prometheus), among them
powcoord_ledger_lag_messages: the shares not yet stored.

Examples:
  powcoord ledger --cluster nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222 \
      --postgres postgres://powcoord:secret@10.0.0.5:5432/powcoord --http 0.0.0.0:9102
  powcoord ledger --cluster nats://127.0.0.1:4222 --replicas 1 \
      --postgres 'host=/var/run/postgresql dbname=powcoord'

Flags:
`

func runLedger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "", "comma-separated NATS server `URLs` of the cluster (nats://host:port or tls://host:port); required")
	pgURL := fs.String("postgres", "", "PostgreSQL connection `URL` (postgres://user:password@host:port/db or key=value pairs); required")
	httpAddr := fs.String("http", "", "HTTP listen `address` for /metrics (e.g. 127.0.0.1:9102); empty disables it")
	durable := fs.String("durable", "ledger", "`name` of the durable consumer the ledger writers share")
	batch := fs.Int("batch", 64, "most `messages` (each a front-end's batch of up to 512 shares) fetched and stored at once")
	txs := fs.Int("transactions", 2, "batches being committed at `once` while the next is fetched")
	replicas := fs.Int("replicas", 3, "`copies` of each stream when this writer creates the streams (at most the number of NATS servers)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait at start-up for the cluster and the database to answer")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	history := fs.Duration("worker-history-retention", ledger.DefaultHistoryRetention, "keep the per-minute worker history (GET /api/workers/{name}) this `long` (at least 24h); this writer deletes older minutes")
	fs.Usage = func() { fmt.Fprint(fs.Output(), ledgerUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("ledger: unexpected argument %q", fs.Arg(0))
	}
	if *cluster == "" {
		return errors.New("ledger: --cluster is required (e.g. --cluster nats://127.0.0.1:4222)")
	}
	urls, err := bus.ParseURLs(*cluster)
	if err != nil {
		return fmt.Errorf("ledger: --cluster %q: %w", *cluster, err)
	}
	if *pgURL == "" {
		return errors.New("ledger: --postgres is required (e.g. --postgres postgres://user@127.0.0.1:5432/powcoord)")
	}
	if *batch < 1 || *batch > 4096 {
		return fmt.Errorf("ledger: --batch %d: want 1 to 4096", *batch)
	}
	if *txs < 1 || *txs > 64 {
		return fmt.Errorf("ledger: --transactions %d: want 1 to 64", *txs)
	}
	if *wait <= 0 {
		return fmt.Errorf("ledger: --wait %v: want a positive duration", *wait)
	}
	if *history < ledger.MinHistoryRetention {
		return fmt.Errorf("ledger: --worker-history-retention %v: must be at least %v", *history, ledger.MinHistoryRetention)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	var ln net.Listener
	if *httpAddr != "" {
		if ln, err = net.Listen("tcp", *httpAddr); err != nil {
			return fmt.Errorf("ledger: --http %q: %w", *httpAddr, err)
		}
		defer ln.Close()
	}

	sctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	led, err := pgledger.Open(sctx, *pgURL)
	if err != nil {
		return fmt.Errorf("ledger: --postgres: %w", err)
	}
	defer led.Close()
	if err := led.SetHistoryRetention(*history); err != nil {
		return fmt.Errorf("ledger: --worker-history-retention: %w", err)
	}
	nc, err := bus.Connect(sctx, urls, "powcoord-ledger")
	if err != nil {
		return fmt.Errorf("ledger: --cluster %q: %w", *cluster, err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if _, err := bus.EnsureStreams(sctx, js, bus.StreamsConfig{Replicas: *replicas, KeepExisting: true}); err != nil {
		return fmt.Errorf("ledger: --cluster %q: %w", *cluster, err)
	}
	w, err := ledgerd.New(sctx, js, led, ledgerd.Config{Durable: *durable, Batch: *batch, Transactions: *txs, Logger: log})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	membersKV, err := members.Ensure(sctx, js, *replicas)
	if err != nil {
		return fmt.Errorf("ledger: --cluster %q: %w", *cluster, err)
	}
	cancel()
	log.Info("ledger writer started", "cluster", nc.ConnectedUrlRedacted(), "postgres", pgledger.RedactURL(*pgURL), "durable", *durable)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	// The heartbeat (with the lag) lists this writer in the cluster's GET /api/cluster.
	g.Go(func() error {
		var httpAddr string
		if ln != nil {
			httpAddr = ln.Addr().String()
		}
		members.Heartbeat(gctx, membersKV, "ledger-"+defaultMemberID(), members.RoleLedger, log, func() members.Member {
			m := members.Member{HTTP: httpAddr}
			lctx, cancel := context.WithTimeout(gctx, 500*time.Millisecond)
			if lag, err := w.Lag(lctx); err == nil {
				m.LagMessages = &lag
			}
			cancel()
			return m
		})
		return nil
	})
	if ln != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), w.Collector())
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		fmt.Fprintf(stdout, "ledger metrics on http://%s/metrics\n", ln.Addr())
		g.Go(func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("ledger: HTTP server on %s: %w", ln.Addr(), err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return srv.Shutdown(shutCtx)
		})
	}
	err = g.Wait()
	s := w.Stats()
	log.Info("ledger writer stopped", "messages", s.Messages, "shares", s.Shares, "stored", s.Stored, "batches", s.Batches, "bad", s.Bad, "quarantined", s.Quarantined)
	return err
}
