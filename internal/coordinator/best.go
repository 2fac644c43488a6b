package coordinator

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
)

// Best shares: the highest difficulty a share reached (T1/hash, the
// ledger's Achieved), per worker and per address (the worker name's part
// before the first '.'), over three spans:
//   - session: since the worker last connected (kept in memory, and
//     after it disconnects until it connects again; keyed by a
//     connection's first authorized name);
//   - since_block: since the last block the pool found was accepted;
//   - all_time: ever.
// The last two are durable: the store keeps them in the transaction of
// the share that set them (store.BestShares), so they are what the ledger
// says.

// BestStore is what a Ledger also implements when it keeps best shares
// (*store.Store does). Without it only the session spans are known.
type BestStore interface {
	// BestShares lists the durable records (since block, all time).
	BestShares() []store.BestShare
	// ResetBestSinceBlock starts a new round after an accepted block.
	ResetBestSinceBlock(ctx context.Context) error
}

// BestRecord is one best share: its difficulty, header hash (display
// hex) and when it was accepted.
type BestRecord struct {
	Difficulty float64   `json:"difficulty"`
	Hash       string    `json:"hash"`
	Time       time.Time `json:"time"`
}

// BestOf is the best shares of one worker or address; a span without any
// share is null.
type BestOf struct {
	Name       string      `json:"name"`
	Session    *BestRecord `json:"session"`
	SinceBlock *BestRecord `json:"since_block"`
	AllTime    *BestRecord `json:"all_time"`
}

// BestShares is the best shares per worker and per address, each list
// sorted by name.
type BestShares struct {
	Workers   []BestOf `json:"workers"`
	Addresses []BestOf `json:"addresses"`
}

// sessionBest is a worker's best share since its sessions began; the
// accounting lock guards it.
type sessionBest struct {
	rec BestRecord
	set bool
}

func (b *sessionBest) note(d float64, hash chainmath.Hash, now time.Time) {
	if !b.set || d > b.rec.Difficulty {
		b.rec = BestRecord{Difficulty: d, Hash: hash.String(), Time: now}
		b.set = true
	}
}

// BestShares returns the best shares of every worker and address known
// this run or to the store.
func (c *Coordinator) BestShares() BestShares {
	workers := map[string]*BestOf{}
	addrs := map[string]*BestOf{}
	get := func(m map[string]*BestOf, name string) *BestOf {
		b := m[name]
		if b == nil {
			b = &BestOf{Name: name}
			m[name] = b
		}
		return b
	}
	for name, sb := range c.stats.sessionBests() {
		r := sb
		get(workers, name).Session = &r
		a := get(addrs, ledger.AccountOf(name))
		if a.Session == nil || r.Difficulty > a.Session.Difficulty {
			a.Session = &r
		}
	}
	if bs, ok := c.cfg.Store.(BestStore); ok {
		for _, rec := range bs.BestShares() {
			m := workers
			if rec.Kind == store.BestAccount {
				m = addrs
			}
			r := &BestRecord{Difficulty: rec.Difficulty, Hash: rec.Hash.String(), Time: rec.Time}
			switch rec.Scope {
			case store.BestSinceBlock:
				get(m, rec.Name).SinceBlock = r
			case store.BestAllTime:
				get(m, rec.Name).AllTime = r
			}
		}
	}
	list := func(m map[string]*BestOf) []BestOf {
		out := make([]BestOf, 0, len(m))
		for _, b := range m {
			out = append(out, *b)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	return BestShares{Workers: list(workers), Addresses: list(addrs)}
}

// resetRound starts a new since-block round after an accepted block.
func (c *Coordinator) resetRound(ctx context.Context) {
	bs, ok := c.cfg.Store.(BestStore)
	if !ok {
		return
	}
	if err := bs.ResetBestSinceBlock(ctx); err != nil && !errors.Is(err, store.ErrClosed) && ctx.Err() == nil {
		c.log.Error("resetting best shares since the last block", "err", err)
	}
}

// bestCollector exports the best shares as
// powcoord_best_share_difficulty{kind, name, span}.
type bestCollector struct {
	c    *Coordinator
	desc *prometheus.Desc
}

func newBestCollector(c *Coordinator) *bestCollector {
	return &bestCollector{c: c, desc: prometheus.NewDesc("powcoord_best_share_difficulty",
		"Highest difficulty a share reached, by kind (worker or address), name and span (session, since_block, all_time).",
		[]string{"kind", "name", "span"}, nil)}
}

func (b *bestCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *bestCollector) Collect(ch chan<- prometheus.Metric) {
	best := b.c.BestShares()
	emit := func(kind string, list []BestOf) {
		for _, o := range list {
			for span, r := range map[string]*BestRecord{"session": o.Session, "since_block": o.SinceBlock, "all_time": o.AllTime} {
				if r != nil {
					ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, r.Difficulty, kind, o.Name, span)
				}
			}
		}
	}
	emit("worker", best.Workers)
	emit("address", best.Addresses)
}
