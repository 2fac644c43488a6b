package coordinator

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"sort"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

// Limits of the per-worker accounting (Config.WorkerRetention,
// Config.MaxWorkers) and of a status page (Coordinator.StatusPage).
const (
	// DefaultWorkerRetention keeps a sessionless worker that had shares
	// for a day after its last one: long enough that a rig rebooted
	// overnight or a pool switch for a day finds its counters, short
	// enough that a day's stream of throwaway names is forgotten.
	DefaultWorkerRetention = 24 * time.Hour
	// DefaultMaxWorkers caps the names kept: about 40 MB of accounting at
	// most (a name with its counters is a few hundred bytes, names at most
	// ledger.MaxWorkerLen), and far more workers than one coordinator
	// serves.
	DefaultMaxWorkers = 100_000
	// DefaultStatusWorkers is the workers one status page lists when the
	// caller does not say (Status, GET /api/status without ?limit=).
	DefaultStatusWorkers = 1000
	// MaxStatusWorkers is the most workers one status page lists.
	MaxStatusWorkers = 10_000
)

// sweepEvery is how often the accounting looks for workers past the
// retention, at most.
const sweepEvery = time.Minute

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

	// Remote is the address (ip:port) the worker's latest session came
	// from: behind a trusted PROXY-protocol proxy, the miner's own.
	Remote string `json:"remote"`

	// BestSession, BestSinceBlock and BestAllTime are the highest share
	// difficulties of the worker: since its sessions began, since the
	// pool's last block, ever (0: none yet; see best.go).
	BestSession    float64 `json:"best_session"`
	BestSinceBlock float64 `json:"best_since_block"`
	BestAllTime    float64 `json:"best_all_time"`

	rateAt time.Time
	best   sessionBest
	// active is the worker's last connect, disconnect or share; shareAt
	// its last share, accepted or rejected (zero: none yet).
	active, shareAt time.Time
}

// accounting is the per-worker table. It forgets a worker with no
// session and no share within the retention (one that never had a share
// as soon as its last session ends), and keeps at most max names: past
// that, the sessionless workers least recently active go first, down to
// nine tenths of max. Workers with a session are never forgotten.
type accounting struct {
	mu        sync.Mutex
	workers   map[string]*WorkerStats
	now       func() time.Time
	retention time.Duration
	max       int
	swept     time.Time
	evicted   uint64
	// onReject, when set, is told of every refused share of a named
	// worker (Config.Store's RejectCounter), outside mu.
	onReject func(worker string, at time.Time)
}

func newAccounting(now func() time.Time, retention time.Duration, max int) *accounting {
	return &accounting{workers: make(map[string]*WorkerStats), now: now, retention: retention, max: max}
}

// checkWorkers validates and defaults the accounting limits.
func (c *Config) checkWorkers() error {
	if c.WorkerRetention == 0 {
		c.WorkerRetention = DefaultWorkerRetention
	}
	if c.WorkerRetention < 0 {
		return fmt.Errorf("worker retention %v: must be positive", c.WorkerRetention)
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = DefaultMaxWorkers
	}
	if c.MaxWorkers < 10 {
		return fmt.Errorf("max workers %d: must be at least 10", c.MaxWorkers)
	}
	return nil
}

func (a *accounting) get(name string) *WorkerStats {
	w := a.workers[name]
	if w == nil {
		now := a.now()
		a.sweepLocked(now, false)
		if len(a.workers) >= a.max {
			a.capLocked()
		}
		w = &WorkerStats{Name: name, Rejected: map[string]uint64{}, active: now}
		a.workers[name] = w
	}
	return w
}

// idleLocked reports whether w may be forgotten at now: no session, and
// no share within the retention.
func (a *accounting) idleLocked(w *WorkerStats, now time.Time) bool {
	return w.Sessions <= 0 && (w.shareAt.IsZero() || now.Sub(w.shareAt) >= a.retention)
}

// sweepLocked forgets the idle workers, at most once per sweepEvery
// unless force is set.
func (a *accounting) sweepLocked(now time.Time, force bool) {
	if !force && now.Sub(a.swept) < sweepEvery && !now.Before(a.swept) {
		return
	}
	a.swept = now
	for name, w := range a.workers {
		if a.idleLocked(w, now) {
			delete(a.workers, name)
			a.evicted++
		}
	}
}

// capLocked makes room in a full table: the sessionless workers least
// recently active go (of equal activity, by name), down to nine tenths
// of max, so that a stream of new names pays for this sort once per
// max/10 names.
func (a *accounting) capLocked() {
	var idle []*WorkerStats
	for _, w := range a.workers {
		if w.Sessions <= 0 {
			idle = append(idle, w)
		}
	}
	slices.SortFunc(idle, func(x, y *WorkerStats) int {
		if c := x.active.Compare(y.active); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	for _, w := range idle {
		if len(a.workers) <= a.max*9/10 {
			break
		}
		delete(a.workers, w.Name)
		a.evicted++
	}
}

func (a *accounting) connected(name, remote string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.get(name)
	w.Remote = remote
	if w.Sessions == 0 {
		w.ConnectedSince = now
		w.best, w.BestSession = sessionBest{}, 0
	}
	w.Sessions++
	w.active = now
}

// disconnected ends one session of name; a worker left without a session
// and without a recent share is forgotten at once.
func (a *accounting) disconnected(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.workers[name]
	if w == nil {
		return
	}
	now := a.now()
	w.Sessions--
	w.active = now
	if a.idleLocked(w, now) {
		delete(a.workers, name)
		a.evicted++
	}
}

func (a *accounting) setDifficulty(name string, d float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.get(name).Difficulty = d
}

func (a *accounting) rejected(name, reason string) {
	if name == "" {
		name = "(unauthorized)"
	} else if a.onReject != nil {
		defer a.onReject(name, a.now())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.get(name)
	w.Rejected[reason]++
	w.RejectedTotal++
	w.active = a.now()
	w.shareAt = w.active
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
	w.active, w.shareAt = now, now
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
	out, _, _ := a.page(now, 0, math.MaxInt)
	return out
}

// page copies the stats of the workers from offset, in name order, at
// most limit of them, after forgetting the idle ones; it returns them
// with the number of workers and their total hashrate.
func (a *accounting) page(now time.Time, offset, limit int) (out []WorkerStats, total int, hashrate float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweepLocked(now, false)
	names := make([]string, 0, len(a.workers))
	for name, w := range a.workers {
		decay(w, now)
		hashrate += w.Hashrate
		names = append(names, name)
	}
	sort.Strings(names)
	total = len(names)
	names = names[min(offset, total):]
	names = names[:min(limit, len(names))]
	out = make([]WorkerStats, 0, len(names))
	for _, name := range names {
		w := a.workers[name]
		c := *w
		c.Rejected = make(map[string]uint64, len(w.Rejected))
		for k, v := range w.Rejected {
			c.Rejected[k] = v
		}
		out = append(out, c)
	}
	return out, total, hashrate
}

// size returns the number of workers in the table and how many were
// forgotten since the start.
func (a *accounting) size() (workers int, evicted uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.workers), a.evicted
}
