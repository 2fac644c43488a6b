package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
)

// The cluster's per-worker view, read from the PostgreSQL ledger the
// ledger writers fill (a cluster coordinator's --postgres): every
// front-end's shares, as stored. GET /api/workers is internal/web's
// WorkersHandler over the ledger. Without --postgres both answer 404
// saying so.

func (h *clusterHTTP) noLedger(w http.ResponseWriter, req *http.Request) bool {
	if h.ledger != nil {
		return false
	}
	http.Error(w, req.Method+" "+req.URL.Path+": this coordinator has no ledger; start it with --postgres URL (the database the ledger writers fill) to read workers and best shares from it", http.StatusNotFound)
	return true
}

// best is GET /api/best of a cluster coordinator: the single
// coordinator's shape, with the spans the ledger knows. all_time is
// every share stored; since_block the shares since the tip of the
// embedded chain was found (null following a node, whose blocks the
// cluster does not time); session is always null here (each front-end's
// own /api/best has it).
func (h *clusterHTTP) best(w http.ResponseWriter, req *http.Request) {
	if h.noLedger(w, req) {
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	all, err := h.ledger.BestShares(ctx, time.Time{})
	if err != nil {
		h.log.Warn("GET /api/best", "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var round []pgledger.BestShare
	haveRound := false
	if h.chain != nil {
		tip, ok, err := h.chain.Tip(ctx)
		if err == nil && ok {
			if round, err = h.ledger.BestShares(ctx, tip.FoundAt); err != nil {
				h.log.Warn("GET /api/best", "err", err)
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			haveRound = true
		}
	}
	writeClusterJSON(w, bestFromLedger(all, round, haveRound))
}

// bestFromLedger groups the ledger's per-worker bests by worker and by
// address (ledger.AccountOf: the worker name's part before the first '.'; of equal
// difficulties the earliest wins), each list sorted by name.
func bestFromLedger(all, round []pgledger.BestShare, haveRound bool) coordinator.BestShares {
	type spans struct{ round, all *coordinator.BestRecord }
	workers, addrs := map[string]*spans{}, map[string]*spans{}
	better := func(cur *coordinator.BestRecord, s pgledger.BestShare) *coordinator.BestRecord {
		if cur != nil && (cur.Difficulty > s.Difficulty || cur.Difficulty == s.Difficulty && !s.Time.Before(cur.Time)) {
			return cur
		}
		return &coordinator.BestRecord{Difficulty: s.Difficulty, Hash: s.Hash.String(), Time: s.Time}
	}
	get := func(m map[string]*spans, k string) *spans {
		if m[k] == nil {
			m[k] = &spans{}
		}
		return m[k]
	}
	for _, s := range all {
		wk, ad := get(workers, s.Worker), get(addrs, ledger.AccountOf(s.Worker))
		wk.all, ad.all = better(wk.all, s), better(ad.all, s)
	}
	for _, s := range round {
		wk, ad := get(workers, s.Worker), get(addrs, ledger.AccountOf(s.Worker))
		wk.round, ad.round = better(wk.round, s), better(ad.round, s)
	}
	list := func(m map[string]*spans) []coordinator.BestOf {
		out := make([]coordinator.BestOf, 0, len(m))
		for name, sp := range m {
			b := coordinator.BestOf{Name: name, AllTime: sp.all}
			if haveRound {
				b.SinceBlock = sp.round
			}
			out = append(out, b)
		}
		slices.SortFunc(out, func(a, b coordinator.BestOf) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	return coordinator.BestShares{Workers: list(workers), Addresses: list(addrs)}
}
