package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/ledger"
)

// WorkerStatser is where GET /api/workers reads a span of the ledger:
// the coordinator's SQLite store, or a cluster's PostgreSQL ledger
// (pgledger).
type WorkerStatser interface {
	// WorkerStats returns, sorted by worker, every worker with a share
	// at or after since.
	WorkerStats(ctx context.Context, since time.Time) ([]ledger.WorkerStat, error)
}

// Workers is GET /api/workers: every worker with a share stored in the
// last Minutes minutes.
type Workers struct {
	Minutes int       `json:"minutes"` // the span asked for: the last Minutes minutes
	Since   time.Time `json:"since"`   // the span's start: now − Minutes, down to its minute
	// Seconds is the span's length from Since to the answer's time: the
	// Minutes minutes and the part of a minute Since was moved back.
	Seconds float64      `json:"seconds"`
	Workers []WorkerSpan `json:"workers"`
}

// WorkerSpan is one worker's shares stored in the span.
type WorkerSpan struct {
	Worker    string    `json:"worker"`
	Shares    int64     `json:"shares"`
	Work      float64   `json:"work"`     // sum of the shares' difficulties
	Hashrate  float64   `json:"hashrate"` // hashes/s: work × 2^32 over Seconds
	LastShare time.Time `json:"last_share"`
}

// MaxWorkerMinutes is the longest span GET /api/workers sums (a day).
const MaxWorkerMinutes = 24 * 60

// workersTTL is how long a GET /api/workers answer is reused.
const workersTTL = 5 * time.Second

// WorkersHandler serves GET /api/workers?minutes=N from src: the last N
// minutes (default 10, 1 to MaxWorkerMinutes; another value is a 400
// naming it), sorted by worker. The span starts on a minute boundary
// (now − N minutes, moved back to its minute), so a ledger sums it from
// its per-minute worker history instead of the shares; each span's
// answer is computed at most once per 5 s, whoever asks; a failed read
// is a 503 (logged to log).
func WorkersHandler(src WorkerStatser, log *slog.Logger) http.Handler {
	return &workersHandler{src: src, log: log, now: time.Now, cache: map[int]cachedWorkers{}}
}

type workersHandler struct {
	src WorkerStatser
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex // held across a read: one read per span at a time
	cache map[int]cachedWorkers
}

type cachedWorkers struct {
	at  time.Time
	out Workers
}

func (h *workersHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	minutes := 10
	if s := req.URL.Query().Get("minutes"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxWorkerMinutes {
			http.Error(w, fmt.Sprintf("minutes: %q is not a whole number of minutes from 1 to %d", s, MaxWorkerMinutes), http.StatusBadRequest)
			return
		}
		minutes = v
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if c, ok := h.cache[minutes]; ok && now.Sub(c.at) < workersTTL {
		writeJSON(w, c.out)
		return
	}
	since := ledger.Minute(now.Add(-time.Duration(minutes) * time.Minute))
	span := now.Sub(since)
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	list, err := h.src.WorkerStats(ctx, since)
	if err != nil {
		h.log.Warn("GET /api/workers", "minutes", minutes, "err", err)
		http.Error(w, "GET /api/workers: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	out := Workers{Minutes: minutes, Since: since, Seconds: span.Seconds(), Workers: make([]WorkerSpan, 0, len(list))}
	for _, s := range list {
		out.Workers = append(out.Workers, WorkerSpan{Worker: s.Worker, Shares: s.Shares, Work: s.Work,
			Hashrate: ledger.Hashrate(s.Work, span), LastShare: s.Last})
	}
	h.cache[minutes] = cachedWorkers{at: now, out: out}
	writeJSON(w, out)
}
