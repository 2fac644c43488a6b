package coordinator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the coordinator's Prometheus series.
type metrics struct {
	shares        *prometheus.CounterVec
	accepted      prometheus.Counter // shares{result="accepted"}, looked up once
	blocks        *prometheus.CounterVec
	notifyLatency prometheus.Histogram
	shareWork     prometheus.Counter
	shareLatency  prometheus.Histogram
	refused       *prometheus.CounterVec
	bans          prometheus.Counter
	rejectCloses  prometheus.Counter
	reconnects    prometheus.Counter
}

func newMetrics(c *Coordinator, reg prometheus.Registerer) *metrics {
	m := &metrics{
		shares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "powcoord_shares_total",
			Help: "Shares submitted, by result: accepted, or the rejection reason.",
		}, []string{"result"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "powcoord_blocks_total",
			Help: "Blocks found by miners, by result: accepted or rejected by the chain, abandoned (the chain moved past it with another block before any submission was answered), pending (a first submission found the chain unreachable), or orphaned (an accepted block found off the best chain; counted each time, a reorg may bring it back).",
		}, []string{"result"}),
		notifyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "powcoord_notify_latency_seconds",
			Help:    "Time from a new template to its mining.notify written to a session.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		shareWork: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "powcoord_share_work_total",
			Help: "Sum of the difficulties of accepted shares (× 2^32 hashes).",
		}),
		shareLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "powcoord_share_seconds",
			Help:    "Time to validate and durably record a share, until the reply.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "powcoord_connections_refused_total",
			Help: "Connections refused at accept, by reason (connection limits, bans).",
		}, []string{"reason"}),
		bans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "powcoord_bans_total",
			Help: "Addresses banned because several of their connections submitted mostly rejected shares.",
		}),
		rejectCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "powcoord_reject_closes_total",
			Help: "Connections closed for submitting mostly rejected shares (the reject rule).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "powcoord_reconnects_sent_total",
			Help: "client.reconnect messages sent to miners at a graceful shutdown.",
		}),
	}
	m.accepted = m.shares.WithLabelValues("accepted")
	if reg == nil {
		return m
	}
	reg.MustRegister(m.shares, m.blocks, m.notifyLatency, m.shareWork, m.shareLatency, m.refused, m.bans, m.rejectCloses, m.reconnects,
		newBestCollector(c),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "powcoord_blocks_orphaned",
			Help: "Blocks accepted this run that are now off the best chain (side chain or reorged out); not counted as found.",
		}, func() float64 { return float64(c.blocksOrphaned.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "powcoord_blocks_pending",
			Help: "Found blocks recorded and waiting for the chain to answer.",
		}, func() float64 { return float64(c.PendingBlocks()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "powcoord_sessions",
			Help: "Connected Stratum sessions.",
		}, func() float64 { return float64(c.SessionCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "powcoord_hashrate_estimate",
			Help: "Estimated hashrate of all workers, hashes per second, from accepted shares.",
		}, func() float64 {
			_, _, total := c.stats.page(c.cfg.Now(), 0, 0)
			return total
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "powcoord_job_age_seconds",
			Help: "Seconds since the current job was made.",
		}, func() float64 { return c.cfg.Now().Sub(c.jobs.current().made).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "powcoord_block_height",
			Help: "Height of the block being mined.",
		}, func() float64 { return float64(c.jobs.current().tmpl.Height) }),
	)
	return m
}

func (m *metrics) observeNotify(since time.Time) {
	m.notifyLatency.Observe(time.Since(since).Seconds())
}
