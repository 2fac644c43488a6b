package main

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/powcoord/powcoord/internal/cluster/clusterapi"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// clusterHandler is the HTTP side of a cluster coordinator (--http):
// internal/web's API over the cluster's readers — GET /api/status (rd),
// /api/blocks (the embedded chain in CHAIN), /api/workers, /api/best and
// /api/blocks/{hash}/shares (the PostgreSQL ledger led, nil without
// --postgres; scriptOf maps a payout label to its script as the payout
// plan does) — the cluster-only GET /api/cluster, /metrics and the
// dashboard at /.
func clusterHandler(rd *clusterapi.Reader, led *pgledger.Ledger, scriptOf func(string) ([]byte, error), reg *prometheus.Registry, log *slog.Logger) http.Handler {
	api := web.API{Status: rd,
		NoBlocks: "this cluster follows a node (--node) and stores no chain of its own; ask the node for its blocks",
		NoLedger: "this coordinator has no ledger; start it with --postgres URL (the database the ledger writers fill) to read workers, best shares and payout windows from it",
		NoMiners: "a cluster coordinator keeps no found block's state; ask GET /api/blocks/{hash}/shares for what a block paid",
	}
	if rd.Chain != nil {
		api.Blocks = rd.Chain
	}
	if led != nil {
		api.Workers = led
		api.Best = web.LedgerBest{Ledger: led, RoundStart: rd.RoundStart}
		api.Window = &web.WindowSource{Ledger: led, ScriptOf: scriptOf}
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
