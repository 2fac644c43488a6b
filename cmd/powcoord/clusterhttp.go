package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/cluster/leader"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/powcoord/powcoord/internal/work"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// clusterHTTP is the HTTP side of a cluster coordinator (--http): the
// cluster's GET /api/status, /api/cluster, /api/blocks, /api/workers and
// /api/best (clusterworkers.go), /metrics and the dashboard at /.
type clusterHTTP struct {
	r       *leader.Runner
	members jetstream.KeyValue
	// chain is the embedded chain in CHAIN (nil with --node); node the
	// --node source, followed by every coordinator, active or standby
	// (nil on the embedded chain).
	chain *chainstore.View
	node  work.Source
	// ledger is the cluster's PostgreSQL ledger (--postgres), for GET
	// /api/workers and /api/best; nil without it.
	ledger *pgledger.Ledger
	// lastJob reads the cluster's current job (jobs.Last), for a
	// standby's next-block difficulty.
	lastJob func(context.Context) (*jobs.Job, error)
	started time.Time
	log     *slog.Logger
}

func (h *clusterHTTP) handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, req *http.Request) {
		writeClusterJSON(w, h.cluster(req.Context()))
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, req *http.Request) {
		writeClusterJSON(w, h.status(req.Context()))
	})
	if h.chain != nil {
		mux.Handle("GET /api/blocks", web.BlocksHandler(h.chain, h.log))
	} else {
		mux.HandleFunc("GET /api/blocks", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "GET /api/blocks: this cluster follows a node (--node) and stores no chain of its own; ask the node for its blocks", http.StatusNotFound)
		})
	}
	if h.ledger != nil {
		mux.Handle("GET /api/workers", web.WorkersHandler(h.ledger, h.log))
		mux.Handle("GET /api/workers/{name...}", web.WorkerHistoryHandler(h.ledger, h.log))
	} else {
		mux.HandleFunc("GET /api/workers", func(w http.ResponseWriter, req *http.Request) { h.noLedger(w, req) })
	}
	mux.HandleFunc("GET /api/best", h.best)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(clusterPage)
	})
	return mux
}

func writeClusterJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// cluster is GET /api/cluster: this coordinator's role, its source while
// active, and every live member from the heartbeats.
func (h *clusterHTTP) cluster(ctx context.Context) clusterStatus {
	st := clusterStatus{Coordinator: h.r.State()}
	if src := h.r.Source(); src != nil {
		s := src.Status()
		st.Source = &s
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	all, err := members.List(lctx, h.members)
	cancel()
	if err != nil {
		st.MembersError = err.Error()
	}
	st.Coordinators, st.Frontends, st.Ledgers = []members.Member{}, []members.Member{}, []members.Member{}
	for _, m := range all {
		switch m.Role {
		case members.RoleFrontend:
			st.Frontends = append(st.Frontends, m)
		case members.RoleLedger:
			st.Ledgers = append(st.Ledgers, m)
		case members.RoleCoordinator:
			st.Coordinators = append(st.Coordinators, m)
		}
	}
	return st
}

// clusterStatus is GET /api/cluster of a cluster coordinator.
type clusterStatus struct {
	Coordinator leader.State `json:"coordinator"`
	Source      *work.Status `json:"source,omitempty"` // while active
	// The live members of the cluster, from their heartbeats: every
	// coordinator (state active or standby), front-end and ledger writer.
	Coordinators []members.Member `json:"coordinators"`
	Frontends    []members.Member `json:"frontends"`
	Ledgers      []members.Member `json:"ledgers"`
	MembersError string           `json:"members_error,omitempty"`
}

// clusterAPIStatus is GET /api/status of a cluster coordinator: the
// fields of a single coordinator's /api/status that describe the whole
// cluster, followed by the fields of /api/cluster (clusterStatus).
type clusterAPIStatus struct {
	Time   time.Time `json:"time"`
	Uptime float64   `json:"uptime_seconds"` // of this coordinator
	Role   string    `json:"role"`           // this coordinator's: active or standby
	// Active is the heartbeat of the active coordinator (its id and
	// http address); null while none is listed.
	Active *members.Member `json:"active"`

	// The block being mined: Height is the tip's + 1, PrevHash the
	// tip's hash. TipFrom says where the tip was read: "source" (the
	// active coordinator's embedded chain or node), "node" (a standby's
	// --node) or "chain" (a standby's read of the CHAIN stream).
	Height    int64  `json:"height"`
	PrevHash  string `json:"prev_hash"`
	TipHeight int64  `json:"tip_height"` // -1 while the chain has no block
	TipHash   string `json:"tip_hash"`
	TipFrom   string `json:"tip_from"`
	// The next block's compact target and difficulty, from the source
	// this coordinator follows; null on a standby of the embedded chain
	// (ask the active one).
	Bits       *string  `json:"bits"`
	Difficulty *float64 `json:"difficulty"`
	ChainError string   `json:"chain_error,omitempty"`

	// Sums over the live front-ends' heartbeats.
	Sessions        int     `json:"sessions"`
	SharesPerSecond float64 `json:"shares_per_second"`
	Accepted        uint64  `json:"accepted"`
	// LedgerLag is the largest lag (shares not yet in the ledger) any
	// live ledger writer reports; null when none does.
	LedgerLag *uint64 `json:"ledger_lag_messages"`

	clusterStatus
}

// status is GET /api/status.
func (h *clusterHTTP) status(ctx context.Context) clusterAPIStatus {
	now := time.Now().UTC()
	st := clusterAPIStatus{Time: now, Uptime: now.Sub(h.started).Seconds(), clusterStatus: h.cluster(ctx), TipHeight: -1}
	st.Role = st.Coordinator.Role
	for i, m := range st.Coordinators {
		if m.State == "active" {
			st.Active = &st.Coordinators[i]
			break
		}
	}
	for _, f := range st.Frontends {
		st.Sessions += f.Sessions
		st.SharesPerSecond += f.SharesPerSecond
		st.Accepted += f.Accepted
	}
	for _, l := range st.Ledgers {
		if l.LagMessages != nil && (st.LedgerLag == nil || *l.LagMessages > *st.LedgerLag) {
			v := *l.LagMessages
			st.LedgerLag = &v
		}
	}
	src, from := h.r.Source(), "source"
	if src == nil && h.node != nil {
		src, from = h.node, "node"
	}
	if src != nil {
		t := src.Current()
		bits := fmt.Sprintf("%08x", t.Bits)
		d, _ := chainmath.CompactToDifficulty(t.Bits)
		st.Height, st.PrevHash, st.TipHeight, st.TipHash, st.TipFrom = t.Height, t.PrevHash.String(), t.Height-1, t.PrevHash.String(), from
		st.Bits, st.Difficulty = &bits, &d
		return st
	}
	st.TipFrom = "chain"
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tip, ok, err := h.chain.Tip(cctx)
	if err != nil {
		st.ChainError = err.Error()
	}
	if ok {
		st.TipHeight, st.TipHash = tip.Height, tip.Hash.String()
		st.Height, st.PrevHash = tip.Height+1, st.TipHash
		// The next block's bits: the active coordinator's newest job,
		// when it builds on the tip read here.
		if h.lastJob != nil {
			if j, err := h.lastJob(cctx); err == nil && j.Template.PrevHash == tip.Hash {
				bits := fmt.Sprintf("%08x", j.Template.Bits)
				d, _ := chainmath.CompactToDifficulty(j.Template.Bits)
				st.Bits, st.Difficulty = &bits, &d
			}
		}
	}
	return st
}
