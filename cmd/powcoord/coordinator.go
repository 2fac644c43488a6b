package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/alert"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/jds"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/listen"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/powcoord/powcoord/internal/work"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// coordFlags are the flags shared by `coordinator` and `demo`.
type coordFlags struct {
	// listen is the Stratum listener surface, the same as a front-end's
	// (internal/listen).
	listen       listen.Flags
	http         string
	data         string
	shareDiff    float64
	blockDiff    float64
	blockTime    time.Duration
	sharesPerMin float64
	logLevel     string
	node         *nodeFlags

	// pool is the miner policy shared with frontend: the reject rule and
	// bans, the coinbase tag, who may lift a ban (poolflags.go).
	pool    poolFlags
	hasPool bool // pool was registered (not in the demo)

	// Cluster (coordinator command only).
	cluster   string        // NATS URLs: run as the cluster's active/standby coordinator
	postgres  string        // --postgres: the cluster's shared ledger (PPLNS window)
	leaderTTL time.Duration // --leader-ttl
	wait      time.Duration // --wait: with --cluster, how long start-up waits for NATS
	replicas  int           // --replicas

	// Payouts (docs/payouts.md).
	payout       string
	pplnsWindow  float64
	poolFee      string
	poolAddress  string
	payoutDust   int64
	maxPayoutOut int

	jd string // --jd: the Job Declarator Server's address

	// Alerts (coordinator and demo).
	webhooks         urlList
	webhookFormat    string
	webhookBestShare bool
	// Worker alerts to the webhooks, and the worker history they read.
	workerOfflineAfter time.Duration
	workerDropBelow    float64
	workerHistory      time.Duration
}

func (f *coordFlags) register(fs *flag.FlagSet, demo bool) {
	f.listen.Register(fs, "127.0.0.1:3333", demo)
	if !demo {
		fs.StringVar(&f.data, "data", "powcoord-data", "`directory` for the database (created if missing)")
		f.node = addNodeFlags(fs)
		f.pool.register(fs)
		f.hasPool = true
		fs.StringVar(&f.jd, "jd", "", "Stratum V2 Job Declarator Server listen `address` (same authority key as --stratum/--stratum2): miners declare their own templates and mine them with SetCustomMiningJob (docs/stratum-v2.md); empty: none")
		fs.StringVar(&f.cluster, "cluster", "", "run as a cluster coordinator on these NATS JetStream `URLs` (comma-separated): one coordinator is active, the others stand by; miners connect to the cluster's frontends, not here")
		fs.IntVar(&f.replicas, "replicas", 3, "with --cluster: copies of every JetStream stream (1 for a single NATS server; 3 on a 3-server cluster)")
		fs.DurationVar(&f.leaderTTL, "leader-ttl", 3*time.Second, "with --cluster: a standby takes over at most about this long after the active coordinator dies")
		fs.DurationVar(&f.wait, "wait", 30*time.Second, "with --cluster: how long to wait at start-up for the cluster to answer and its streams to be placed (as frontend and ledger)")
		fs.StringVar(&f.postgres, "postgres", "", "with --cluster: the cluster's PostgreSQL ledger `URL` (the one the ledger writers fill); GET /api/workers and /api/best read it, and with --payout pplns (where it is required) the PPLNS window is read and every found block's payout recorded there")
	} else {
		f.listen.V1 = "127.0.0.1:0"
		fs.StringVar(&f.data, "data", "", "`directory` for the database; empty means a fresh temporary directory, removed at exit")
	}
	fs.Var(&f.webhooks, "webhook", "POST an alert to this `URL` on every found block (http or https); repeat for several endpoints")
	fs.StringVar(&f.webhookFormat, "webhook-format", "json", "webhook body `format`: json (the event), discord ({\"content\": text}) or ntfy (plain text, Title header)")
	fs.BoolVar(&f.webhookBestShare, "webhook-best-share", false, "also POST to the webhooks when a worker sets a new all-time best share")
	fs.DurationVar(&f.workerOfflineAfter, "worker-offline-after", alert.DefaultOfflineAfter, "with --webhook: POST when a worker has sent no accepted share for this `duration` (at least 1m), and again when it is back; 0 disables")
	fs.Float64Var(&f.workerDropBelow, "worker-drop-below", alert.DefaultDropBelow, "with --webhook: POST when a worker's 5-minute hashrate falls below this `fraction` of its 1-hour average (above 0, below 1); 0 disables")
	fs.DurationVar(&f.workerHistory, "worker-history-retention", ledger.DefaultHistoryRetention, "keep the per-minute worker history (GET /api/workers/{name}) this `long` (at least 24h)")
	fs.StringVar(&f.http, "http", "127.0.0.1:8080", "HTTP listen `address` for the API, dashboard and metrics; empty disables it")
	fs.Float64Var(&f.shareDiff, "share-difficulty", 0.001, "starting share `difficulty` of every connection (fractional allowed); vardiff moves it from there")
	fs.Float64Var(&f.blockDiff, "block-difficulty", 0.05, "embedded chain: the genesis block's `difficulty`, where difficulty adjustment starts")
	fs.DurationVar(&f.blockTime, "block-time", 10*time.Second, "embedded chain: the mean block `interval` difficulty adjustment aims for (at least 1s)")
	fs.Float64Var(&f.sharesPerMin, "shares-per-minute", 20, "vardiff aims each connection at this `rate`; 0 or less turns vardiff off")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&f.payout, "payout", "solo", "payout `mode`: solo (each block pays its finder) or pplns (each block pays the miners of the last --pplns-window blocks of share work, in proportion; docs/payouts.md)")
	fs.Float64Var(&f.pplnsWindow, "pplns-window", 8, "with --payout pplns: the window, in `blocks` of network difficulty of share work")
	fs.StringVar(&f.poolFee, "pool-fee", "0", "with --payout pplns: the pool's `percentage` of every block (at most two decimals: 1%, 0.5%), paid to --pool-address")
	fs.StringVar(&f.poolAddress, "pool-address", "", "with --pool-fee: the `address` the fee is paid to")
	fs.Int64Var(&f.payoutDust, "payout-dust", coordinator.DefaultPayoutDust, "with --payout pplns: the smallest output in `satoshis`; a miner whose amount would be smaller is not paid in that block")
	fs.IntVar(&f.maxPayoutOut, "payout-max-outputs", coordinator.DefaultMaxPayoutOutputs, "with --payout pplns: the most paying outputs of a coinbase, the fee included (the template's room in the block may lower it)")
}

// payoutConfig checks the payout flags and copies them into cfg; script
// decodes --pool-address for the work source.
func (f *coordFlags) payoutConfig(cfg *coordinator.Config, script func(string) ([]byte, error)) error {
	// Zero values (flags built without register, as tests do) take the
	// coordinator's defaults.
	switch f.payout {
	case "", coordinator.PayoutSolo, coordinator.PayoutPPLNS:
	default:
		return fmt.Errorf("--payout %q: want solo or pplns", f.payout)
	}
	cfg.Payout = f.payout
	if f.pplnsWindow < 0 || f.pplnsWindow > 1e12 || f.pplnsWindow != f.pplnsWindow {
		return fmt.Errorf("--pplns-window %v: must be above 0 and at most 1e12 blocks", f.pplnsWindow)
	}
	cfg.PPLNSWindow = f.pplnsWindow
	fee := int64(0)
	if f.poolFee != "" {
		v, err := payout.ParseFee(f.poolFee)
		if err != nil {
			return fmt.Errorf("--pool-fee: %w", err)
		}
		fee = v
	}
	if fee > 0 && f.poolAddress == "" {
		return fmt.Errorf("--pool-fee %s needs --pool-address", f.poolFee)
	}
	if fee > 0 && f.payout != coordinator.PayoutPPLNS {
		return fmt.Errorf("--pool-fee %s: only with --payout pplns (a solo block pays its finder in full)", f.poolFee)
	}
	if f.poolAddress != "" {
		s, err := script(f.poolAddress)
		if err != nil {
			return fmt.Errorf("--pool-address %q: %w", f.poolAddress, err)
		}
		cfg.PoolScript = s
	}
	cfg.PoolFeeBasisPoints = fee
	if f.payoutDust < 0 {
		return fmt.Errorf("--payout-dust %d: must be at least 1 satoshi", f.payoutDust)
	}
	if f.maxPayoutOut < 0 || f.maxPayoutOut > 20000 {
		return fmt.Errorf("--payout-max-outputs %d: must be 1..20000", f.maxPayoutOut)
	}
	cfg.PayoutDust, cfg.MaxPayoutOutputs = f.payoutDust, f.maxPayoutOut
	return nil
}

func (f *coordFlags) check() error {
	if !(f.shareDiff > 0) {
		return fmt.Errorf("--share-difficulty %v: must be a positive number", f.shareDiff)
	}
	if !(f.blockDiff > 0) {
		return fmt.Errorf("--block-difficulty %v: must be a positive number", f.blockDiff)
	}
	if f.blockTime < time.Second {
		return fmt.Errorf("--block-time %v: must be at least 1s (header times are whole seconds)", f.blockTime)
	}
	if err := f.listen.Validate(); err != nil {
		return err
	}
	if f.hasPool {
		if err := f.pool.check(); err != nil {
			return err
		}
	}
	if _, err := alert.New(alert.Config{URLs: f.webhooks, Format: f.webhookFormat}); err != nil {
		return fmt.Errorf("--webhook / --webhook-format: %w", err)
	}
	if f.webhookBestShare && len(f.webhooks) == 0 {
		return errors.New("--webhook-best-share needs at least one --webhook")
	}
	if err := (&alert.WatchConfig{OfflineAfter: f.workerOfflineAfter}).Check(); err != nil {
		return fmt.Errorf("--worker-offline-after %v: want at least 1m, or 0 for no offline alerts", f.workerOfflineAfter)
	}
	if err := (&alert.WatchConfig{DropBelow: f.workerDropBelow}).Check(); err != nil {
		return fmt.Errorf("--worker-drop-below %v: want a fraction above 0 and below 1, or 0 for no drop alerts", f.workerDropBelow)
	}
	if f.workerHistory != 0 && f.workerHistory < ledger.MinHistoryRetention {
		return fmt.Errorf("--worker-history-retention %v: must be at least %v", f.workerHistory, ledger.MinHistoryRetention)
	}
	if f.jd != "" && f.cluster != "" {
		return fmt.Errorf("--jd %q: job declaration is served by a single coordinator, not yet with --cluster", f.jd)
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// instance is a running coordinator with its store, listeners and source.
//
// One goroutine group owns every server: the Stratum listeners (plain and
// TLS, through Coordinator.Run), the HTTP server and the dashboard feed.
// When ctx ends, or any of them fails, all are stopped; only after every
// one has returned are the source and then the store closed, and only
// then is the result sent on done. So no session can record a share into
// a closed store.
type instance struct {
	coord      *coordinator.Coordinator
	store      *store.Store
	source     work.Source
	lns        *listen.Set // the Stratum listeners
	httpLn     net.Listener
	adminLn    net.Listener // --admin-http
	jdLn       net.Listener // --jd
	httpServer *http.Server
	web        *web.Server // nil without --http
	done       chan error  // the servers' first error (or nil), once all is closed
	closeOnce  sync.Once
}

// startCoordinator opens the store and the work source, and starts the
// Stratum and HTTP servers. onBlock may be nil.
func startCoordinator(ctx context.Context, f *coordFlags, log *slog.Logger, onBlock func(coordinator.BlockEvent)) (*instance, error) {
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return nil, fmt.Errorf("--data %q: %w", f.data, err)
	}
	st, err := store.Open(filepath.Join(f.data, "powcoord.db"))
	if err != nil {
		return nil, err
	}
	inst := &instance{store: st, done: make(chan error, 1)}
	fail := func(err error) (*instance, error) {
		inst.close()
		return nil, err
	}
	if f.workerHistory != 0 {
		if err := st.SetHistoryRetention(f.workerHistory); err != nil {
			return fail(fmt.Errorf("--worker-history-retention: %w", err))
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var src work.Source
	if f.node != nil {
		if src, err = f.node.source(ctx, log, reg); err != nil {
			return fail(err)
		}
	}
	embedded := src == nil
	if embedded {
		chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: f.blockTime, StartDifficulty: f.blockDiff, Logger: log})
		if err != nil {
			return fail(err)
		}
		src = chain
	}
	inst.source = src
	var alerts *alert.Notifier
	if len(f.webhooks) > 0 {
		if alerts, err = alert.New(alert.Config{URLs: f.webhooks, Format: f.webhookFormat, Logger: log, Registerer: reg}); err != nil {
			return fail(err)
		}
		onBlock = alertOnBlock(alerts, onBlock)
		if f.webhookBestShare {
			st.OnNewBest(func(b store.BestShare, previous float64) {
				if b.Kind == store.BestWorker && b.Scope == store.BestAllTime {
					alerts.Notify(alert.Event{Kind: alert.KindBestShare, Hash: b.Hash.String(), Worker: b.Name, Difficulty: b.Difficulty, Previous: previous, Time: b.Time.UTC()})
				}
			})
		}
	}
	spm := f.sharesPerMin
	if spm <= 0 {
		spm = -1
	}
	cfg := coordinator.Config{
		Source: src, Store: st,
		ShareDifficulty: f.shareDiff, SharesPerMinute: spm,
		Logger: log, OnBlock: onBlock, Registerer: reg,
	}
	f.listen.Apply(&cfg)
	if err := f.pool.apply(&cfg); err != nil {
		return fail(err)
	}
	poolScript := simchain.PayoutScript
	if !embedded {
		poolScript = func(a string) ([]byte, error) { return node.AddressScript(a, f.node.network) }
	}
	if err := f.payoutConfig(&cfg, poolScript); err != nil {
		return fail(err)
	}
	if inst.lns, err = f.listen.Open(f.data, log); err != nil {
		return fail(err)
	}
	var jd *jds.Server
	if f.jd != "" {
		if jd, err = f.jobDeclarator(inst, src, &cfg, log); err != nil {
			return fail(err)
		}
	}
	inst.coord, err = coordinator.New(cfg)
	if err != nil {
		return fail(err)
	}
	lns := inst.lns.Serve()
	if f.http != "" {
		inst.httpLn, err = net.Listen("tcp", f.http)
		if err != nil {
			return fail(fmt.Errorf("--http %q: %w", f.http, err))
		}
		ws := web.New(inst.coord, st, log)
		if embedded {
			ws.SetBlockTime(f.blockTime) // the embedded chain's target; a node's is 10 min
		}
		inst.web = ws
		ws.HandleBans(web.BanAccess{Token: f.pool.adminToken})
		ws.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		inst.httpServer = &http.Server{Handler: ws, ReadHeaderTimeout: 10 * time.Second}
	}

	adminSrv, adminLn, err := f.pool.listenAdmin(func() web.BanList { return inst.coord }, log)
	if err != nil {
		return fail(err)
	}
	inst.adminLn = adminLn

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return inst.coord.Run(gctx, lns...) })
	g.Go(func() error { return serveAdmin(gctx, adminSrv, adminLn) })
	if jd != nil {
		g.Go(func() error { return jd.Serve(gctx, inst.jdLn) })
	}
	if alerts != nil {
		g.Go(func() error { alerts.Run(gctx); return nil })
		g.Go(func() error {
			return alert.WatchWorkers(gctx, alert.WatchConfig{Source: st, Notify: alerts.Notify,
				OfflineAfter: f.workerOfflineAfter, DropBelow: f.workerDropBelow, Logger: log})
		})
	}
	if inst.httpServer != nil {
		g.Go(func() error {
			if err := inst.httpServer.Serve(inst.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("HTTP server on %s: %w", inst.httpLn.Addr(), err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := inst.httpServer.Shutdown(shutCtx); err != nil {
				inst.httpServer.Close() // event streams that did not end in time
			}
			return nil
		})
		g.Go(func() error { inst.web.Run(gctx); return nil })
	}
	go func() {
		err := g.Wait()
		inst.close()
		inst.done <- err
	}()
	return inst, nil
}

// jobDeclarator opens --jd and returns its Job Declarator Server, set
// as cfg.JobDeclarations; the required outputs come from inst.coord.
func (f *coordFlags) jobDeclarator(inst *instance, src work.Source, cfg *coordinator.Config, log *slog.Logger) (*jds.Server, error) {
	check, ok := src.(work.BlockChecker)
	if !ok {
		return nil, fmt.Errorf("--jd: the work source (%T) cannot check a declared block", src)
	}
	if inst.lns.Noise() == nil {
		return nil, fmt.Errorf("--jd %q needs a V2 listener (--stratum or --stratum2) for SetCustomMiningJob", f.jd)
	}
	jd, err := jds.New(jds.Config{Noise: inst.lns.Noise(), Source: src, Check: check, Logger: log,
		ExtranonceSize: coordinator.Extranonce1Size + cmp.Or(cfg.Extranonce2Size, coordinator.DefaultExtranonce2Size),
		Payout:         func(user string) (jds.Payout, error) { return inst.coord.JDPayout(user) }})
	if err != nil {
		return nil, err
	}
	if inst.jdLn, err = net.Listen("tcp", f.jd); err != nil {
		return nil, fmt.Errorf("--jd %q: %w", f.jd, err)
	}
	log.Info("job declarator listening", "addr", inst.jdLn.Addr().String())
	cfg.JobDeclarations = jd
	return jd, nil
}

// alertOnBlock posts every settled found block to the webhooks (without
// waiting: Notify only queues), then calls next (may be nil).
func alertOnBlock(n *alert.Notifier, next func(coordinator.BlockEvent)) func(coordinator.BlockEvent) {
	return func(ev coordinator.BlockEvent) {
		accepted := ev.Accepted
		n.Notify(alert.Event{Kind: alert.KindBlock, Height: ev.Height, Hash: ev.Hash, Finder: ev.Finder, Accepted: &accepted, Reason: ev.Reason, Time: ev.Time.UTC()})
		if next != nil {
			next(ev)
		}
	}
}

// wait blocks until every server has stopped (ctx ended, or one failed)
// and the source and store are closed.
func (inst *instance) wait() error {
	return <-inst.done
}

// close releases what the instance holds: listeners (for a start-up that
// failed half way; Run closes them itself), then the source, then the
// store. It runs once; the server group calls it after every server has
// returned.
func (inst *instance) close() {
	inst.closeOnce.Do(func() {
		if inst.lns != nil {
			inst.lns.Close()
		}
		for _, ln := range []net.Listener{inst.httpLn, inst.adminLn, inst.jdLn} {
			if ln != nil {
				ln.Close()
			}
		}
		if inst.source != nil {
			inst.source.Close()
		}
		if inst.store != nil {
			inst.store.Close()
		}
	})
}

func (inst *instance) httpURL() string {
	if inst.httpLn == nil {
		return ""
	}
	return "http://" + inst.httpLn.Addr().String() + "/"
}

const coordinatorUsage = `Usage: powcoord coordinator [flags]

Runs the Stratum V1 server. Without --node it mines the embedded chain
stored under --data; with --node it is a solo pool on a Bitcoin node.

Examples:
  powcoord coordinator --stratum 0.0.0.0:3333 --http 127.0.0.1:8080 --data ./pool
  powcoord coordinator --block-difficulty 0.05 --block-time 30s
  powcoord coordinator --node http://127.0.0.1:18443 --node-cookie ~/.bitcoin/regtest/.cookie \
      --network regtest --payout-address bcrt1q...
  powcoord coordinator --cluster nats://h1:4222,nats://h2:4222,nats://h3:4222 --http :8080
      (cluster mode: run two or more; miners connect to powcoord frontend;
      --http serves the whole cluster's /api/status, /api/blocks, /api/cluster)

Flags:
`

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f coordFlags
	f.register(fs, false)
	configPath := addConfigFlag(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), coordinatorUsage); fs.PrintDefaults() }
	if err := parseArgs(fs, args, configPath); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	if f.cluster != "" {
		if f.payout == coordinator.PayoutPPLNS && f.postgres == "" {
			return errors.New("--payout pplns with --cluster needs --postgres URL: the cluster's PPLNS window is read from the shared ledger (docs/payouts.md)")
		}
		if set := givenPoolFlags(fs); len(set) > 0 {
			return fmt.Errorf("%s with --cluster: a cluster coordinator serves no miners and builds no coinbase; give them to each powcoord frontend", strings.Join(set, ", "))
		}
		return runClusterCoordinator(ctx, &f, log, stdout)
	}
	if f.postgres != "" {
		return errors.New("--postgres is only used with --cluster: a single coordinator's ledger is its SQLite file under --data")
	}
	inst, err := startCoordinator(ctx, &f, log, nil)
	if err != nil {
		return err
	}
	attrs := []any{"stratum", inst.lns.V1.Addr().String(), "stratum_v2_url", inst.lns.V1URL, "http", inst.httpURL(), "data", f.data}
	if inst.lns.TLS != nil {
		attrs = append(attrs, "stratum_tls", inst.lns.TLS.Addr().String())
	}
	log.Info("coordinator running", attrs...)
	if err := inst.wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
