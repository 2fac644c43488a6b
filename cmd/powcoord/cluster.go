package main

import (
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

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/cluster/leader"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/work"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// runClusterCoordinator is `powcoord coordinator --cluster URLS`: it
// campaigns for leadership; while active it opens the work source (the
// embedded chain in the CHAIN stream, or the --node), publishes jobs to
// the front-ends and submits the blocks they find; while standby it waits.
// --http serves the cluster's GET /api/status, /api/cluster, /api/blocks,
// /metrics and a dashboard at / (clusterHTTP).
func runClusterCoordinator(ctx context.Context, f *coordFlags, log *slog.Logger, stdout io.Writer) error {
	urls, err := bus.ParseURLs(f.cluster)
	if err != nil {
		return fmt.Errorf("--cluster %q: %w", f.cluster, err)
	}
	if f.leaderTTL < time.Second {
		return fmt.Errorf("--leader-ttl %v: must be at least 1s", f.leaderTTL)
	}
	host, _ := os.Hostname()
	var rnd [4]byte
	rand.Read(rnd[:])
	id := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(rnd[:]))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
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
	if f.payout == coordinator.PayoutPPLNS {
		var pcfg coordinator.Config
		poolScript := simchain.PayoutScript
		if nodeSrc != nil {
			poolScript = func(a string) ([]byte, error) { return node.AddressScript(a, f.node.network) }
		}
		if err := f.payoutConfig(&pcfg, poolScript); err != nil {
			return err
		}
		lcfg.Publisher = func(src work.Source, pc *jobs.PublisherConfig) error {
			return clusterPPLNS(pcfg, led, src, pc, log)
		}
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
		h := &clusterHTTP{r: r, members: membersKV, node: nodeSrc, ledger: led, started: time.Now(), log: log}
		if nodeSrc == nil {
			h.chain = chainstore.NewView(js)
			h.lastJob = func(ctx context.Context) (*jobs.Job, error) { return jobs.Last(ctx, js) }
		}
		srv = &http.Server{Handler: h.handler(reg), ReadHeaderTimeout: 10 * time.Second}
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

// clusterPPLNS makes the leader's job publisher fix every job's coinbase
// outputs from the shared ledger (coordinator.PPLNS over src's payout
// scripts) and record each found block's payout there once it has
// submitted the block: the job's record when the block pays a job of
// this term, a solo record from its coinbase otherwise. The block does
// not wait for the record: while PostgreSQL cannot be written the block
// goes to the chain all the same, and its record is written when the
// database is back (docs/payouts.md, "In a cluster").
func clusterPPLNS(cfg coordinator.Config, led *pgledger.Ledger, src work.Source, pc *jobs.PublisherConfig, log *slog.Logger) error {
	pp, err := coordinator.NewPPLNS(cfg, led, src.PayoutScript, log)
	if err != nil {
		return err
	}
	pc.PPLNS = pp.Job
	pc.RecordPayout = func(ctx context.Context, blk *wire.MsgBlock, finder string, rec *ledger.PayoutRecord) error {
		if rec == nil {
			// A job paying its finder (an empty window), or one of an
			// earlier leader whose window this leader does not know.
			r := ledger.PayoutRecord{Hash: chainmath.Hash(blk.BlockHash()), Height: blockHeight(blk), Mode: coordinator.PayoutSolo}
			// Printable: a finder name PostgreSQL cannot store must not
			// make this record, and so the block, fail for ever.
			label := ledger.Printable(ledger.AccountOf(finder))
			for _, o := range blk.Transactions[0].TxOut {
				if o.Value > 0 {
					r.Value += o.Value
					r.Outputs = append(r.Outputs, ledger.PayoutOutput{Script: o.PkScript, Amount: o.Value, Label: label})
				}
			}
			if len(r.Outputs) > 1 {
				log.Warn("found block pays no PPLNS job of this leader: recorded as its coinbase pays, without a window", "hash", r.Hash.String(), "outputs", len(r.Outputs))
			}
			rec = &r
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return led.RecordPayouts(rctx, *rec)
	}
	return nil
}

// blockHeight reads the BIP 34 height from blk's coinbase (-1 if it has
// none).
func blockHeight(blk *wire.MsgBlock) int64 {
	if len(blk.Transactions) == 0 || len(blk.Transactions[0].TxIn) == 0 {
		return -1
	}
	h, err := chainmath.ParseCoinbaseHeight(blk.Transactions[0].TxIn[0].SignatureScript)
	if err != nil {
		return -1
	}
	return h
}

// keepOpen is a source that outlives the term: a node is followed for the
// whole run, so the end of a term must not close it.
type keepOpen struct{ work.Source }

func (keepOpen) Close() error { return nil }
