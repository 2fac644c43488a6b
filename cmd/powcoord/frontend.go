package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/cluster/lease"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/listen"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

const frontendUsage = `Usage: powcoord frontend --cluster URLS [flags]

Runs a Stratum front-end of a powcoord cluster: it serves miners on
--stratum (and --stratum-tls, --stratum2), mines on the jobs the active
coordinator publishes to the NATS JetStream cluster, validates shares
itself, and hands found blocks to the active coordinator through the
cluster. Run any number of front-ends. Its listener flags (Stratum V1,
TLS, V2, --auth, connection limits, bans, --min-difficulty,
--version-mask, client.reconnect) and --config are those of powcoord
coordinator, checked the same way (internal/listen).

Unique work: at start the front-end leases an extranonce1 prefix (8 bits,
so up to 256 front-ends) from the KV bucket powcoord-prefixes and renews it
every third of the lease TTL; every extranonce1 it hands out starts with
it. When the lease is lost (the cluster cannot be reached for 9/10 of the
TTL, or another front-end holds the prefix), the front-end stops accepting
shares and closes every session, so its miners go to another front-end;
then it leases a prefix again and serves miners anew. The lease TTL is
the cluster's, set by the first front-end (--lease-ttl, 3s by default): a
front-end given a --lease-ttl that differs from it refuses to start.

Ledger (--ledger):
  sharelog  (default) a share is answered true only after the replicated
            SHARES stream acknowledged it; run powcoord ledger to move the
            shares into PostgreSQL.
  sqlite    shares go to the SQLite file under --data on this host only,
            and never reach the cluster's PostgreSQL ledger: for a trial of
            the cluster without a ledger writer, or a solo operator who
            keeps one front-end's accounting in a local file. Found blocks
            go to the cluster either way.

Found blocks: a block a miner finds is recorded in found-blocks.db under
--data (with --ledger sqlite: in the ledger file) before it is published
to the cluster; one the cluster could not take (cut off from NATS) stays
pending there and is published again with backoff, also after a new
lease and after a restart with the same --data, until the cluster has it
or its chain has moved past the block's height.

Every second the front-end writes a heartbeat (sessions, shares/s,
accepted shares, its prefix, its Stratum address) to the KV bucket
powcoord-members; the cluster coordinator's GET /api/cluster lists them.
With --http it serves /metrics (Prometheus) and GET /api/status (the
coordinator's status and the lease).

Examples:
  powcoord frontend --cluster nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222 \
      --stratum 0.0.0.0:3333 --http 0.0.0.0:9101
  powcoord frontend --cluster nats://127.0.0.1:4222 --replicas 1 --stratum 127.0.0.1:3334 \
      --id fe2 --share-difficulty 0.01 --wait 1m
  powcoord frontend --cluster nats://127.0.0.1:4222 --ledger sqlite --data /tmp/fe3

Flags:
`

func runFrontend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "", "comma-separated NATS server `URLs` of the cluster (nats://host:port or tls://host:port); required")
	var lf listen.Flags
	lf.Register(fs, "127.0.0.1:3333", false)
	httpAddr := fs.String("http", "", "HTTP listen `address` for /metrics and /api/status (e.g. 127.0.0.1:9101); empty disables it")
	ledgerKind := fs.String("ledger", "sharelog", "where accepted shares go: `sharelog` (the cluster's SHARES stream) or sqlite (a file under --data)")
	data := fs.String("data", "powcoord-frontend-data", "`directory` of this front-end's files (created if missing): its record of found blocks (found-blocks.db) and, with --ledger sqlite, the ledger")
	id := fs.String("id", "", "this front-end's `id` in the cluster: letters, digits, '-' and '_' (default: host name, pid and a random suffix)")
	replicas := fs.Int("replicas", 3, "`copies` of each stream and bucket when this front-end creates them (at most the number of NATS servers)")
	leaseTTL := fs.Duration("lease-ttl", 0, "lifetime of the extranonce1 prefix lease without renewal, the same for the whole cluster: 0 takes the cluster's (3s when this front-end is the first); the front-end sends its miners away 9/10 of it after it last reached the cluster")
	shareDiff := fs.Float64("share-difficulty", 0.001, "starting share `difficulty` of every connection; vardiff moves it from there")
	spm := fs.Float64("shares-per-minute", 20, "vardiff aims each connection at this `rate`; 0 or less turns vardiff off")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait at start-up for the cluster to answer and for the first job")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	var pf poolFlags
	pf.register(fs)
	configPath := addConfigFlag(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), frontendUsage); fs.PrintDefaults() }
	if err := parseArgs(fs, args, configPath); err != nil {
		return err
	}
	if err := lf.Validate(); err != nil {
		return err
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
	if err := pf.check(); err != nil {
		return err
	}
	if *ledgerKind != "sharelog" && *ledgerKind != "sqlite" {
		return fmt.Errorf("--ledger %q: want sharelog or sqlite", *ledgerKind)
	}
	if *leaseTTL != 0 && *leaseTTL < time.Second {
		return fmt.Errorf("--lease-ttl %v: must be at least 1s (or 0: the cluster's)", *leaseTTL)
	}
	if *replicas < 1 || *replicas > 5 {
		return fmt.Errorf("--replicas %d: want 1 to 5", *replicas)
	}
	if *id == "" {
		*id = defaultMemberID()
	} else if !validToken(*id) {
		return fmt.Errorf("--id %q: letters, digits, '-' and '_' only", *id)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	nc, err := bus.Connect(cctx, urls, "powcoord-frontend "+*id)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	if _, err := bus.EnsureStreams(cctx, js, bus.StreamsConfig{Replicas: *replicas, KeepExisting: true}); err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	leaseKV, ttl, err := lease.Ensure(cctx, js, *leaseTTL, *replicas)
	if err != nil {
		return fmt.Errorf("--lease-ttl %v, --cluster %q: %w", *leaseTTL, *cluster, err)
	}
	*leaseTTL = ttl
	membersKV, err := members.Ensure(cctx, js, *replicas)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	src, err := jobs.NewSource(cctx, jobs.SourceConfig{Conn: nc, Logger: log})
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", *cluster, err)
	}
	defer src.Close()

	var led coordinator.Ledger
	if *ledgerKind == "sqlite" {
		if err := os.MkdirAll(*data, 0o755); err != nil {
			return fmt.Errorf("--data %q: %w", *data, err)
		}
		st, err := store.Open(filepath.Join(*data, "powcoord.db"))
		if err != nil {
			return fmt.Errorf("--data %q: %w", *data, err)
		}
		defer st.Close()
		led = st
	} else {
		sl, err := sharelog.New(js, sharelog.Config{Frontend: *id, Logger: log})
		if err != nil {
			return fmt.Errorf("frontend: %w", err)
		}
		defer sl.Close()
		// Found blocks are recorded in a file of this host before they
		// are handed to the cluster, so that one found while the cluster
		// cannot be reached outlives the lease term and the process.
		if err := os.MkdirAll(*data, 0o755); err != nil {
			return fmt.Errorf("--data %q: %w", *data, err)
		}
		spool, err := store.Open(filepath.Join(*data, "found-blocks.db"))
		if err != nil {
			return fmt.Errorf("--data %q: found-block record: %w", *data, err)
		}
		defer spool.Close()
		led = frontLedger{Log: sl, spool: spool}
	}
	counted := &countingLedger{Ledger: led}
	var ledger coordinator.Ledger = counted
	if b, ok := led.(coordinator.BatchLedger); ok {
		ledger = countingBatchLedger{counted, b}
	}

	if err := os.MkdirAll(*data, 0o755); err != nil {
		return fmt.Errorf("--data %q: %w", *data, err)
	}
	lns, err := lf.Open(*data, log)
	if err != nil {
		return err
	}
	defer lns.Close()
	stratumAddr := ""
	if lns.V1 != nil {
		stratumAddr = lns.V1.Addr().String()
	}
	var hln net.Listener
	if *httpAddr != "" {
		if hln, err = net.Listen("tcp", *httpAddr); err != nil {
			return fmt.Errorf("--http %q: %w", *httpAddr, err)
		}
	}
	rate := *spm
	if rate <= 0 {
		rate = -1
	}
	fe := &frontend{id: *id, log: log, stratum: stratumAddr}
	base := prometheus.NewRegistry()
	base.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "powcoord_frontend_shares_recorded_total", Help: "Shares made durable by the ledger since start, over every lease."},
			func() float64 { return float64(counted.n.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "powcoord_frontend_leases_total", Help: "Extranonce1 prefix leases won since start."},
			func() float64 { return float64(fe.leases.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "powcoord_frontend_lease_held", Help: "1 while the front-end holds an extranonce1 prefix lease and serves miners."},
			func() float64 {
				if t := fe.current(); t != nil {
					return 1
				}
				return 0
			}))

	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopAll()
	if hln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{base, prometheus.GathererFunc(fe.gather)}, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /api/status", fe.serveStatus)
		web.BanRoutes(mux, fe.bans, web.BanAccess{Token: pf.adminToken}, log)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		bg.Go(func() { srv.Serve(hln) })
		bg.Go(func() {
			<-runCtx.Done()
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			srv.Shutdown(sctx)
			c()
		})
		fe.http = hln.Addr().String()
		log.Info("frontend HTTP", "addr", fe.http)
	}
	adminSrv, adminLn, err := pf.listenAdmin(fe.bans, log)
	if err != nil {
		return err
	}
	if adminSrv != nil {
		bg.Go(func() {
			if err := serveAdmin(runCtx, adminSrv, adminLn); err != nil {
				log.Error("admin HTTP server", "err", err)
			}
		})
	}
	var lastCount uint64
	lastTime := time.Now()
	bg.Go(func() {
		members.Heartbeat(runCtx, membersKV, *id, members.RoleFrontend, log, func() members.Member {
			now := time.Now()
			n := counted.n.Load()
			m := members.Member{Stratum: stratumAddr, HTTP: fe.http, Accepted: n}
			if dt := now.Sub(lastTime).Seconds(); dt > 0 && n >= lastCount {
				m.SharesPerSecond = float64(n-lastCount) / dt
			}
			lastCount, lastTime = n, now
			if t := fe.current(); t != nil {
				p := t.lease.Prefix()
				m.Prefix, m.PrefixBits = &p, lease.Bits
				m.Sessions = t.coord.SessionCount()
			}
			return m
		})
	})

	first := true
	for {
		l, err := lease.Acquire(ctx, leaseKV, *id, *leaseTTL, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("frontend: %w", err)
		}
		fe.leases.Add(1)
		reg := prometheus.NewRegistry()
		cfg := coordinator.Config{
			Source: src, Store: ledger, ShareDifficulty: *shareDiff, SharesPerMinute: rate, Logger: log,
			Extranonce1Prefix: l.Prefix(), Extranonce1PrefixBits: lease.Bits, Registerer: reg,
		}
		lf.Apply(&cfg)
		err = pf.apply(&cfg)
		var coord *coordinator.Coordinator
		if err == nil {
			coord, err = coordinator.New(cfg)
		}
		if err != nil {
			l.Release(context.Background())
			return err
		}
		if !first {
			// The previous term's Run closed the listeners; listen on the
			// same addresses again.
			if err := lns.Reopen(ctx.Done()); err != nil {
				l.Release(context.Background())
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		fe.set(&term{lease: l, coord: coord, reg: reg})
		log.Info("extranonce1 prefix leased", "id", *id, "prefix", l.Prefix(), "bits", lease.Bits, "revision", l.Revision())
		if first {
			t := src.Current()
			log.Info("frontend running", "id", *id, "stratum", stratumAddr, "cluster", strings.Join(urls, ","),
				"connected", nc.ConnectedUrlRedacted(), "height", t.Height, "ledger", *ledgerKind, "prefix", l.Prefix())
			fmt.Fprintf(stdout, "frontend %s: Stratum on %s, extranonce1 prefix %d/%d bits, mining height %d from %s\n",
				*id, stratumAddr, l.Prefix(), lease.Bits, t.Height, nc.ConnectedUrlRedacted())
			if lns.SV2URL != "" {
				fmt.Fprintf(stdout, "frontend %s: Stratum V2 at %s\n", *id, lns.SV2URL)
			}
			first = false
		}
		termCtx, endTerm := context.WithCancel(ctx)
		go func() {
			select {
			case <-l.Lost():
			case <-termCtx.Done():
			}
			endTerm()
		}()
		err = coord.Run(termCtx, lns.Serve()...)
		endTerm()
		fe.set(nil)
		if ctx.Err() != nil {
			return nil // ctx's end resigns the lease
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			l.Release(context.Background())
			return err
		}
		log.Warn("extranonce1 prefix lease lost: sessions closed, leasing again", "id", *id, "prefix", l.Prefix(), "err", l.Err())
	}
}

// frontend is the state the HTTP handlers and the heartbeat read.
type frontend struct {
	id, stratum, http string
	log               *slog.Logger
	leases            atomic.Int64
	cur               atomic.Pointer[term]
}

// term is one lease: the coordinator serving miners with its prefix.
type term struct {
	lease *lease.Lease
	coord *coordinator.Coordinator
	reg   *prometheus.Registry
}

func (f *frontend) set(t *term) { f.cur.Store(t) }

// bans is the current term's coordinator for the ban routes; nil between
// leases. The bans of a term end with it.
func (f *frontend) bans() web.BanList {
	if t := f.current(); t != nil {
		return t.coord
	}
	return nil
}

func (f *frontend) current() *term { return f.cur.Load() }

func (f *frontend) gather() ([]*dto.MetricFamily, error) {
	if t := f.current(); t != nil {
		return t.reg.Gather()
	}
	return nil, nil
}

// frontendStatus is GET /api/status of a front-end.
type frontendStatus struct {
	ID          string              `json:"id"`
	Stratum     string              `json:"stratum"`
	Lease       *leaseStatus        `json:"lease"` // null while the front-end holds none
	Coordinator *coordinator.Status `json:"coordinator,omitempty"`
}

type leaseStatus struct {
	Prefix   uint32    `json:"prefix"`
	Bits     int       `json:"bits"`
	Key      string    `json:"key"`
	Revision uint64    `json:"revision"`
	Since    time.Time `json:"since"`
}

func (f *frontend) serveStatus(w http.ResponseWriter, _ *http.Request) {
	st := frontendStatus{ID: f.id, Stratum: f.stratum}
	code := http.StatusOK
	if t := f.current(); t != nil {
		s := t.coord.Status()
		st.Coordinator = &s
		st.Lease = &leaseStatus{Prefix: t.lease.Prefix(), Bits: lease.Bits, Key: t.lease.Key(), Revision: t.lease.Revision(), Since: t.lease.Since().UTC()}
	} else {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(st)
}

// frontLedger is a front-end's ledger with --ledger sharelog: shares go to
// the cluster's SHARES stream; found blocks are recorded in a SQLite file
// under --data. The coordinator records a found block there before it
// hands it to the cluster (jobs.Source.Submit, durable in BLOCKS) and
// marks it accepted once BLOCKS has it; a block the cluster could not
// take stays pending and is offered again with backoff, by the
// coordinator of the next lease term and after a restart, so that a
// front-end cut off from NATS when one of its miners finds a block does
// not lose it.
type frontLedger struct {
	*sharelog.Log
	spool *store.Store
}

func (f frontLedger) AddFoundBlock(ctx context.Context, b ledger.Block) error {
	return f.spool.AddFoundBlock(ctx, b)
}

func (f frontLedger) SetFoundBlockState(ctx context.Context, hash chainmath.Hash, state, reason string, at time.Time) error {
	return f.spool.SetFoundBlockState(ctx, hash, state, reason, at)
}

func (f frontLedger) FoundBlocks(ctx context.Context, state string) ([]store.FoundBlock, error) {
	return f.spool.FoundBlocks(ctx, state)
}

// countingLedger counts the shares its ledger made durable.
type countingLedger struct {
	coordinator.Ledger
	n atomic.Uint64
}

func (c *countingLedger) RecordShare(ctx context.Context, sh ledger.Share) error {
	err := c.Ledger.RecordShare(ctx, sh)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// countingBatchLedger is a countingLedger whose ledger takes shares in
// batches (the share log): the coordinator feeds it batches.
type countingBatchLedger struct {
	*countingLedger
	batch coordinator.BatchLedger
}

func (c countingBatchLedger) RecordShareBatch(ctx context.Context, shares []ledger.Share) error {
	err := c.batch.RecordShareBatch(ctx, shares)
	if err == nil {
		c.n.Add(uint64(len(shares)))
	}
	return err
}

func defaultMemberID() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range host {
		if r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteRune('_')
		}
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	return fmt.Sprintf("%s-%d-%s", b.String(), os.Getpid(), hex.EncodeToString(rnd[:]))
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')) {
			return false
		}
	}
	return true
}
