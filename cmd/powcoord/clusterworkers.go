package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
)

// The cluster's per-worker view, read from the PostgreSQL ledger the
// ledger writers fill (a cluster coordinator's --postgres): every
// front-end's shares, as stored. Without --postgres both answer 404
// saying so.

// clusterWorkers is GET /api/workers of a cluster coordinator.
type clusterWorkers struct {
	Minutes int             `json:"minutes"` // the span: the last Minutes minutes
	Since   time.Time       `json:"since"`
	Workers []clusterWorker `json:"workers"`
}

// clusterWorker is one worker's shares stored in the span.
type clusterWorker struct {
	Worker    string    `json:"worker"`
	Shares    int64     `json:"shares"`
	Work      float64   `json:"work"`     // sum of the shares' difficulties
	Hashrate  float64   `json:"hashrate"` // hashes/s: work × 2^32 over the span
	LastShare time.Time `json:"last_share"`
}

// maxWorkerMinutes is the longest span GET /api/workers sums (a day).
const maxWorkerMinutes = 24 * 60

func (h *clusterHTTP) noLedger(w http.ResponseWriter, req *http.Request) bool {
	if h.ledger != nil {
		return false
	}
	http.Error(w, req.Method+" "+req.URL.Path+": this coordinator has no ledger; start it with --postgres URL (the database the ledger writers fill) to read workers and best shares from it", http.StatusNotFound)
	return true
}

func (h *clusterHTTP) workers(w http.ResponseWriter, req *http.Request) {
	if h.noLedger(w, req) {
		return
	}
	minutes := 10
	if s := req.URL.Query().Get("minutes"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxWorkerMinutes {
			http.Error(w, fmt.Sprintf("minutes: %q is not a whole number of minutes from 1 to %d", s, maxWorkerMinutes), http.StatusBadRequest)
			return
		}
		minutes = v
	}
	// One query a span per workersTTL, whoever asks: a span of minutes
	// reads every share stored in it (at 30,000 shares/s, 18 million
	// rows for 10 minutes), so every open dashboard must not repeat it.
	h.workersMu.Lock()
	defer h.workersMu.Unlock()
	if c, ok := h.workersCache[minutes]; ok && time.Since(c.at) < workersTTL {
		writeClusterJSON(w, c.out)
		return
	}
	span := time.Duration(minutes) * time.Minute
	now := time.Now()
	since := now.Add(-span)
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	list, err := h.ledger.WorkerStats(ctx, since)
	if err != nil {
		h.log.Warn("GET /api/workers", "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	out := clusterWorkers{Minutes: minutes, Since: since, Workers: make([]clusterWorker, 0, len(list))}
	for _, s := range list {
		out.Workers = append(out.Workers, clusterWorker{Worker: s.Worker, Shares: s.Shares, Work: s.Work,
			Hashrate: s.Work * math.Exp2(32) / span.Seconds(), LastShare: s.Last})
	}
	if h.workersCache == nil {
		h.workersCache = map[int]cachedWorkers{}
	}
	h.workersCache[minutes] = cachedWorkers{at: now, out: out}
	writeClusterJSON(w, out)
}

// workersTTL is how long a GET /api/workers answer is reused.
const workersTTL = 5 * time.Second

type cachedWorkers struct {
	at  time.Time
	out clusterWorkers
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
