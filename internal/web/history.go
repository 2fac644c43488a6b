package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// WorkerHistorian is where GET /api/workers/{name} reads the per-minute
// worker history: the coordinator's SQLite store, or a cluster's
// PostgreSQL ledger (pgledger).
type WorkerHistorian interface {
	// WorkerMinutes returns the rollups of worker from the minute
	// holding since on, oldest first.
	WorkerMinutes(ctx context.Context, worker string, since time.Time) ([]ledger.WorkerMinute, error)
	// AccountMinutes returns the rollups of every worker of account
	// summed per minute, from the minute holding since on, oldest first.
	AccountMinutes(ctx context.Context, account string, since time.Time) ([]ledger.WorkerMinute, error)
}

// Scopes of GET /api/workers/{name}.
const (
	// ScopeWorker: the history of one worker name.
	ScopeWorker = "worker"
	// ScopeAccount: the history of every worker of an account (payout
	// address, ledger.AccountOf) summed.
	ScopeAccount = "account"
)

// WorkerHistory is GET /api/workers/{name}.
type WorkerHistory struct {
	Name  string    `json:"name"`
	Scope string    `json:"scope"` // ScopeWorker or ScopeAccount
	Now   time.Time `json:"now"`
	// LastShare is the newest accepted share in the last 7 days.
	LastShare time.Time `json:"last_share,omitzero"`
	// Averages over the complete minutes before Now's minute: 1m, 5m,
	// 1h, 1d and 7d (ledger.AverageSpans).
	Averages []ledger.Average `json:"averages"`
	// Minutes is the span of Series: the last Minutes minutes, Now's
	// (still filling) included.
	Minutes int `json:"minutes"`
	// Series holds the minutes of the span with a share, accepted or
	// rejected, oldest first; a minute left out had none.
	Series []HistoryMinute `json:"series"`
}

// HistoryMinute is one minute of a worker history.
type HistoryMinute struct {
	Minute   time.Time `json:"minute"` // its start, UTC
	Accepted int64     `json:"accepted"`
	Rejected int64     `json:"rejected"`
	Work     float64   `json:"work"`     // the accepted shares' difficulties summed
	Hashrate float64   `json:"hashrate"` // hashes/s: work × 2^32 / 60 s
}

// DefaultHistoryMinutes is the series span of GET /api/workers/{name}
// without ?minutes= (three hours); MaxHistoryMinutes the longest (7 days).
const (
	DefaultHistoryMinutes = 3 * 60
	MaxHistoryMinutes     = 7 * 24 * 60
)

// WorkerHistoryHandler serves GET /api/workers/{name...} from src. A
// name with a '.' is one worker; a name without one is an account (the
// payout address: every worker "name" and "name.*" summed), or with
// ?scope=worker the worker of exactly that name. ?minutes=N (1 to
// MaxHistoryMinutes, default DefaultHistoryMinutes) is the span of the
// per-minute series. A bad name or parameter is a 400 naming the value,
// a name without a share in 7 days a 404, a failed read a 503 (logged to
// log).
func WorkerHistoryHandler(src WorkerHistorian, log *slog.Logger) http.Handler {
	return &historyHandler{src: src, log: log, now: time.Now}
}

type historyHandler struct {
	src WorkerHistorian
	log *slog.Logger
	now func() time.Time
}

func (h *historyHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name := req.PathValue("name")
	if err := ledger.CheckWorker(name); err != nil {
		http.Error(w, "GET /api/workers/{name}: "+err.Error(), http.StatusBadRequest)
		return
	}
	q := req.URL.Query()
	minutes := DefaultHistoryMinutes
	if s := q.Get("minutes"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxHistoryMinutes {
			http.Error(w, fmt.Sprintf("minutes: %q is not a whole number of minutes from 1 to %d", s, MaxHistoryMinutes), http.StatusBadRequest)
			return
		}
		minutes = v
	}
	scope := ScopeWorker
	if ledger.AccountOf(name) == name {
		scope = ScopeAccount
	}
	switch s := q.Get("scope"); s {
	case "":
	case ScopeWorker, ScopeAccount:
		if s == ScopeAccount && ledger.AccountOf(name) != name {
			http.Error(w, fmt.Sprintf("scope: %q is a worker name, not an account (an account has no '.')", name), http.StatusBadRequest)
			return
		}
		scope = s
	default:
		http.Error(w, fmt.Sprintf("scope: %q: want worker or account", s), http.StatusBadRequest)
		return
	}
	now := h.now()
	since := ledger.Minute(now).Add(-time.Duration(ledger.AverageSpans[len(ledger.AverageSpans)-1].Minutes) * time.Minute)
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	var (
		rows []ledger.WorkerMinute
		err  error
	)
	if scope == ScopeAccount {
		rows, err = h.src.AccountMinutes(ctx, name, since)
	} else {
		rows, err = h.src.WorkerMinutes(ctx, name, since)
	}
	if err != nil {
		h.log.Warn("GET /api/workers/{name}", "name", name, "err", err)
		http.Error(w, "GET /api/workers/"+name+": "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if len(rows) == 0 {
		http.Error(w, fmt.Sprintf("GET /api/workers/{name}: %s %q has no share in the last 7 days", scope, name), http.StatusNotFound)
		return
	}
	writeJSON(w, BuildWorkerHistory(name, scope, rows, now, minutes))
}

// BuildWorkerHistory is GET /api/workers/{name}'s answer from the rows
// of one worker or account (oldest first) at now, with a series of the
// last minutes minutes.
func BuildWorkerHistory(name, scope string, rows []ledger.WorkerMinute, now time.Time, minutes int) WorkerHistory {
	out := WorkerHistory{Name: name, Scope: scope, Now: now.UTC(), Minutes: minutes,
		Averages: ledger.Averages(rows, now), Series: []HistoryMinute{}}
	from := ledger.Minute(now).Add(-time.Duration(minutes-1) * time.Minute)
	for _, r := range rows {
		if r.Last.After(out.LastShare) {
			out.LastShare = r.Last.UTC()
		}
		if r.Minute.Before(from) {
			continue
		}
		out.Series = append(out.Series, HistoryMinute{Minute: r.Minute, Accepted: r.Accepted, Rejected: r.Rejected,
			Work: r.Work, Hashrate: ledger.Hashrate(r.Work, time.Minute)})
	}
	return out
}
