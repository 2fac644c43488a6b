package main

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/powcoord/powcoord/internal/cluster/clusterapi"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/payout"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// clusterHandler is the HTTP side of a cluster coordinator (--http):
// internal/web's API over the cluster's readers — GET /api/status (rd),
// /api/blocks (the embedded chain in CHAIN), /api/workers, /api/best,
// /api/miners and /api/blocks/{hash}/shares (the PostgreSQL ledger led
// through the accounts acct, whose plan is over led; both nil without
// --postgres) — the cluster-only GET /api/cluster, /metrics and the
// dashboard at /.
func clusterHandler(rd *clusterapi.Reader, led *pgledger.Ledger, acct *payout.Accounts, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	api := web.API{Status: rd,
		NoBlocks: "this cluster follows a node (--node) and stores no chain of its own; ask the node for its blocks",
		NoLedger: "this coordinator has no ledger; start it with --postgres URL (the database the ledger writers fill) to read workers, best shares, miners and payout windows from it",
	}
	if rd.Chain != nil {
		api.Blocks = rd.Chain
	}
	if led != nil && acct != nil {
		api.Workers = led
		api.History = led
		api.Best = web.LedgerBest{Ledger: led, RoundStart: rd.RoundStart}
		api.Miners = acct
		api.Window = &web.WindowSource{Ledger: led, ScriptOf: acct.Plan.ScriptOf}
	}
	mux := http.NewServeMux()
	api.Register(mux, log)
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rd.Cluster(req.Context()))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(clusterPage)
	})
	return mux
}
