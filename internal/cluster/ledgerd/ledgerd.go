// Package ledgerd is the cluster's ledger writer: it moves the shares of
// the SHARES stream (written by internal/cluster/sharelog) into the
// PostgreSQL ledger (internal/ledger/pgledger).
//
// A Writer reads through a durable pull consumer on SHARES (default name
// "ledger"; every writer of a cluster shares it, so the stream's work
// queue hands each message to one of them). A message is a batch of a
// front-end's shares (sharelog.DecodeShares). The writer fetches up to
// Batch messages, decodes them, stores their shares with pgledger.Record
// (one transaction per up to pgledger.MaxBatch shares), and acknowledges
// the messages only after the commit. Fetching and storing overlap: the
// next batch is fetched while the previous one is being committed. A
// batch whose commit failed is negatively acknowledged for redelivery; a
// writer that dies between the commit and the acknowledgements leaves its
// messages to be redelivered after AckWait; Record skips a share whose
// hash is stored already, so each share is stored once.
//
// A share the ledger refuses (pgledger.CheckShare: a worker name with a
// NUL, say) is quarantined alone: its batch-mates of the same message are
// stored, and it goes to the ledger's quarantine table
// (pgledger.Quarantine) with the reason, in the same round as they, so an
// operator can see it. A message that does not decode is quarantined
// whole (counted in Stats.Bad too). Either way the message is then
// acknowledged: nothing in it is redelivered for ever, nothing storable
// in it is lost, and it cannot stall the batches it rides in. Each
// quarantined entry is logged and counted (Stats.Quarantined,
// powcoord_ledger_quarantined_total).
package ledgerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says how New builds a Writer. Zero fields take the defaults.
type Config struct {
	// Durable is the consumer's name (default "ledger").
	Durable string
	// Batch is the most messages fetched and stored at once (default
	// 64; each message holds up to a front-end's batch of shares).
	Batch int
	// Transactions is the number of batches being committed at once
	// (default 2): fetching and decoding overlap with them.
	Transactions int
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
	Shares   uint64 // shares in those messages
	Stored   uint64 // shares new to the ledger (the rest were there already)
	Batches  uint64 // committed batches
	Bad      uint64 // messages that did not decode (quarantined whole)
	// Quarantined counts the entries this writer put in the quarantine:
	// shares the ledger refuses, and messages that did not decode.
	Quarantined uint64
}

// Writer moves shares from SHARES to PostgreSQL.
type Writer struct {
	cfg    Config
	cons   jetstream.Consumer
	ledger *pgledger.Ledger
	log    *slog.Logger
	server func() string

	messages, shares, stored, batches, bad, quarantined atomic.Uint64

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
		cfg.Batch = 64
	}
	if cfg.Transactions == 0 {
		cfg.Transactions = 2
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
	case cfg.Transactions < 1 || cfg.Transactions > 64:
		return nil, fmt.Errorf("ledgerd: %d transactions at once: want 1 to 64", cfg.Transactions)
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
		MaxAckPending: (cfg.Transactions + 2) * cfg.Batch,
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
	return Stats{Messages: w.messages.Load(), Shares: w.shares.Load(), Stored: w.stored.Load(), Batches: w.batches.Load(), Bad: w.bad.Load(), Quarantined: w.quarantined.Load()}
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
// failed transaction negatively acknowledges its messages (they are
// redelivered after a pause) and the writer goes on after that pause.
func (w *Writer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetched := make(chan batch, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(fetched)
		var bo backoff
		for ctx.Err() == nil {
			b, err := w.fetch(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.log.Warn("ledger fetch failed", "err", err)
				if !sleep(ctx, bo.next()) {
					return
				}
				continue
			}
			bo = backoff{}
			if len(b.msgs) == 0 {
				continue
			}
			select {
			case fetched <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()
	var wg sync.WaitGroup
	for range w.cfg.Transactions {
		wg.Go(func() {
			var bo backoff
			for b := range fetched {
				err := w.store(ctx, b)
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, errStop) {
					cancel()
					return
				}
				if err != nil {
					w.log.Warn("ledger batch failed", "err", err)
					pause := bo.next()
					for _, m := range b.msgs {
						_ = m.NakWithDelay(pause)
					}
					if !sleep(ctx, pause) {
						return
					}
					continue
				}
				bo = backoff{}
			}
		})
	}
	wg.Wait()
	return nil
}

// backoff is the pause after a failure: 100 ms, doubling while failures
// repeat, at most 5 s.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	b.d = min(max(2*b.d, 100*time.Millisecond), 5*time.Second)
	return b.d
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// batch is one fetch: its messages, the shares they hold, and what of
// them cannot be stored (undecoded counts the messages among those).
type batch struct {
	msgs      []jetstream.Msg
	shares    []ledger.Share
	bad       []pgledger.Quarantined
	undecoded int
}

// errStop is store's answer when the test hook stopped the writer.
var errStop = errors.New("ledgerd: stopped after commit")

// fetch fetches up to Batch messages and decodes them. A share the
// ledger would refuse, or a message that does not decode, goes to b.bad
// (the quarantine) instead of b.shares; its message stays in b.msgs, to
// be acknowledged once both are stored.
func (w *Writer) fetch(ctx context.Context) (batch, error) {
	var b batch
	mb, err := w.cons.Fetch(w.cfg.Batch, jetstream.FetchMaxWait(w.cfg.FetchWait))
	if err != nil {
		return b, fmt.Errorf("ledgerd: fetching from %s via %s: %w", bus.StreamShares, w.server(), err)
	}
	for m := range mb.Messages() {
		b.msgs = append(b.msgs, m)
		shares, err := sharelog.DecodeShares(m.Data())
		if err != nil {
			b.undecoded++
			b.bad = append(b.bad, pgledger.Quarantined{Key: sha256.Sum256(m.Data()), Subject: m.Subject(), Reason: err.Error(), Data: bytes.Clone(m.Data())})
			continue
		}
		for i := range shares {
			sh := ledger.Share(shares[i])
			if cerr := pgledger.CheckShare(&sh); cerr != nil {
				// Record would refuse the whole batch for this one share:
				// it alone is quarantined, its batch-mates are stored.
				b.bad = append(b.bad, pgledger.Quarantined{Key: sh.Hash, Subject: m.Subject(), Worker: []byte(sh.Worker),
					Reason: fmt.Sprintf("share %d of %d (hash %s): %v", i, len(shares), sh.Hash, cerr), Data: sharelog.AppendShare(nil, shares[i])})
				continue
			}
			b.shares = append(b.shares, sh)
		}
	}
	if err := mb.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(b.msgs) == 0 {
		return b, fmt.Errorf("ledgerd: fetching from %s via %s: %w", bus.StreamShares, w.server(), err)
	}
	return b, nil
}

// store commits b's shares and then acknowledges its messages.
func (w *Writer) store(ctx context.Context, b batch) error {
	stored := 0
	for rest := b.shares; len(rest) > 0; {
		chunk := rest[:min(len(rest), pgledger.MaxBatch)]
		rest = rest[len(chunk):]
		n, err := w.ledger.Record(ctx, chunk)
		if err != nil {
			return fmt.Errorf("ledgerd: storing a batch of %d shares from %d messages: %w", len(b.shares), len(b.msgs), err)
		}
		stored += n
	}
	if len(b.bad) > 0 {
		if _, err := w.ledger.Quarantine(ctx, b.bad); err != nil {
			return fmt.Errorf("ledgerd: quarantining %d entries of a batch of %d messages: %w", len(b.bad), len(b.msgs), err)
		}
		for _, q := range b.bad {
			w.log.Warn("share quarantined", "subject", q.Subject, "key", q.Key.String(), "reason", q.Reason)
		}
	}
	if w.afterCommit != nil && !w.afterCommit() {
		return errStop
	}
	for _, m := range b.msgs {
		if err := m.Ack(); err != nil {
			return fmt.Errorf("ledgerd: acknowledging %d stored messages via %s: %w", len(b.msgs), w.server(), err)
		}
	}
	w.messages.Add(uint64(len(b.msgs)))
	w.shares.Add(uint64(len(b.shares)))
	w.stored.Add(uint64(stored))
	w.batches.Add(1)
	w.bad.Add(uint64(b.undecoded))
	w.quarantined.Add(uint64(len(b.bad)))
	return nil
}

// Collector returns Prometheus metrics of w: its counters and its lag
// (read from the cluster at each scrape, with a 2 s timeout).
func (w *Writer) Collector() prometheus.Collector { return collector{w} }

var (
	descLag         = prometheus.NewDesc("powcoord_ledger_lag_messages", "Messages of the SHARES stream not yet stored and acknowledged by the ledger writers (consumer pending plus ack pending).", nil, nil)
	descMessages    = prometheus.NewDesc("powcoord_ledger_messages_total", "Share messages this writer stored and acknowledged.", nil, nil)
	descStored      = prometheus.NewDesc("powcoord_ledger_shares_stored_total", "Shares this writer stored that were new to the ledger.", nil, nil)
	descBatches     = prometheus.NewDesc("powcoord_ledger_batches_total", "Batches this writer committed.", nil, nil)
	descBad         = prometheus.NewDesc("powcoord_ledger_bad_messages_total", "Share messages that did not decode (quarantined whole).", nil, nil)
	descQuarantined = prometheus.NewDesc("powcoord_ledger_quarantined_total", "Entries this writer put in the ledger's quarantine table: shares the ledger refuses and messages that did not decode.", nil, nil)
)

type collector struct{ w *Writer }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descMessages, descStored, descBatches, descBad, descQuarantined} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(s.Messages))
	ch <- prometheus.MustNewConstMetric(descStored, prometheus.CounterValue, float64(s.Stored))
	ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(descBad, prometheus.CounterValue, float64(s.Bad))
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.CounterValue, float64(s.Quarantined))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lag, err := c.w.Lag(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLag, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(lag))
}
