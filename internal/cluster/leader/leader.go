// Package leader runs the active/standby loop of `powcoord coordinator
// --cluster`: every coordinator campaigns for the leader key (bus.Elect);
// the winner opens its work source for its term and runs the jobs
// Publisher (templates out to front-ends, found blocks in to the source)
// until it loses the key; then it closes that source and campaigns again.
//
// With the embedded chain, the source opened for a term is the chain in
// the CHAIN stream (package chainstore), claimed for that term: a deposed
// leader's appends are refused, so two leaders can never fork the chain,
// and each new leader reloads and re-validates the chain the previous one
// left.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/work"
)

// Key is the leader key the coordinators campaign for.
const Key = "coordinator"

// Config configures Run.
type Config struct {
	// Conn is this coordinator's connection to the cluster. Required.
	Conn *nats.Conn
	// ID names this coordinator (unique in the cluster). Required.
	ID string
	// TTL is how long the leader key lives without renewal (3 s): a
	// standby takes over at most about this long after the leader dies.
	// At most the bucket's TTL (bus.StreamsConfig.LeaderTTL).
	TTL time.Duration
	// Open opens the work source for a won term, with its payout rule.
	// It is closed (Close) when the term ends. Required.
	Open func(ctx context.Context, js jetstream.JetStream, term uint64) (work.Source, jobs.Payout, error)
	// Publisher, when set, completes the job publisher's configuration for
	// a term's source before it starts (PPLNS payouts: PublisherConfig's
	// PPLNS and RecordPayout).
	Publisher func(src work.Source, pc *jobs.PublisherConfig) error
	// Logger receives the loop's events (slog.Default()).
	Logger *slog.Logger
}

// State is what a coordinator knows of the leadership.
type State struct {
	Role      string    `json:"role"` // "active" or "standby"
	ID        string    `json:"id"`
	Term      uint64    `json:"term,omitempty"` // while active
	Since     time.Time `json:"since"`          // of the current role
	Terms     int       `json:"terms_won"`
	LastError string    `json:"last_error,omitempty"`
}

// Runner is the loop; its State may be read at any time.
type Runner struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex
	st  State
	cur work.Source // the source of the current term, nil while standby
}

// New checks cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Conn == nil || cfg.ID == "" || cfg.Open == nil {
		return nil, errors.New("leader: Conn, ID and Open are required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{cfg: cfg, log: cfg.Logger, st: State{Role: "standby", ID: cfg.ID, Since: time.Now()}}, nil
}

// State returns a snapshot of the leadership state.
func (r *Runner) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// Source returns the work source of the current term, or nil on a
// standby.
func (r *Runner) Source() work.Source {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *Runner) set(role string, term uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st.Role != role || r.st.Term != term {
		r.st.Since = time.Now()
	}
	r.st.Role, r.st.Term = role, term
	if role == "active" {
		r.st.Terms++
	}
	if err != nil {
		r.st.LastError = err.Error()
	}
}

// Run campaigns, leads and stands by until ctx ends. It returns nil then,
// or an error that makes leading impossible (the streams cannot be made).
func (r *Runner) Run(ctx context.Context) error {
	js, err := bus.New(r.cfg.Conn)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, bus.BucketLeader)
	if err != nil {
		return fmt.Errorf("leader: bucket %s (run EnsureStreams first): %w", bus.BucketLeader, err)
	}
	for ctx.Err() == nil {
		l, err := bus.Elect(ctx, kv, Key, r.cfg.ID, r.cfg.TTL)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("campaign failed; trying again", "id", r.cfg.ID, "err", err)
			r.set("standby", 0, err)
			sleep(ctx, r.cfg.TTL/3)
			continue
		}
		r.lead(ctx, js, l)
	}
	return nil
}

// lead runs one term.
func (r *Runner) lead(ctx context.Context, js jetstream.JetStream, l *bus.Leader) {
	term := l.Term()
	r.log.Info("coordinator is active", "id", r.cfg.ID, "term", term)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Lost():
			cancel()
		case <-tctx.Done():
		}
	}()
	src, payout, err := r.cfg.Open(tctx, js, term)
	if err != nil {
		r.log.Error("opening the work source for the term", "term", term, "err", err)
		r.set("standby", 0, err)
		l.Resign(context.Background())
		sleep(ctx, r.cfg.TTL)
		return
	}
	r.mu.Lock()
	r.cur = src
	r.mu.Unlock()
	r.set("active", term, nil)
	defer func() {
		r.mu.Lock()
		r.cur = nil
		r.mu.Unlock()
		src.Close()
	}()
	pc := jobs.PublisherConfig{Source: src, Conn: r.cfg.Conn, Payout: payout, Leader: r.cfg.ID, Term: term, Logger: r.log}
	if r.cfg.Publisher != nil {
		err = r.cfg.Publisher(src, &pc)
	}
	var p *jobs.Publisher
	if err == nil {
		p, err = jobs.NewPublisher(pc)
	}
	if err != nil {
		r.log.Error("starting the job publisher", "err", err)
		r.set("standby", 0, err)
		l.Resign(context.Background())
		return
	}
	err = p.RunLeader(tctx, l)
	if ctx.Err() != nil {
		rctx, rc := context.WithTimeout(context.Background(), time.Second)
		l.Resign(rctx) // hand over at once on a clean stop
		rc()
		r.set("standby", 0, nil)
		return
	}
	r.log.Warn("coordinator lost the leadership; standing by", "id", r.cfg.ID, "term", term, "err", err)
	r.set("standby", 0, err)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
