// Package node mines on a real Bitcoin node (Bitcoin Core or btcd): it
// implements work.Source with getblocktemplate and submitblock over the
// node's JSON-RPC interface, follows the tip with long-polling, a polling
// fallback and optionally ZMQ, and fails over between several nodes.
package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/work"
)

// Defaults for the zero values of Config.
const (
	DefaultPollInterval    = time.Second
	DefaultRefreshInterval = 30 * time.Second
	DefaultMaxStale        = 2 * time.Minute
	// LongPollTimeout bounds one getblocktemplate long-poll; the poll is
	// simply made again when it runs out.
	LongPollTimeout = 5 * time.Minute
)

// Config configures a Source.
type Config struct {
	// URLs are the nodes' RPC addresses, in order of preference
	// ("http://127.0.0.1:8332" or "127.0.0.1:8332"). At least one.
	URLs []string
	// User and Pass are the RPC credentials; CookieFile is Bitcoin Core's
	// .cookie file, used instead when set.
	User, Pass, CookieFile string
	// Network names the chain: mainnet, testnet3, testnet4, signet,
	// regtest or simnet. Addresses are decoded for it and the node must
	// be on it.
	Network string
	// PayoutAddress receives the blocks of workers whose name is not an
	// address of the network. Optional when every worker names its own.
	PayoutAddress string
	// ZMQ is Bitcoin Core's zmqpubhashblock endpoint
	// ("tcp://127.0.0.1:28332"); empty to rely on long-poll and polling.
	ZMQ string
	// PollInterval is how often the best block hash is checked, as a
	// fallback to long-poll (DefaultPollInterval).
	PollInterval time.Duration
	// RefreshInterval is how often a fresh template is fetched to pick up
	// new transactions (DefaultRefreshInterval).
	RefreshInterval time.Duration
	// MaxStale is how long the last template is still offered while no
	// node answers; after it Stale reports true and Status says so
	// (DefaultMaxStale).
	MaxStale time.Duration
	// CallTimeout bounds each ordinary RPC call (DefaultCallTimeout).
	CallTimeout time.Duration
	// Logger receives the source's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
	// Registerer receives the RPC metrics (powcoord_node_rpc_seconds by
	// method, powcoord_node_rpc_errors_total by method and kind); nil
	// keeps them unregistered.
	Registerer prometheus.Registerer
}

// Source is a work.Source backed by one or more Bitcoin nodes.
type Source struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	params  *chaincfg.Params
	payout  []byte // nil without a payout address
	clients []*Client

	updates chan struct{}
	kick    chan struct{} // asks the fetcher for a fresh template
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// submits counts submitblock calls still running (Submit returns at
	// the first node that takes a block; the others finish on their own
	// timeout). Close waits for them.
	submits sync.WaitGroup

	accepted, rejected atomic.Int64

	mu         sync.Mutex
	closed     bool // Close was called: no new submissions
	active     int
	tmpl       *work.Template
	longPollID string
	healthy    bool
	lastErr    string
	downSince  time.Time
	lastFetch  time.Time // when a node last gave a template
}

var (
	_ work.Source      = (*Source)(nil)
	_ work.ChainLookup = (*Source)(nil)
)

// New checks cfg, fetches a first template (trying every node in turn) and
// starts following the chain until ctx ends or Close is called.
func New(ctx context.Context, cfg Config) (*Source, error) {
	params, err := NetworkParams(cfg.Network)
	if err != nil {
		return nil, err
	}
	if len(cfg.URLs) == 0 {
		return nil, errors.New("node: no node URL given")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = DefaultMaxStale
	}
	s := &Source{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     cfg.Now,
		params:  params,
		updates: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		healthy: true,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	observe := rpcMetrics(cfg.Registerer)
	if cfg.PayoutAddress != "" {
		s.payout, err = addressScript(cfg.PayoutAddress, cfg.Network, params)
		if err != nil {
			return nil, fmt.Errorf("payout address: %w", err)
		}
	}
	for _, u := range cfg.URLs {
		c, err := NewClient(ClientConfig{URL: u, User: cfg.User, Pass: cfg.Pass, CookieFile: cfg.CookieFile, Timeout: cfg.CallTimeout})
		if err == nil {
			c.observe = observe
		}
		if err != nil {
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	if err := s.checkNetwork(ctx); err != nil {
		return nil, err
	}
	if err := s.fetch(ctx); err != nil {
		return nil, fmt.Errorf("first block template: %w", err)
	}
	var zmq func(context.Context)
	if cfg.ZMQ != "" {
		zmq, err = s.zmqLoop(cfg.ZMQ)
		if err != nil {
			return nil, err
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	loops := []func(context.Context){s.fetchLoop, s.pollLoop, s.longPollLoop}
	if zmq != nil {
		loops = append(loops, zmq)
	}
	for _, f := range loops {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f(lctx)
		}()
	}
	t := s.Current()
	s.log.Info("mining on node", "endpoint", s.clients[s.active].Endpoint(), "network", cfg.Network,
		"height", t.Height, "prev", t.PrevHash.String(), "bits", fmt.Sprintf("%08x", t.Bits))
	return s, nil
}

// Close stops following the chain and waits for the background work to
// end, including submissions of a block to the nodes that had not answered
// yet (each bounded by CallTimeout). The last template stays available.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.submits.Wait()
	for _, c := range s.clients {
		c.Close()
	}
	return nil
}

// coreChains maps Bitcoin Core's chain names to ours; btcd answers ours.
var coreChains = map[string]string{"main": "mainnet", "test": "testnet3"}

// checkNetwork refuses a node on another chain than cfg.Network. A node
// that cannot tell (no getblockchaininfo) is trusted.
func (s *Source) checkNetwork(ctx context.Context) error {
	var info struct {
		Chain string `json:"chain"`
	}
	raw, idx, err := s.call(ctx, "getblockchaininfo", nil, true)
	if err != nil {
		var rerr *RPCError
		if errors.As(err, &rerr) {
			s.log.Warn("node cannot tell its network", "endpoint", rerr.Endpoint, "err", err)
			return nil
		}
		return err
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return fmt.Errorf("node %s: getblockchaininfo %.200s: %w", s.clients[idx].Endpoint(), raw, err)
	}
	chain := info.Chain
	if c, ok := coreChains[chain]; ok {
		chain = c
	}
	if chain != s.params.Name {
		return fmt.Errorf("node %s is on %q, not on --network %s", s.clients[idx].Endpoint(), info.Chain, s.cfg.Network)
	}
	return nil
}

// call invokes method on the active node, failing over to the others in
// turn when it gets no answer (or, with failoverOnRPC, an error answer).
// It returns the index of the node that answered.
func (s *Source) call(ctx context.Context, method string, params []any, failoverOnRPC bool) (json.RawMessage, int, error) {
	s.mu.Lock()
	start := s.active
	s.mu.Unlock()
	var errs []error
	for i := range s.clients {
		idx := (start + i) % len(s.clients)
		raw, err := s.clients[idx].CallRaw(ctx, method, params)
		if err == nil {
			if idx != start {
				s.mu.Lock()
				s.active = idx
				s.mu.Unlock()
				s.log.Warn("switched node", "from", s.clients[start].Endpoint(), "to", s.clients[idx].Endpoint(), "method", method)
			}
			return raw, idx, nil
		}
		var rerr *RPCError
		if errors.As(err, &rerr) && !failoverOnRPC {
			return nil, idx, err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	err := errors.Join(errs...)
	if ctx.Err() == nil {
		s.markDown(err)
	}
	return nil, -1, err
}

// markDown records that no node answered.
func (s *Source) markDown(err error) {
	s.mu.Lock()
	was := s.healthy && s.tmpl != nil
	s.healthy = false
	s.lastErr = strings.ReplaceAll(err.Error(), "\n", "; ")
	if s.downSince.IsZero() {
		s.downSince = s.now()
	}
	s.mu.Unlock()
	if was {
		s.log.Warn("no node answers; keeping the last template", "err", err, "max_stale", s.cfg.MaxStale)
	}
}

// fetch gets a fresh template and publishes it.
func (s *Source) fetch(ctx context.Context) error {
	raw, idx, err := s.call(ctx, "getblocktemplate", []any{gbtRequest("")}, true)
	if err != nil {
		return err
	}
	t, lpid, err := parseTemplate(raw, s.now())
	if err != nil {
		err = fmt.Errorf("node %s: %w", s.clients[idx].Endpoint(), err)
		s.markDown(err)
		return err
	}
	s.publish(t, lpid)
	return nil
}

// publish makes t the current template and signals Updates.
func (s *Source) publish(t *work.Template, longPollID string) {
	s.mu.Lock()
	old := s.tmpl
	same := old != nil && sameWork(old, t)
	if !same {
		s.tmpl = t
	}
	s.longPollID = longPollID
	s.lastFetch = t.Created
	recovered := !s.healthy && old != nil
	var down time.Duration
	if recovered {
		down = s.now().Sub(s.downSince)
	}
	s.healthy = true
	s.lastErr = ""
	s.downSince = time.Time{}
	endpoint := s.clients[s.active].Endpoint()
	s.mu.Unlock()
	if recovered {
		s.log.Info("node answers again", "endpoint", endpoint, "down_for", down)
	}
	if same {
		// Nothing a miner would do differently: keep the jobs as they
		// are (the coordinator refreshes ntime on its own).
		return
	}
	if old == nil || old.PrevHash != t.PrevHash {
		s.log.Info("new block template", "height", t.Height, "prev", t.PrevHash.String(), "txs", len(t.Txs), "value", t.CoinbaseValue)
	} else {
		s.log.Debug("template refreshed", "height", t.Height, "txs", len(t.Txs), "value", t.CoinbaseValue)
	}
	select {
	case s.updates <- struct{}{}:
	default:
	}
}

// sameWork reports whether two templates give miners the same work apart
// from the time.
func sameWork(a, b *work.Template) bool {
	if a.Height != b.Height || a.PrevHash != b.PrevHash || a.Version != b.Version || a.Bits != b.Bits ||
		a.MinTime != b.MinTime || a.CoinbaseValue != b.CoinbaseValue ||
		!bytes.Equal(a.WitnessCommitment, b.WitnessCommitment) || len(a.Txs) != len(b.Txs) {
		return false
	}
	for i := range a.Txs {
		if a.Txs[i].WTxID != b.Txs[i].WTxID {
			return false
		}
	}
	return true
}

// requestFetch asks the fetcher for a fresh template (coalesced).
func (s *Source) requestFetch() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// fetchLoop fetches a template when asked and every RefreshInterval.
func (s *Source) fetchLoop(ctx context.Context) {
	refresh := time.NewTicker(s.cfg.RefreshInterval)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-refresh.C:
		}
		if err := s.fetch(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("template fetch failed", "err", err)
		}
	}
}

// pollLoop checks the best block hash every PollInterval: a fallback for a
// long-poll that did not return, and how a node that came back is noticed.
func (s *Source) pollLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(s.cfg.PollInterval, 2*time.Second))
		raw, _, err := s.call(cctx, "getbestblockhash", nil, true)
		cancel()
		if err != nil {
			continue
		}
		var best string
		if json.Unmarshal(raw, &best) != nil {
			continue
		}
		s.mu.Lock()
		stale := !s.healthy || s.tmpl.PrevHash.String() != best
		s.mu.Unlock()
		if stale {
			s.requestFetch()
		}
	}
}

// longPollLoop holds a getblocktemplate long-poll open on the active node;
// when it returns, the template changed (normally a new block).
func (s *Source) longPollLoop(ctx context.Context) {
	var id string
	for ctx.Err() == nil {
		s.mu.Lock()
		c := s.clients[s.active]
		if id == "" {
			id = s.longPollID
		}
		s.mu.Unlock()
		if id == "" {
			// The node does not long-poll: polling has to do.
			s.log.Info("node gives no longpollid; relying on polling", "endpoint", c.Endpoint())
			return
		}
		cctx, cancel := context.WithTimeout(ctx, LongPollTimeout)
		raw, err := c.CallRaw(cctx, "getblocktemplate", []any{gbtRequest(id)})
		timedOut := cctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			id = ""
			if !timedOut {
				// The node is down or refused: polling notices when it is
				// back; try again after a pause.
				if !sleepCtx(ctx, s.cfg.PollInterval) {
					return
				}
			}
			continue
		}
		var g struct {
			LongPollID string `json:"longpollid"`
		}
		if json.Unmarshal(raw, &g) != nil || g.LongPollID == id {
			id = ""
		} else {
			id = g.LongPollID
		}
		s.requestFetch()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Current returns the newest template.
func (s *Source) Current() *work.Template {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tmpl
}

// Updates signals (coalesced) whenever Current changed.
func (s *Source) Updates() <-chan struct{} { return s.updates }

// Stale reports whether no node has answered for longer than MaxStale, so
// that the last template should no longer be mined on.
func (s *Source) Stale() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.healthy && s.now().Sub(s.downSince) > s.cfg.MaxStale
}

// PayoutScript returns the script a block found by user pays: the address
// before the first '.' in user when it is one of the network (solo mode),
// otherwise the payout address.
func (s *Source) PayoutScript(user string) ([]byte, error) {
	name := ledger.AccountOf(user)
	script, err := addressScript(name, s.cfg.Network, s.params)
	if err == nil {
		return script, nil
	}
	if s.payout != nil {
		return append([]byte(nil), s.payout...), nil
	}
	return nil, fmt.Errorf("worker %q: %v, and no payout address is configured", user, err)
}

// Counts returns how many Submit calls ended with a block the nodes took
// (not counting answers that the node already had it) and with one they
// rejected.
func (s *Source) Counts() (accepted, rejected int64) {
	return s.accepted.Load(), s.rejected.Load()
}

// Status reports the node's health, tip and the template's age.
func (s *Source) Status() work.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tmpl
	st := work.Status{
		Kind:       "node",
		Healthy:    s.healthy,
		Endpoint:   s.clients[s.active].Endpoint(),
		Network:    s.cfg.Network,
		TipHeight:  t.Height - 1,
		TipHash:    t.PrevHash.String(),
		LastUpdate: s.lastFetch,
		Error:      s.lastErr,
	}
	if d, err := chainmath.CompactToDifficulty(t.Bits); err == nil {
		st.Difficulty = d
	}
	if b, err := chainmath.CompactToBig(t.Bits); err == nil {
		st.BlockTarget = fmt.Sprintf("%064x", b)
	}
	if !s.healthy {
		down := s.now().Sub(s.downSince).Round(time.Second)
		if down > s.cfg.MaxStale {
			st.Stale = true
			st.Error = fmt.Sprintf("no node has answered for %s (over %s): the last template is stale; %s", down, s.cfg.MaxStale, s.lastErr)
		} else {
			st.Error = fmt.Sprintf("no node has answered for %s; mining on the last template: %s", down, s.lastErr)
		}
	}
	return st
}
