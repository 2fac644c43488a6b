package web

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
)

// API is the JSON API of a coordinator, read through small interfaces:
// a single coordinator (New) and a cluster coordinator (cmd/powcoord
// wires the cluster's readers) fill it alike, so both answer the same
// paths with the same shapes and the same errors. A nil reader's routes
// answer 404 with NoBlocks or NoLedger saying why it is missing.
type API struct {
	Status  StatusReader    // GET /api/status
	Blocks  BlockReader     // GET /api/blocks
	Workers WorkerStatser   // GET /api/workers
	History WorkerHistorian // GET /api/workers/{name}
	Best    BestReader      // GET /api/best
	Miners  MinerReader     // GET /api/miners, /api/miners/{address}
	Window  *WindowSource   // GET /api/blocks/{hash}/shares
	// NoBlocks says why Blocks is nil; NoLedger why Workers, Best,
	// Miners or Window is; NoMiners, when set, why Miners is.
	NoBlocks string
	NoLedger string
	NoMiners string
}

// StatusReader is what GET /api/status reports: a coordinator's state
// with one page of its workers (offset from 0, at most limit, as
// coordinator.StatusPage), or a cluster's.
type StatusReader interface {
	Status(ctx context.Context, offset, limit int) (any, error)
}

// BestReader is what GET /api/best reports: the best shares per worker
// and per address.
type BestReader interface {
	BestShares(ctx context.Context) (coordinator.BestShares, error)
}

// MinerReader is what GET /api/miners and /api/miners/{address} report:
// *coordinator.Coordinator implements it.
type MinerReader interface {
	// Miner is one payout address's account; an error is the caller's
	// (an address that is none), answered 400.
	Miner(ctx context.Context, addr string) (*coordinator.MinerReport, error)
	// MinersWindow lists every payout address in the current window.
	MinersWindow(ctx context.Context) ([]coordinator.MinerReport, error)
}

// Register adds the API's routes to mux; log gets failed reads.
func (a API) Register(mux *http.ServeMux, log *slog.Logger) {
	missing := func(why string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, r.Method+" "+r.URL.Path+": "+why, http.StatusNotFound)
		}
	}
	if a.Status != nil {
		mux.Handle("GET /api/status", statusHandler(a.Status, log))
	}
	if a.Blocks != nil {
		mux.Handle("GET /api/blocks", BlocksHandler(a.Blocks, log))
	} else {
		mux.Handle("GET /api/blocks", missing(a.NoBlocks))
	}
	if a.Workers != nil {
		mux.Handle("GET /api/workers", WorkersHandler(a.Workers, log))
	} else {
		mux.Handle("GET /api/workers", missing(a.NoLedger))
	}
	if a.History != nil {
		mux.Handle("GET /api/workers/{name...}", WorkerHistoryHandler(a.History, log))
	} else {
		mux.Handle("GET /api/workers/{name...}", missing(a.NoLedger))
	}
	if a.Best != nil {
		mux.Handle("GET /api/best", bestHandler(a.Best, log))
	} else {
		mux.Handle("GET /api/best", missing(a.NoLedger))
	}
	if a.Miners != nil {
		mux.Handle("GET /api/miners", minersHandler(a.Miners, log))
		mux.Handle("GET /api/miners/{address}", minerHandler(a.Miners))
	} else {
		why := cmp.Or(a.NoMiners, a.NoLedger)
		mux.Handle("GET /api/miners", missing(why))
		mux.Handle("GET /api/miners/{address}", missing(why))
	}
	if a.Window != nil {
		mux.Handle("GET /api/blocks/{hash}/shares", WindowHandler(*a.Window, log))
	} else {
		mux.Handle("GET /api/blocks/{hash}/shares", missing(a.NoLedger))
	}
}

// statusHandler serves GET /api/status: ?offset=N from the Nth worker (0)
// and ?limit=N of them (coordinator.DefaultStatusWorkers, at most
// coordinator.MaxStatusWorkers). A bad parameter is a 400 naming it and
// its value; a failed read a 503.
func statusHandler(src StatusReader, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		offset, err := intParam(q.Get("offset"), 0)
		if err != nil {
			http.Error(w, "offset: "+err.Error(), http.StatusBadRequest)
			return
		}
		limit, err := intParam(q.Get("limit"), coordinator.DefaultStatusWorkers)
		if err == nil && (limit < 1 || limit > coordinator.MaxStatusWorkers) {
			err = fmt.Errorf("%q is not a number of workers from 1 to %d", q.Get("limit"), coordinator.MaxStatusWorkers)
		}
		if err != nil {
			http.Error(w, "limit: "+err.Error(), http.StatusBadRequest)
			return
		}
		st, err := src.Status(r.Context(), int(min(offset, math.MaxInt32)), int(limit))
		if err != nil {
			log.Warn("GET /api/status", "err", err)
			http.Error(w, "GET /api/status: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, st)
	})
}

// bestHandler serves GET /api/best (coordinator.BestShares); a failed
// read is a 503.
func bestHandler(src BestReader, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		b, err := src.BestShares(ctx)
		if err != nil {
			log.Warn("GET /api/best", "err", err)
			http.Error(w, "GET /api/best: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, b)
	})
}

// minerHandler serves GET /api/miners/{address}: the payout address's
// work in the current window, its estimated part of the next block and
// its payouts so far (docs/payouts.md); an address that is none is a 400
// naming it.
func minerHandler(src MinerReader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep, err := src.Miner(r.Context(), r.PathValue("address"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, rep)
	})
}

// minersHandler serves GET /api/miners: every payout address in the
// current window, most work first; a failed read is a 500.
func minersHandler(src MinerReader, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := src.MinersWindow(r.Context())
		if err != nil {
			log.Error("reading the payout window", "err", err)
			http.Error(w, "reading the payout window failed", http.StatusInternalServerError)
			return
		}
		if list == nil {
			list = []coordinator.MinerReport{}
		}
		writeJSON(w, list)
	})
}

// coordStatus is a single coordinator's StatusReader.
type coordStatus struct{ c *coordinator.Coordinator }

func (s coordStatus) Status(_ context.Context, offset, limit int) (any, error) {
	return s.c.StatusPage(offset, limit), nil
}

// coordBest is a single coordinator's BestReader.
type coordBest struct{ c *coordinator.Coordinator }

func (b coordBest) BestShares(context.Context) (coordinator.BestShares, error) {
	return b.c.BestShares(), nil
}

// BestSharer is a ledger that keeps each worker's best share: a
// cluster's PostgreSQL ledger (pgledger).
type BestSharer interface {
	// BestShares returns each worker's best share: of all time when
	// since is zero, otherwise among the shares stored at or after it.
	BestShares(ctx context.Context, since time.Time) ([]ledger.BestShare, error)
}

// LedgerBest is GET /api/best read from a ledger (a cluster coordinator
// with --postgres): all_time is every share stored; since_block the
// shares since the tip was found, when RoundStart knows it (null
// otherwise, as following a node whose blocks the cluster does not time);
// session is always null (each front-end's own /api/best has it).
type LedgerBest struct {
	Ledger BestSharer
	// RoundStart returns when the current tip was found; ok false when
	// unknown. May be nil.
	RoundStart func(ctx context.Context) (time.Time, bool, error)
}

// BestShares implements BestReader.
func (b LedgerBest) BestShares(ctx context.Context) (coordinator.BestShares, error) {
	all, err := b.Ledger.BestShares(ctx, time.Time{})
	if err != nil {
		return coordinator.BestShares{}, err
	}
	var round []ledger.BestShare
	haveRound := false
	if b.RoundStart != nil {
		if since, ok, err := b.RoundStart(ctx); err == nil && ok {
			if round, err = b.Ledger.BestShares(ctx, since); err != nil {
				return coordinator.BestShares{}, err
			}
			haveRound = true
		}
	}
	return groupBest(all, round, haveRound), nil
}

// groupBest groups the ledger's per-worker bests by worker and by
// address (ledger.AccountOf; of equal difficulties the earliest wins),
// each list sorted by name.
func groupBest(all, round []ledger.BestShare, haveRound bool) coordinator.BestShares {
	type spans struct{ round, all *coordinator.BestRecord }
	workers, addrs := map[string]*spans{}, map[string]*spans{}
	better := func(cur *coordinator.BestRecord, s ledger.BestShare) *coordinator.BestRecord {
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
