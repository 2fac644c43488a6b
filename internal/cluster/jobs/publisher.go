package jobs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/work"
)

// PublisherConfig configures a Publisher. Zero fields take the defaults.
type PublisherConfig struct {
	// Source is the leader's work source. Required.
	Source work.Source
	// Conn is the connection to the cluster. Required.
	Conn *nats.Conn
	// Payout is the source's payout rule (EmbeddedPayout or NodePayout).
	// Required.
	Payout Payout
	// Leader and Term identify the leadership the publisher runs under
	// (bus.Leader ID and Term); front-ends ignore jobs of an older term.
	Leader string
	Term   uint64
	// JobSubject (JobSubject), BlockSubject (BlockSubject) and Consumer
	// (BlockConsumer) name where jobs go and found blocks come from.
	JobSubject, BlockSubject, Consumer string
	// RetryDelay is how long a block the source could not be asked about
	// waits before it is delivered again (1 s).
	RetryDelay time.Duration
	// PPLNS, when set, fixes the coinbase outputs of every job as it is
	// published (the leader's PPLNS split of t, from the shared ledger):
	// it returns the outputs in order and the payout record of a block
	// found on them (Hash unset), or nil and nil while the window holds
	// no work (the job then pays its finder, as solo).
	PPLNS func(ctx context.Context, t *work.Template) ([]*wire.TxOut, *ledger.PayoutRecord, error)
	// RecordPayout, when set, records what a found block pays, with the
	// payout record of the recently published job whose coinbase outputs
	// the block pays (Hash set), or nil when none does (a solo job, or a
	// job of an earlier leader: the record then comes from the block's
	// coinbase). It is called once the source has answered the block
	// (accepted or rejected), never before: a block goes to the chain
	// even while its record cannot be written. An error keeps the
	// block's message and calls RecordPayout again after RetryDelay,
	// without submitting the block again, until it succeeds. It must be
	// idempotent.
	RecordPayout func(ctx context.Context, blk *wire.MsgBlock, finder string, rec *ledger.PayoutRecord) error
	// Logger receives the publisher's events (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Publisher is the active coordinator's side of the jobs transport.
type Publisher struct {
	cfg PublisherConfig
	js  jetstream.JetStream
	log *slog.Logger

	mu       sync.Mutex
	recent   map[string]*ledger.PayoutRecord // jobKey → payout record of a published job
	order    []string                        // keys of recent, oldest first
	answered map[chainmath.Hash]int          // submitted and answered, payout record owed → its failed attempts
	stopping bool                            // Run is returning: no new payout record is started
	records  sync.WaitGroup                  // payout records being written
}

// maxRecentPayouts is how many published jobs' payouts a Publisher keeps
// to match found blocks with.
const maxRecentPayouts = 64

// jobKey names a job by the block it builds on and its list of paying
// outputs (value and script each). Without the previous block, a job of
// the next height that splits the same window the same way (a block
// found while the ledger could not be written leaves the window as it
// was) would take the record of a block of the one before, with the
// wrong height and cutoff.
func jobKey(prev chainmath.Hash, outs []*wire.TxOut) string {
	b := append([]byte(nil), prev[:]...)
	for _, o := range outs {
		b = binary.LittleEndian.AppendUint64(b, uint64(o.Value))
		b = binary.AppendUvarint(b, uint64(len(o.PkScript)))
		b = append(b, o.PkScript...)
	}
	return string(b)
}

func (p *Publisher) remember(prev chainmath.Hash, outs []*wire.TxOut, rec *ledger.PayoutRecord) {
	k := jobKey(prev, outs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recent == nil {
		p.recent = make(map[string]*ledger.PayoutRecord)
	}
	if _, ok := p.recent[k]; !ok {
		p.order = append(p.order, k)
	}
	p.recent[k] = rec
	for len(p.order) > maxRecentPayouts {
		delete(p.recent, p.order[0])
		p.order = p.order[1:]
	}
}

// payoutOf returns the payout record of the published job on blk's
// previous block whose outputs blk's coinbase pays (its outputs of
// positive value), with Hash set.
func (p *Publisher) payoutOf(blk *wire.MsgBlock) *ledger.PayoutRecord {
	if len(blk.Transactions) == 0 {
		return nil
	}
	var paying []*wire.TxOut
	for _, o := range blk.Transactions[0].TxOut {
		if o.Value > 0 {
			paying = append(paying, o)
		}
	}
	p.mu.Lock()
	rec := p.recent[jobKey(chainmath.Hash(blk.Header.PrevBlock), paying)]
	p.mu.Unlock()
	if rec == nil {
		return nil
	}
	r := *rec
	r.Hash = chainmath.Hash(blk.BlockHash())
	return &r
}

// NewPublisher checks cfg and returns a Publisher; Run starts it.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Source == nil {
		return nil, errors.New("jobs: publisher: Source is nil")
	}
	if cfg.Conn == nil {
		return nil, errors.New("jobs: publisher: Conn is nil")
	}
	if err := cfg.Payout.Check(); err != nil {
		return nil, fmt.Errorf("jobs: publisher: %w", err)
	}
	if cfg.JobSubject == "" {
		cfg.JobSubject = JobSubject
	}
	if cfg.BlockSubject == "" {
		cfg.BlockSubject = BlockSubject
	}
	if cfg.Consumer == "" {
		cfg.Consumer = BlockConsumer
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	js, err := bus.New(cfg.Conn)
	if err != nil {
		return nil, err
	}
	return &Publisher{cfg: cfg, js: js, log: cfg.Logger}, nil
}

// RunLeader runs p while l leads: it returns when ctx ends or l loses its
// leadership (with l's error), whichever is first. p's Leader and Term
// should be l's.
func (p *Publisher) RunLeader(ctx context.Context, l *bus.Leader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Lost():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := p.Run(ctx)
	if lerr := l.Err(); lerr != nil {
		return lerr
	}
	return err
}

// Run publishes the source's current template, then each new one after an
// Updates signal, and submits found blocks from BLOCKS to the source,
// until ctx ends (run it with a context that ends when leadership is
// lost). It returns ctx's error, or the first error that stops it for
// good (the durable consumer cannot be created, a template too large for
// the servers).
func (p *Publisher) Run(ctx context.Context) error {
	cons, err := p.consumer(ctx)
	if err != nil {
		return err
	}
	// Found blocks are handled side by side, up to blockWorkers at once:
	// one at a time, a flood of stale blocks (regtest, an easy embedded
	// chain, a backlog left while no leader ran) was worked through
	// slower than the front-ends found new ones, and the block that
	// extends the chain waited behind them for ever.
	sem := make(chan struct{}, blockWorkers)
	var handling sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		handling.Go(func() {
			defer func() { <-sem }()
			p.handleBlock(ctx, m)
		})
	},
		// A pull that went unanswered (the consumer's leader still being
		// elected) is noticed within seconds, not the 30 s default.
		jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			p.log.Warn("found-block consumer", "consumer", p.cfg.Consumer, "err", err)
		}))
	if err != nil {
		return fmt.Errorf("jobs: consuming found blocks through %s: %w", p.cfg.Consumer, err)
	}
	defer func() {
		cc.Stop()
		handling.Wait()
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		p.records.Wait()
	}()

	updates := p.cfg.Source.Updates()
	var lastFail error
	for {
		if err := p.publish(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var tooBig *tooLargeError
			if errors.As(err, &tooBig) {
				return err
			}
			// Transient: try again soon, or when the next template comes.
			if lastFail == nil || lastFail.Error() != err.Error() {
				p.log.Warn("publishing job failed; retrying", "err", err)
			}
			lastFail = err
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-updates:
			case <-time.After(p.cfg.RetryDelay):
			}
			continue
		}
		lastFail = nil
		// Published again at least every third of the object TTL even
		// without a new template: a job kept in the powcoord-templates
		// object store must not expire while it is still the current one.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-updates:
		case <-time.After(bus.TemplateObjectTTL / 3):
		}
	}
}

// blockWorkers is how many found blocks the active coordinator handles at
// once.
const blockWorkers = 16

type tooLargeError struct{ size, limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("jobs: job message of %d bytes exceeds the %d bytes a job may take", e.size, e.limit)
}

// publish publishes the current template once. A job message larger than
// the servers' max_payload (a Bitcoin template with its transactions) is
// stored in the powcoord-templates object store and the message on JOBS
// names it (bus.Externalize).
func (p *Publisher) publish(ctx context.Context) error {
	t := p.cfg.Source.Current()
	job := &Job{Leader: p.cfg.Leader, Term: p.cfg.Term, Published: p.cfg.Now(), Template: t, Payout: p.cfg.Payout}
	if p.cfg.PPLNS != nil {
		outs, rec, err := p.cfg.PPLNS(ctx, t)
		if err != nil {
			return fmt.Errorf("jobs: PPLNS payout of the template at height %d: %w", t.Height, err)
		}
		if len(outs) > 0 {
			tt := *t
			tt.CoinbaseOutputs = outs
			job.Template = &tt
			if rec != nil {
				job.PPLNS = &JobPPLNS{Cutoff: rec.Cutoff, Window: rec.Window}
				p.remember(t.PrevHash, outs, rec)
			}
		}
	}
	data, err := EncodeJob(job)
	if err != nil {
		return err
	}
	if len(data) > bus.MaxLarge {
		return &tooLargeError{int64(len(data)), bus.MaxLarge}
	}
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	m := &nats.Msg{Subject: p.cfg.JobSubject, Data: data, Header: nats.Header{}}
	if err := bus.Externalize(actx, p.js, bus.BucketTemplates, m); err != nil {
		return fmt.Errorf("jobs: publishing the template at height %d: %w", t.Height, err)
	}
	if _, err := bus.PublishMsg(actx, p.js, m, ""); err != nil {
		return fmt.Errorf("jobs: publishing the template at height %d: %w", t.Height, err)
	}
	p.log.Debug("job published", "height", t.Height, "prev", t.PrevHash.String(), "bytes", len(data), "object", m.Header.Get(bus.HeaderObject))
	return nil
}

func (p *Publisher) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       p.cfg.Consumer,
		Description:   "powcoord: found blocks, submitted by the active coordinator",
		FilterSubject: p.cfg.BlockSubject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	}
	var last error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := p.js.CreateOrUpdateConsumer(actx, bus.StreamBlocks, cfg)
		if err == nil {
			// Pulls go to the consumer's leader: wait until it has one
			// (a pull sent before gets no responder and was retried
			// only after the pull expiry).
			var info *jetstream.ConsumerInfo
			if info, err = c.Info(actx); err == nil && info.Cluster != nil && info.Cluster.Leader == "" {
				err = fmt.Errorf("consumer %s has no leader yet", cfg.Durable)
			}
		}
		cancel()
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil || attempt >= 10 {
			return nil, fmt.Errorf("jobs: creating durable consumer %s on stream %s (attempt %d): %w", cfg.Durable, bus.StreamBlocks, attempt, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// handleBlock submits one found block, then records its payout
// (RecordPayout), and acks it once the source answered and the payout is
// recorded.
func (p *Publisher) handleBlock(ctx context.Context, m jetstream.Msg) {
	data, err := bus.Body(ctx, p.js, bus.BucketFound, m.Data(), m.Headers())
	if err != nil {
		if errors.Is(err, bus.ErrObjectGone) {
			p.log.Warn("dropping a found-block message whose block is gone", "subject", m.Subject(), "err", err)
			m.Term()
			return
		}
		p.log.Warn("found block not fetched; will be redelivered", "subject", m.Subject(), "err", err)
		m.NakWithDelay(p.cfg.RetryDelay)
		return
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(data)); err != nil {
		// Not a block: redelivering it would never help.
		p.log.Warn("dropping an undecodable found-block message", "subject", m.Subject(), "bytes", len(data), "err", err)
		m.Term()
		return
	}
	hash := chainmath.Hash(blk.BlockHash())
	finder := m.Headers().Get(HeaderFinder)
	// Submitted first, whatever becomes of its payout record: a block
	// withheld while the ledger is down is a block lost.
	p.mu.Lock()
	_, answered := p.answered[hash]
	p.mu.Unlock()
	if !answered {
		err = p.cfg.Source.Submit(ctx, &blk, finder)
		switch {
		case err == nil:
			p.log.Info("found block submitted", "hash", hash.String(), "finder", finder)
		case work.IsRejected(err):
			p.log.Warn("found block rejected by the source", "hash", hash.String(), "finder", finder, "err", err)
		default:
			p.log.Warn("found block not submitted; will be redelivered", "hash", hash.String(), "finder", finder, "err", err)
			m.NakWithDelay(p.cfg.RetryDelay)
			return
		}
	}
	if p.cfg.RecordPayout == nil {
		p.ack(m, hash)
		return
	}
	p.mu.Lock()
	if p.answered == nil {
		p.answered = make(map[chainmath.Hash]int)
	}
	if _, ok := p.answered[hash]; !ok {
		p.answered[hash] = 0
	}
	stopping := p.stopping
	if !stopping {
		p.records.Add(1)
	}
	p.mu.Unlock()
	if stopping {
		m.NakWithDelay(p.cfg.RetryDelay) // the next leader records it
		return
	}
	// Recorded beside the consumer, so that a ledger that does not answer
	// holds up no other block's submission.
	rec := p.payoutOf(&blk)
	go func() {
		defer p.records.Done()
		err := p.cfg.RecordPayout(ctx, &blk, finder, rec)
		p.mu.Lock()
		failed := p.answered[hash]
		if err != nil {
			p.answered[hash] = failed + 1
		}
		p.mu.Unlock()
		switch {
		case err != nil && failed == 0 && ctx.Err() == nil:
			p.log.Warn("payout of a submitted block not recorded yet; retrying the record, not the submission", "hash", hash.String(), "finder", finder, "err", err)
		case err != nil:
			p.log.Debug("payout of a submitted block still not recorded", "hash", hash.String(), "attempts", failed+1, "err", err)
		case failed > 0:
			p.log.Info("payout of a submitted block recorded after failed attempts", "hash", hash.String(), "failed", failed)
		}
		if err != nil {
			m.NakWithDelay(p.cfg.RetryDelay)
			return
		}
		p.ack(m, hash)
	}()
}

// ack acknowledges the found-block message m of block hash: submitted,
// answered and its payout recorded.
func (p *Publisher) ack(m jetstream.Msg, hash chainmath.Hash) {
	actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.DoubleAck(actx); err != nil {
		// Redelivered later and recorded again (in another term also
		// submitted again): harmless.
		p.log.Warn("acknowledging a found block failed", "hash", hash.String(), "err", err)
		return
	}
	p.mu.Lock()
	delete(p.answered, hash)
	p.mu.Unlock()
}
