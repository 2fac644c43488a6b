package main

import (
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/clusterapi"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/cluster/leader"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/work"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// runClusterCoordinator is `powcoord coordinator --cluster URLS`: it
// campaigns for leadership; while active it opens the work source (the
// embedded chain in the CHAIN stream, or the --node), publishes jobs to
// the front-ends and submits the blocks they find; while standby it waits.
// --http serves internal/web's API over the cluster (clusterHandler),
// its GET /api/cluster, /metrics and a dashboard at /.
func runClusterCoordinator(ctx context.Context, f *coordFlags, log *slog.Logger, stdout io.Writer) error {
	urls, err := bus.ParseURLs(f.cluster)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", f.cluster, err)
	}
	if f.leaderTTL < time.Second {
		return fmt.Errorf("--leader-ttl %v: must be at least 1s", f.leaderTTL)
	}
	if f.wait <= 0 {
		return fmt.Errorf("--wait %v: must be positive", f.wait)
	}
	host, _ := os.Hostname()
	var rnd [4]byte
	rand.Read(rnd[:])
	id := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(rnd[:]))
	cctx, cancel := context.WithTimeout(ctx, f.wait)
	defer cancel()
	nc, err := bus.Connect(cctx, urls, "powcoord-coordinator "+id)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", f.cluster, err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", f.cluster, err)
	}
	if _, err := bus.EnsureStreams(cctx, js, bus.StreamsConfig{Replicas: f.replicas, LeaderTTL: f.leaderTTL}); err != nil {
		return fmt.Errorf("--cluster %q: %w", f.cluster, err)
	}
	membersKV, err := members.Ensure(cctx, js, f.replicas)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", f.cluster, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var open func(ctx context.Context, js jetstream.JetStream, term uint64) (work.Source, jobs.Payout, error)
	nodeSrc, err := f.node.source(ctx, log, reg)
	if err != nil {
		return err
	}
	if nodeSrc != nil {
		defer nodeSrc.Close()
		payout, err := jobs.NodePayout(f.node.network, f.node.payout)
		if err != nil {
			return err
		}
		open = func(context.Context, jetstream.JetStream, uint64) (work.Source, jobs.Payout, error) {
			return keepOpen{nodeSrc}, payout, nil
		}
	} else {
		open = func(ctx context.Context, js jetstream.JetStream, term uint64) (work.Source, jobs.Payout, error) {
			cs, err := chainstore.Open(ctx, js, term, id)
			if err != nil {
				return nil, jobs.Payout{}, err
			}
			chain, err := simchain.Open(ctx, simchain.Config{Store: cs, BlockTime: f.blockTime, StartDifficulty: f.blockDiff, Logger: log})
			if err != nil {
				return nil, jobs.Payout{}, err
			}
			return chain, jobs.EmbeddedPayout(), nil
		}
	}
	lcfg := leader.Config{Conn: nc, ID: id, TTL: f.leaderTTL, Open: open, Logger: log}
	var led *pgledger.Ledger
	if f.postgres != "" {
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		led, err = pgledger.Open(pctx, f.postgres)
		pcancel()
		if err != nil {
			return fmt.Errorf("--postgres: %w", err)
		}
		defer led.Close()
	}
	// The payout rules: the PPLNS plan's, and the accounts' window
	// (GET /api/miners) in either mode.
	var pcfg coordinator.Config
	poolScript := simchain.PayoutScript
	if nodeSrc != nil {
		poolScript = func(a string) ([]byte, error) { return node.AddressScript(a, f.node.network) }
	}
	if err := f.payoutConfig(&pcfg, poolScript); err != nil {
		return err
	}
	if f.payout == coordinator.PayoutPPLNS {
		lcfg.Publisher = pplnsPublisher(pcfg.PayoutRules(), led, log)
		log.Info("cluster PPLNS payouts", "postgres", pgledger.RedactURL(f.postgres), "window", f.pplnsWindow)
	}
	r, err := leader.New(lcfg)
	if err != nil {
		return err
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "powcoord_cluster_active",
		Help: "1 while this coordinator is the cluster's active one, 0 while it stands by.",
	}, func() float64 {
		if r.State().Role == "active" {
			return 1
		}
		return 0
	}))

	var srv *http.Server
	var httpAddr string
	if f.http != "" {
		ln, err := net.Listen("tcp", f.http)
		if err != nil {
			return fmt.Errorf("--http %q: %w", f.http, err)
		}
		rd := &clusterapi.Reader{Runner: r, Members: membersKV, Node: nodeSrc, Started: time.Now()}
		var chain work.ChainLookup
		scriptOf := simchain.PayoutScript
		if nodeSrc != nil {
			scriptOf = nodeSrc.PayoutScript
			chain, _ = nodeSrc.(work.ChainLookup)
		} else {
			rd.Chain = chainstore.NewView(js)
			rd.LastJob = func(ctx context.Context) (*jobs.Job, error) { return jobs.Last(ctx, js) }
			chain = rd.Chain
		}
		var acct *payout.Accounts
		if led != nil {
			plan, err := payout.NewPlan(pcfg.PayoutRules(), led, scriptOf, log)
			if err != nil {
				return err
			}
			acct = &payout.Accounts{Plan: plan, Mode: cmp.Or(f.payout, coordinator.PayoutSolo), Current: rd.NextTemplate, ScriptOf: scriptOf, Chain: chain}
		}
		srv = &http.Server{Handler: clusterHandler(rd, led, acct, reg, log), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			srv.Shutdown(sctx)
			c()
		}()
		httpAddr = ln.Addr().String()
		log.Info("cluster coordinator HTTP", "addr", httpAddr)
	}
	fmt.Fprintf(stdout, "coordinator %s on cluster %s: campaigning\n", id, strings.Join(urls, ","))
	hbCtx, stopHB := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		members.Heartbeat(hbCtx, membersKV, "coordinator-"+id, members.RoleCoordinator, log, func() members.Member {
			return members.Member{State: r.State().Role, HTTP: httpAddr}
		})
	}()
	defer func() { stopHB(); <-hbDone }()
	if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// clusterPage is the cluster dashboard at GET /: the tip and totals,
// every coordinator, front-end and ledger writer from GET /api/status and
// the newest blocks from GET /api/blocks, refreshed each second.
//
//go:embed cluster.html
var clusterPage []byte

// pplnsPublisher gives each term's job publisher a payout plan over led
// that maps workers to scripts as the term's source does: every job's
// coinbase outputs are fixed from the shared ledger and each found
// block's payout recorded there once the block is submitted
// (docs/payouts.md, "In a cluster").
func pplnsPublisher(rules payout.Rules, led payout.Ledger, log *slog.Logger) func(work.Source, *jobs.PublisherConfig) error {
	return func(src work.Source, pc *jobs.PublisherConfig) error {
		plan, err := payout.NewPlan(rules, led, src.PayoutScript, log)
		if err != nil {
			return err
		}
		pc.PPLNS, pc.RecordPayout = plan.Job, plan.Record
		return nil
	}
}

// keepOpen is a source that outlives the term: a node is followed for the
// whole run, so the end of a term must not close it.
type keepOpen struct{ work.Source }

func (keepOpen) Close() error { return nil }
