package coordinator

import (
	"math"

	"github.com/powcoord/powcoord/internal/chainmath"
	"sort"
	"sync"
	"time"
)

// hashrateTau is the time constant of the per-worker hashrate estimate.
const hashrateTau = 60 * time.Second

// WorkerStats is the accounting of one worker name.
type WorkerStats struct {
	Name           string            `json:"name"`
	Sessions       int               `json:"sessions"`
	ConnectedSince time.Time         `json:"connected_since"`
	Difficulty     float64           `json:"difficulty"`
	Accepted       uint64            `json:"accepted"`
	Rejected       map[string]uint64 `json:"rejected"`
	RejectedTotal  uint64            `json:"rejected_total"`
	Work           float64           `json:"work"` // sum of accepted share difficulties
	Hashrate       float64           `json:"hashrate"`
	LastShare      time.Time         `json:"last_share"`
	Blocks         int               `json:"blocks"`
	// RejectCloses counts the worker's connections closed by the reject
	// rule (mostly rejected shares); RejectClosedAt is the last one.
	RejectCloses   uint64    `json:"reject_closes"`
	RejectClosedAt time.Time `json:"reject_closed_at,omitzero"`

	// BestSession, BestSinceBlock and BestAllTime are the highest share
	// difficulties of the worker: since its sessions began, since the
	// pool's last block, ever (0: none yet; see best.go).
	BestSession    float64 `json:"best_session"`
	BestSinceBlock float64 `json:"best_since_block"`
	BestAllTime    float64 `json:"best_all_time"`

	rateAt time.Time
	best   sessionBest
}

type accounting struct {
	mu      sync.Mutex
	workers map[string]*WorkerStats
}

func newAccounting() *accounting { return &accounting{workers: make(map[string]*WorkerStats)} }

func (a *accounting) get(name string) *WorkerStats {
	w := a.workers[name]
	if w == nil {
		w = &WorkerStats{Name: name, Rejected: map[string]uint64{}}
		a.workers[name] = w
	}
	return w
}

func (a *accounting) connected(name string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.get(name)
	if w.Sessions == 0 {
		w.ConnectedSince = now
		w.best, w.BestSession = sessionBest{}, 0
	}
	w.Sessions++
}

func (a *accounting) disconnected(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.get(name).Sessions--
}

func (a *accounting) setDifficulty(name string, d float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.get(name).Difficulty = d
}

func (a *accounting) rejected(name, reason string) {
	if name == "" {
		name = "(unauthorized)"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.get(name)
	w.Rejected[reason]++
	w.RejectedTotal++
}

// accepted counts a share of difficulty d: d·2^32 hashes of expected
// work, folded into an exponentially decaying hashrate estimate.
func (a *accounting) accepted(name string, d, achieved float64, hash chainmath.Hash, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.get(name)
	w.best.note(achieved, hash, now)
	w.BestSession = w.best.rec.Difficulty
	w.Accepted++
	w.Work += d
	w.LastShare = now
	decay(w, now)
	w.Hashrate += d * 4294967296 / hashrateTau.Seconds()
}

func decay(w *WorkerStats, now time.Time) {
	if !w.rateAt.IsZero() {
		w.Hashrate *= math.Exp(-now.Sub(w.rateAt).Seconds() / hashrateTau.Seconds())
	}
	w.rateAt = now
}

// closedForRejects marks a connection of worker name closed by the
// reject rule.
func (a *accounting) closedForRejects(name string, now time.Time) {
	if name == "" {
		name = "(unauthorized)"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.get(name)
	w.RejectCloses++
	w.RejectClosedAt = now
}

func (a *accounting) block(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.get(name).Blocks++
}

// sessionBests returns every worker's best share of its current
// sessions.
func (a *accounting) sessionBests() map[string]BestRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]BestRecord, len(a.workers))
	for name, w := range a.workers {
		if w.best.set {
			out[name] = w.best.rec
		}
	}
	return out
}

// snapshot copies every worker's stats, sorted by name.
func (a *accounting) snapshot(now time.Time) []WorkerStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]WorkerStats, 0, len(a.workers))
	for _, w := range a.workers {
		decay(w, now)
		c := *w
		c.Rejected = make(map[string]uint64, len(w.Rejected))
		for k, v := range w.Rejected {
			c.Rejected[k] = v
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
