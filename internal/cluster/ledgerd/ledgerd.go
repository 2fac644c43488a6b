// Package ledgerd is the cluster's ledger writer: it moves the shares of
// the SHARES stream (written by internal/cluster/sharelog) into the
// PostgreSQL ledger (internal/ledger/pgledger).
//
// A Writer reads through a durable pull consumer on SHARES (default name
// "ledger"; every writer of a cluster shares it, so the stream's work
// queue hands each message to one of them). It fetches up to Batch
// messages, decodes them, stores them with one pgledger.Record call (one
// transaction), and acknowledges the messages only after the commit.
// A writer that dies between the commit and the acknowledgements leaves
// its messages to be redelivered after AckWait; Record skips a share
// whose hash is stored already, so each share is stored once.
//
// A message that does not decode is terminated (never redelivered) and
// counted in Stats.Bad; it cannot become a share of the ledger.
package ledgerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says how New builds a Writer. Zero fields take the defaults.
type Config struct {
	// Durable is the consumer's name (default "ledger").
	Durable string
	// Batch is the most messages fetched and stored at once (default
	// 4096, at most pgledger.MaxBatch).
	Batch int
	// FetchWait is the longest one fetch waits for its batch to fill
	// (default 100 ms).
	FetchWait time.Duration
	// AckWait is how long the stream waits for the acknowledgement of a
	// delivered message before it redelivers it (default 30 s).
	AckWait time.Duration
	// Logger gets the writer's events (default slog.Default()).
	Logger *slog.Logger
}

// Stats are counters of a Writer since New.
type Stats struct {
	Messages uint64 // messages stored and acknowledged
	Stored   uint64 // shares new to the ledger (the rest were there already)
	Batches  uint64 // committed batches
	Bad      uint64 // messages that did not decode, terminated
}

// Writer moves shares from SHARES to PostgreSQL.
type Writer struct {
	cfg    Config
	cons   jetstream.Consumer
	ledger *pgledger.Ledger
	log    *slog.Logger
	server func() string

	messages, stored, batches, bad atomic.Uint64

	// afterCommit, when set (by tests), runs after each commit and
	// before the acknowledgements; returning false drops the batch
	// without acknowledging it, as a crash at that point would.
	afterCommit func() bool
}

// New creates or updates the durable consumer on SHARES (the streams must
// exist: bus.EnsureStreams) and returns a writer storing into ledger.
func New(ctx context.Context, js jetstream.JetStream, ledger *pgledger.Ledger, cfg Config) (*Writer, error) {
	if cfg.Durable == "" {
		cfg.Durable = "ledger"
	}
	if cfg.Batch == 0 {
		cfg.Batch = 4096
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = 100 * time.Millisecond
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.Batch < 1 || cfg.Batch > pgledger.MaxBatch:
		return nil, fmt.Errorf("ledgerd: batch %d: want 1 to %d", cfg.Batch, pgledger.MaxBatch)
	case cfg.FetchWait < time.Millisecond:
		return nil, fmt.Errorf("ledgerd: fetch wait %v: want at least 1ms", cfg.FetchWait)
	case cfg.AckWait < time.Second/2:
		return nil, fmt.Errorf("ledgerd: ack wait %v: want at least 500ms", cfg.AckWait)
	}
	server := func() string {
		if u := js.Conn().ConnectedUrlRedacted(); u != "" {
			return u
		}
		return "no server (disconnected)"
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "powcoord: ledger writers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 4 * cfg.Batch,
		FilterSubject: bus.SubjectShares + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	var cons jetstream.Consumer
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err = js.CreateOrUpdateConsumer(actx, bus.StreamShares, cc)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ledgerd: creating consumer %s on stream %s via %s: %w", cfg.Durable, bus.StreamShares, server(), err)
	}
	return &Writer{cfg: cfg, cons: cons, ledger: ledger, log: cfg.Logger.With("consumer", cfg.Durable), server: server}, nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{Messages: w.messages.Load(), Stored: w.stored.Load(), Batches: w.batches.Load(), Bad: w.bad.Load()}
}

// Lag returns the messages of SHARES the consumer has not had
// acknowledged: those not yet delivered plus those delivered and
// waiting for their acknowledgement.
func (w *Writer) Lag(ctx context.Context) (uint64, error) {
	info, err := w.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("ledgerd: reading consumer %s on %s via %s: %w", w.cfg.Durable, bus.StreamShares, w.server(), err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Run stores batches until ctx ends (then it returns nil) or the ledger
// fails for good. A failed fetch (no server answering) is retried; a
// failed transaction leaves its batch unacknowledged (it is redelivered)
// and is retried after a pause.
func (w *Writer) Run(ctx context.Context) error {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		n, err := w.once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.log.Warn("ledger batch failed", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
			pause = min(2*pause, 5*time.Second)
			continue
		}
		if n > 0 {
			pause = 100 * time.Millisecond
		}
	}
	return nil
}

// once fetches, stores and acknowledges one batch and returns its size.
func (w *Writer) once(ctx context.Context) (int, error) {
	batch, err := w.cons.Fetch(w.cfg.Batch, jetstream.FetchMaxWait(w.cfg.FetchWait))
	if err != nil {
		return 0, fmt.Errorf("ledgerd: fetching from %s via %s: %w", bus.StreamShares, w.server(), err)
	}
	var (
		msgs   []jetstream.Msg
		shares []pgledger.Share
	)
	for m := range batch.Messages() {
		sh, err := sharelog.DecodeShare(m.Data())
		if err != nil {
			w.bad.Add(1)
			w.log.Error("undecodable share message terminated", "subject", m.Subject(), "err", err)
			_ = m.Term()
			continue
		}
		msgs = append(msgs, m)
		shares = append(shares, pgledger.Share(sh))
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 {
		return 0, fmt.Errorf("ledgerd: fetching from %s via %s: %w", bus.StreamShares, w.server(), err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	stored, err := w.ledger.Record(ctx, shares)
	if err != nil {
		return 0, fmt.Errorf("ledgerd: storing a batch of %d shares: %w", len(shares), err)
	}
	if w.afterCommit != nil && !w.afterCommit() {
		return 0, nil
	}
	for _, m := range msgs {
		// A lost acknowledgement means a redelivery, which Record
		// stores once: no need to wait for each.
		if err := m.Ack(); err != nil {
			return 0, fmt.Errorf("ledgerd: acknowledging %d stored shares via %s: %w", len(msgs), w.server(), err)
		}
	}
	w.messages.Add(uint64(len(msgs)))
	w.stored.Add(uint64(stored))
	w.batches.Add(1)
	return len(msgs), nil
}

// Collector returns Prometheus metrics of w: its counters and its lag
// (read from the cluster at each scrape, with a 2 s timeout).
func (w *Writer) Collector() prometheus.Collector { return collector{w} }

var (
	descLag      = prometheus.NewDesc("powcoord_ledger_lag_messages", "Messages of the SHARES stream not yet stored and acknowledged by the ledger writers (consumer pending plus ack pending).", nil, nil)
	descMessages = prometheus.NewDesc("powcoord_ledger_messages_total", "Share messages this writer stored and acknowledged.", nil, nil)
	descStored   = prometheus.NewDesc("powcoord_ledger_shares_stored_total", "Shares this writer stored that were new to the ledger.", nil, nil)
	descBatches  = prometheus.NewDesc("powcoord_ledger_batches_total", "Batches this writer committed.", nil, nil)
	descBad      = prometheus.NewDesc("powcoord_ledger_bad_messages_total", "Share messages that did not decode and were terminated.", nil, nil)
)

type collector struct{ w *Writer }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descMessages, descStored, descBatches, descBad} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Messages))
	ch <- prometheus.MustNewConstMetric(descStored, prometheus.CounterValue, float64(s.Stored))
	ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(descBad, prometheus.CounterValue, float64(s.Bad))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lag, err := c.w.Lag(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLag, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(lag))
}
