package jobs

import (
	"bytes"
	"context"
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
	"github.com/powcoord/powcoord/internal/work"
)

// SourceConfig configures a Source. Zero fields take the defaults.
type SourceConfig struct {
	// Conn is the connection to the cluster. Required.
	Conn *nats.Conn
	// JobSubject (JobSubject) and BlockSubject (BlockSubject) are where
	// jobs come from and found blocks go.
	JobSubject, BlockSubject string
	// StaleAfter is how long the connection to the cluster may be down
	// before Status reports the work stale, so that the coordinator
	// sends its miners to their backup pools (5 s).
	StaleAfter time.Duration
	// Logger receives the source's events (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Source is a work.Source for a Stratum front-end: it follows the jobs the
// active coordinator publishes and publishes found blocks for it to
// submit. It is safe for concurrent use.
type Source struct {
	cfg SourceConfig
	js  jetstream.JetStream
	log *slog.Logger
	cc  jetstream.ConsumeContext

	mu        sync.Mutex
	job       *Job
	received  time.Time
	downSince time.Time // zero while connected
	updates   chan struct{}

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ work.Source = (*Source)(nil)

// NewSource subscribes to the job subject (an ordered consumer starting at
// the last message of the subject) and returns once the first job has
// arrived, or fails when ctx ends first (no coordinator has published
// yet, or the cluster does not answer).
func NewSource(ctx context.Context, cfg SourceConfig) (*Source, error) {
	if cfg.Conn == nil {
		return nil, errors.New("jobs: source: Conn is nil")
	}
	if cfg.JobSubject == "" {
		cfg.JobSubject = JobSubject
	}
	if cfg.BlockSubject == "" {
		cfg.BlockSubject = BlockSubject
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Second
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
	s := &Source{cfg: cfg, js: js, log: cfg.Logger, updates: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	var cons jetstream.Consumer
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cons, err = js.OrderedConsumer(actx, bus.StreamJobs, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{cfg.JobSubject},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("jobs: following %s on stream %s: %w (last: %v)", cfg.JobSubject, bus.StreamJobs, ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	s.cc, err = cons.Consume(s.handleJob, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		s.log.Debug("job consumer", "subject", cfg.JobSubject, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("jobs: following %s on stream %s: %w", cfg.JobSubject, bus.StreamJobs, err)
	}
	select {
	case <-s.updates:
		s.updates <- struct{}{} // leave the signal for the coordinator
	case <-ctx.Done():
		s.cc.Stop()
		return nil, fmt.Errorf("jobs: waiting for the first job on %s (is a coordinator running?): %w", cfg.JobSubject, ctx.Err())
	}
	go s.watchConn()
	return s, nil
}

func (s *Source) handleJob(m jetstream.Msg) {
	data := m.Data()
	if m.Headers().Get(bus.HeaderObject) != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var err error
		data, err = bus.Body(ctx, s.js, bus.BucketTemplates, data, m.Headers())
		cancel()
		if err != nil {
			s.log.Warn("ignoring a job whose body could not be fetched", "subject", m.Subject(), "err", err)
			return
		}
	}
	j, err := DecodeJob(data)
	if err != nil {
		s.log.Warn("ignoring an undecodable job", "subject", m.Subject(), "err", err)
		return
	}
	s.mu.Lock()
	if s.job != nil && j.Term < s.job.Term {
		old := s.job.Term
		s.mu.Unlock()
		s.log.Warn("ignoring a job from a deposed leader", "leader", j.Leader, "term", j.Term, "current_term", old)
		return
	}
	s.job, s.received = j, s.cfg.Now()
	s.mu.Unlock()
	select {
	case s.updates <- struct{}{}:
	default:
	}
}

// watchConn tracks since when the connection has been down.
func (s *Source) watchConn() {
	defer close(s.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		up := s.cfg.Conn.IsConnected()
		s.mu.Lock()
		switch {
		case up:
			s.downSince = time.Time{}
		case s.downSince.IsZero():
			s.downSince = s.cfg.Now()
		}
		s.mu.Unlock()
	}
}

// Job returns the newest job (with its leader, term and payout rule).
func (s *Source) Job() *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.job
}

// Current returns the newest template.
func (s *Source) Current() *work.Template { return s.Job().Template }

// Updates signals each new job.
func (s *Source) Updates() <-chan struct{} { return s.updates }

// PayoutScript applies the payout rule the leader published with the
// newest job.
func (s *Source) PayoutScript(user string) ([]byte, error) {
	return s.Job().Payout.Script(user)
}

// Submit publishes blk on the block subject (Nats-Msg-Id: its hash) and
// returns nil once JetStream has stored it; the active coordinator submits
// it to the chain. A block sent twice is stored once.
func (s *Source) Submit(ctx context.Context, blk *wire.MsgBlock, finder string) error {
	var buf bytes.Buffer
	buf.Grow(blk.SerializeSize())
	if err := blk.Serialize(&buf); err != nil {
		return fmt.Errorf("jobs: serializing found block: %w", err)
	}
	hash := blk.BlockHash()
	m := bus.NewMsg(s.cfg.BlockSubject, buf.Bytes(), hash.String())
	m.Header.Set(HeaderFinder, finder)
	// A block larger than max_payload goes to the powcoord-found object
	// store first; the message names it.
	if err := bus.Externalize(ctx, s.js, bus.BucketFound, m); err != nil {
		return fmt.Errorf("jobs: publishing found block %s: %w", hash, err)
	}
	if _, err := bus.PublishAll(ctx, s.js, []*nats.Msg{m}); err != nil {
		return fmt.Errorf("jobs: publishing found block %s: %w", hash, err)
	}
	return nil
}

// Status reports kind "cluster": healthy while connected to the cluster,
// stale once disconnected for longer than StaleAfter.
func (s *Source) Status() work.Status {
	s.mu.Lock()
	j, received, down := s.job, s.received, s.downSince
	s.mu.Unlock()
	now := s.cfg.Now()
	t := j.Template
	st := work.Status{
		Kind:       "cluster",
		Healthy:    down.IsZero(),
		TipHeight:  t.Height - 1,
		TipHash:    t.PrevHash.String(),
		LastUpdate: received,
		Endpoint:   s.cfg.Conn.ConnectedUrlRedacted(),
		Network:    j.Payout.Network,
	}
	if j.Payout.Kind == PayoutEmbedded {
		st.Network = "embedded"
	}
	if b, err := chainmath.CompactToBig(t.Bits); err == nil {
		st.Difficulty = chainmath.TargetToDifficulty(b)
		st.BlockTarget = fmt.Sprintf("%064x", b)
	}
	if !down.IsZero() {
		st.Error = fmt.Sprintf("disconnected from the cluster for %v", now.Sub(down).Round(time.Millisecond))
		st.Stale = now.Sub(down) >= s.cfg.StaleAfter
	}
	return st
}

// TemplateAge is how old the newest template is (since its source made
// it).
func (s *Source) TemplateAge() time.Duration {
	t := s.Current()
	if t.Created.IsZero() {
		return 0
	}
	return s.cfg.Now().Sub(t.Created)
}

// Close stops following the jobs; it does not close the connection.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.cc.Stop()
		close(s.stop)
		<-s.done
	})
	return nil
}

// Last reads the newest job on JobSubject from the JOBS stream once (its
// body fetched from the template store when it is too large for a
// message): what the front-ends mine now. A standby coordinator's
// /api/status takes the next block's bits from it.
func Last(ctx context.Context, js jetstream.JetStream) (*Job, error) {
	st, err := js.Stream(ctx, bus.StreamJobs)
	if err != nil {
		return nil, fmt.Errorf("jobs: stream %s: %w", bus.StreamJobs, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, JobSubject)
	if err != nil {
		return nil, fmt.Errorf("jobs: last job on %s: %w", JobSubject, err)
	}
	data, err := bus.Body(ctx, js, bus.BucketTemplates, m.Data, m.Header)
	if err != nil {
		return nil, fmt.Errorf("jobs: last job on %s: %w", JobSubject, err)
	}
	return DecodeJob(data)
}
