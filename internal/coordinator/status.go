package coordinator

import (
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

// Status is the coordinator's state for the status API and dashboard.
type Status struct {
	Time           time.Time     `json:"time"`
	Uptime         float64       `json:"uptime_seconds"`
	Source         work.Status   `json:"source"`
	Height         int64         `json:"height"` // of the block being mined
	PrevHash       string        `json:"prev_hash"`
	Bits           string        `json:"bits"`
	Difficulty     float64       `json:"difficulty"`
	JobAge         float64       `json:"job_age_seconds"`
	Sessions       int           `json:"sessions"`
	Hashrate       float64       `json:"hashrate"`
	BlocksFound    int64         `json:"blocks_found"`    // accepted and on the best chain
	BlocksOrphaned int64         `json:"blocks_orphaned"` // accepted, then found on a side chain or replaced by a reorg
	BlocksRejected int64         `json:"blocks_rejected"` // refused by the chain, or abandoned
	BlocksPending  int           `json:"blocks_pending"`  // found, recorded, waiting for the chain to answer
	Workers        []WorkerStats `json:"workers"`
	// BestByAddress is the best shares per address (the worker name's
	// part before the first '.'); per worker they are in Workers.
	BestByAddress []BestOf `json:"best_by_address"`

	// Workers above is one page of the per-worker accounting, in name
	// order: WorkersTotal workers in all, this page from WorkersOffset
	// (StatusPage).
	WorkersTotal  int `json:"workers_total"`
	WorkersOffset int `json:"workers_offset"`
}

// Status returns a snapshot of the coordinator's state with the first
// DefaultStatusWorkers workers (StatusPage(0, 0)).
func (c *Coordinator) Status() Status { return c.StatusPage(0, 0) }

// StatusPage returns a snapshot of the coordinator's state with the
// workers from offset in name order, at most limit of them (0:
// DefaultStatusWorkers; at most MaxStatusWorkers). Hashrate and
// WorkersTotal count every worker.
func (c *Coordinator) StatusPage(offset, limit int) Status {
	if limit <= 0 {
		limit = DefaultStatusWorkers
	}
	limit = min(limit, MaxStatusWorkers)
	offset = max(offset, 0)
	now := c.cfg.Now()
	workers, total, hashrate := c.stats.page(now, offset, limit)
	ep := c.jobs.current()
	d, _ := chainmath.CompactToDifficulty(ep.tmpl.Bits)
	st := Status{
		Time:           now,
		Uptime:         now.Sub(c.started).Seconds(),
		Source:         c.cfg.Source.Status(),
		Height:         ep.tmpl.Height,
		PrevHash:       ep.tmpl.PrevHash.String(),
		Bits:           ep.nbitsHex,
		Difficulty:     d,
		JobAge:         now.Sub(time.Unix(int64(ep.ntime), 0)).Seconds(),
		Sessions:       c.SessionCount(),
		BlocksFound:    c.blocksFound.Load(),
		BlocksOrphaned: c.blocksOrphaned.Load(),
		BlocksRejected: c.blocksRejected.Load(),
		BlocksPending:  c.PendingBlocks(),
		Hashrate:       hashrate,
		Workers:        workers,
		WorkersTotal:   total,
		WorkersOffset:  offset,
		BestByAddress:  c.BestShares().Addresses,
	}
	if bs, ok := c.cfg.Store.(BestStore); ok {
		idx := make(map[string]int, len(st.Workers))
		for i, w := range st.Workers {
			idx[w.Name] = i
		}
		for _, r := range bs.BestShares() {
			i, ok := idx[r.Name]
			if r.Kind != store.BestWorker || !ok {
				continue
			}
			if r.Scope == store.BestSinceBlock {
				st.Workers[i].BestSinceBlock = r.Difficulty
			} else if r.Scope == store.BestAllTime {
				st.Workers[i].BestAllTime = r.Difficulty
			}
		}
	}
	return st
}
