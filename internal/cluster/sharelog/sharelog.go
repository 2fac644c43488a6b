// Package sharelog is the share log of a Stratum front-end in a powcoord
// cluster: a coordinator.Ledger whose RecordShare returns once the share
// is stored on the cluster's replicated SHARES stream (see internal/cluster/bus),
// from which the ledger writers (internal/cluster/ledgerd) move it into
// PostgreSQL.
//
// # Batching
//
// RecordShare hands its share to one batcher goroutine. The batcher sends
// a batch when it holds MaxBatch shares (or as many as fit one message
// under the servers' max_payload) or FlushInterval after the first share
// of the batch arrived, whichever comes first; up to Publishers batches
// are in flight at once. A batch is ONE message on
// powcoord.shares.<front-end id> (AppendBatch), so the stream, the
// servers' replication and the ledger writers see one message per batch
// rather than per share. Its Nats-Msg-Id is the front-end id, a random
// per-process token and the batch's sequence number: a publish retried
// after a lost acknowledgement is stored once within the stream's
// duplicate window. Every caller of the batch is answered after the
// stream acknowledged the message (on a 3-server cluster with R3: after a
// quorum of servers stored it), or with the batch's error. An error is
// conservative: a failed batch may be stored even so, and a miner who
// sends the share again puts it in the stream twice; the ledger writers
// store each share once, keyed by its header hash.
//
// A batch that is not acknowledged within PublishTimeout fails, so
// RecordShare returns an error within about PublishTimeout plus
// FlushInterval when no server answers, rather than hanging.
//
// # Found blocks
//
// AddFoundBlock publishes the block on powcoord.blocks.<front-end id>
// (Nats-Msg-Id: the block hash as bus.ShareMsgID spells it) and returns
// after the BLOCKS stream acknowledged it; the cluster's active
// coordinator consumes that stream and submits the block. The front-end
// keeps only a small in-memory record of the blocks it found and of the
// states its own code set (SetFoundBlockState, FoundBlocks): the active
// coordinator owns the final state of every found block, and this record
// is lost when the process exits.
//
// # Encoding
//
// Messages carry a fixed binary layout, documented at AppendShare and
// AppendBlock, about a third the size of the same share in JSON.
package sharelog

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
)

// ErrClosed is returned by the methods of a closed Log.
var ErrClosed = errors.New("sharelog: closed")

// Config says how New builds a Log. Zero fields take the defaults.
type Config struct {
	// Frontend is the front-end's id, the last token of its subjects
	// (powcoord.shares.<id>, powcoord.blocks.<id>): letters, digits, '-'
	// and '_' only. Required.
	Frontend string
	// FlushInterval is the longest a share waits for its batch to fill
	// (default 2 ms).
	FlushInterval time.Duration
	// MaxBatch is the most shares in one batch (default 512); a batch is
	// also cut where its message would pass the servers' max_payload.
	MaxBatch int
	// Publishers is the number of batches in flight at once (default 4).
	Publishers int
	// PublishTimeout bounds the publication of one batch or block,
	// retries included (default 5 s).
	PublishTimeout time.Duration
	// Logger gets the log's events (default slog.Default()).
	Logger *slog.Logger
}

// Stats are counters of a Log since New.
type Stats struct {
	Shares       uint64 // shares acknowledged by the stream
	Batches      uint64 // batches acknowledged
	FailedShares uint64 // shares whose batch failed
	Blocks       uint64 // found blocks acknowledged
}

// Log is a coordinator.Ledger that writes to the cluster's streams. It is
// safe for concurrent use.
type Log struct {
	js             jetstream.JetStream
	cfg            Config
	sharesSubject  string
	blocksSubject  string
	log            *slog.Logger
	reqs           chan shareReq
	batches        chan []shareReq
	batcherDone    chan struct{}
	publishersDone sync.WaitGroup

	mu     sync.RWMutex // guards closed against the send on reqs
	closed bool

	shares, batchCount, failed, blocks atomic.Uint64

	idPrefix string        // "<front-end id>-<random token>-": batch message ids
	seq      atomic.Uint64 // batch sequence
	maxBytes int           // the largest batch message body

	foundMu sync.Mutex
	found   map[chainmath.Hash]*store.FoundBlock
}

type shareReq struct {
	rec  []byte // AppendShare's encoding
	done chan error
}

// New returns a Log publishing through js. It does not create the
// streams: call bus.EnsureStreams first.
func New(js jetstream.JetStream, cfg Config) (*Log, error) {
	if js == nil {
		return nil, errors.New("sharelog: no JetStream connection")
	}
	if err := checkToken(cfg.Frontend); err != nil {
		return nil, fmt.Errorf("sharelog: front-end id %q: %v", cfg.Frontend, err)
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 2 * time.Millisecond
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 512
	}
	if cfg.Publishers == 0 {
		cfg.Publishers = 4
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.FlushInterval < 0:
		return nil, fmt.Errorf("sharelog: flush interval %v is negative", cfg.FlushInterval)
	case cfg.MaxBatch < 1 || cfg.MaxBatch > 65536:
		return nil, fmt.Errorf("sharelog: max batch %d: want 1 to 65536", cfg.MaxBatch)
	case cfg.Publishers < 1 || cfg.Publishers > 64:
		return nil, fmt.Errorf("sharelog: %d publishers: want 1 to 64", cfg.Publishers)
	case cfg.PublishTimeout < 0:
		return nil, fmt.Errorf("sharelog: publish timeout %v is negative", cfg.PublishTimeout)
	}
	l := &Log{
		js:            js,
		cfg:           cfg,
		sharesSubject: bus.SubjectShares + "." + cfg.Frontend,
		blocksSubject: bus.SubjectBlocks + "." + cfg.Frontend,
		log:           cfg.Logger.With("frontend", cfg.Frontend),
		reqs:          make(chan shareReq, cfg.MaxBatch),
		batches:       make(chan []shareReq, cfg.Publishers),
		batcherDone:   make(chan struct{}),
		found:         map[chainmath.Hash]*store.FoundBlock{},
		idPrefix:      cfg.Frontend + "-" + rand.Text()[:10] + "-",
		maxBytes:      1 << 20,
	}
	if mp := js.Conn().MaxPayload(); mp > 0 && int(mp)-bus.Headroom < l.maxBytes {
		l.maxBytes = int(mp) - bus.Headroom
	}
	go l.batcher()
	for range cfg.Publishers {
		l.publishersDone.Add(1)
		go l.publisher()
	}
	return l, nil
}

func checkToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("character %q: want letters, digits, '-' and '_' only", r)
		}
	}
	return nil
}

// SharesSubject is the subject the log publishes shares on.
func (l *Log) SharesSubject() string { return l.sharesSubject }

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{Shares: l.shares.Load(), Batches: l.batchCount.Load(), FailedShares: l.failed.Load(), Blocks: l.blocks.Load()}
}

// server names the server the connection is on, for errors.
func (l *Log) server() string {
	nc := l.js.Conn()
	if u := nc.ConnectedUrlRedacted(); u != "" {
		return u
	}
	return "no server (disconnected from " + strings.Join(nc.Servers(), ", ") + ")"
}

// RecordShare returns nil once sh is stored on the SHARES stream. It
// returns an error when the batch holding sh was not acknowledged within
// PublishTimeout, when ctx ends first, or when the log is closed.
func (l *Log) RecordShare(ctx context.Context, sh ledger.Share) error {
	if sh.Hash == (chainmath.Hash{}) {
		return errors.New("sharelog: share with an all-zero hash")
	}
	req := shareReq{
		rec:  AppendShare(make([]byte, 0, 128), sh),
		done: make(chan error, 1),
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-ctx.Done():
		l.mu.RUnlock()
		return fmt.Errorf("sharelog: share %s: %w", sh.Hash, ctx.Err())
	}
	l.mu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("sharelog: share %s: waiting for the acknowledgement on %s: %w", sh.Hash, l.sharesSubject, ctx.Err())
	}
}

// RecordShareBatch returns nil once every share of shares is stored on
// the SHARES stream: they go out at once as one batch message (several
// when they pass MaxBatch or the servers' max_payload, published
// together), without RecordShare's wait for a batch to fill. An error
// means none of them may be taken as stored (some may be: the ledger
// writer keys shares by their work, so a share sent again is stored
// once). A coordinator's share queue calls it with what its sessions
// handed over meanwhile (coordinator.BatchLedger).
func (l *Log) RecordShareBatch(ctx context.Context, shares []ledger.Share) error {
	if len(shares) == 0 {
		return nil
	}
	l.mu.RLock() // Close waits for batches in flight
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	buf := make([]byte, 0, len(shares)*112)
	ends := make([]int, len(shares))
	for i, sh := range shares {
		if sh.Hash == (chainmath.Hash{}) {
			return fmt.Errorf("sharelog: share %d of %d has an all-zero hash", i, len(shares))
		}
		buf = AppendShare(buf, sh)
		ends[i] = len(buf)
	}
	recs := make([][]byte, len(shares))
	for i, start := 0, 0; i < len(shares); i++ {
		recs[i], start = buf[start:ends[i]:ends[i]], ends[i]
	}
	// Cut into messages.
	var chunks [][][]byte
	for first, size, i := 0, 0, 0; i <= len(recs); i++ {
		if i == len(recs) {
			chunks = append(chunks, recs[first:])
			break
		}
		if i > first && (i-first >= l.cfg.MaxBatch || BatchSize(i-first+1, size+len(recs[i])) > l.maxBytes) {
			chunks = append(chunks, recs[first:i])
			first, size = i, 0
		}
		size += len(recs[i])
	}
	if len(chunks) == 1 {
		return l.publishBatch(ctx, chunks[0])
	}
	errs := make([]error, len(chunks))
	var wg sync.WaitGroup
	for i, c := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.publishBatch(ctx, c)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// publishBatch publishes one batch message of recs and waits for its
// acknowledgement (retries included, within PublishTimeout).
func (l *Log) publishBatch(ctx context.Context, recs [][]byte) error {
	body := AppendBatch(nil, recs)
	id := l.idPrefix + strconv.FormatUint(l.seq.Add(1), 10)
	m := &nats.Msg{Subject: l.sharesSubject, Data: body}
	pctx, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	_, err := bus.PublishMsg(pctx, l.js, m, id)
	cancel()
	if err != nil {
		l.failed.Add(uint64(len(recs)))
		err = fmt.Errorf("sharelog: batch %s of %d shares on %s via %s not acknowledged: %w", id, len(recs), l.sharesSubject, l.server(), err)
		l.log.Warn("share batch not acknowledged", "shares", len(recs), "subject", l.sharesSubject, "err", err)
		return err
	}
	l.shares.Add(uint64(len(recs)))
	l.batchCount.Add(1)
	return nil
}

// batcher cuts the incoming shares into batches.
func (l *Log) batcher() {
	defer close(l.batcherDone)
	defer close(l.batches)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var carry *shareReq // the share that did not fit the previous batch
	for {
		var first shareReq
		if carry != nil {
			first, carry = *carry, nil
		} else {
			r, ok := <-l.reqs
			if !ok {
				return
			}
			first = r
		}
		batch := make([]shareReq, 1, l.cfg.MaxBatch)
		batch[0] = first
		size := len(first.rec)
		timer.Reset(l.cfg.FlushInterval)
		closed := false
	fill:
		for len(batch) < l.cfg.MaxBatch {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					closed = true
					break fill
				}
				if BatchSize(len(batch)+1, size+len(r.rec)) > l.maxBytes {
					carry = &r
					break fill
				}
				batch = append(batch, r)
				size += len(r.rec)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		l.batches <- batch
		if closed {
			return
		}
	}
}

func (l *Log) publisher() {
	defer l.publishersDone.Done()
	recs := make([][]byte, 0, l.cfg.MaxBatch)
	for batch := range l.batches {
		recs = recs[:0]
		for _, r := range batch {
			recs = append(recs, r.rec)
		}
		err := l.publishBatch(context.Background(), recs)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// Close publishes the shares already handed to the log, answers their
// callers, and stops; later calls return ErrClosed. It does not close the
// NATS connection.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.batcherDone
	l.publishersDone.Wait()
	return nil
}

// AddFoundBlock publishes b on the BLOCKS stream and returns once the
// stream acknowledged it (a block already there is acknowledged as a
// duplicate, and that is success too). It also records b as pending in
// the log's in-memory record.
func (l *Log) AddFoundBlock(ctx context.Context, b ledger.Block) error {
	if l.isClosed() {
		return ErrClosed
	}
	if len(b.Raw) < chainmath.HeaderSize {
		return fmt.Errorf("sharelog: found block %s: raw block is %d bytes, shorter than a header", b.Hash, len(b.Raw))
	}
	pctx, cancel := context.WithTimeout(ctx, l.cfg.PublishTimeout)
	defer cancel()
	if _, err := bus.Publish(pctx, l.js, l.blocksSubject, AppendBlock(nil, b), bus.ShareMsgID(b.Hash)); err != nil {
		return fmt.Errorf("sharelog: found block %s at height %d on %s via %s not acknowledged: %w", b.Hash, b.Height, l.blocksSubject, l.server(), err)
	}
	l.blocks.Add(1)
	l.foundMu.Lock()
	defer l.foundMu.Unlock()
	if _, ok := l.found[b.Hash]; !ok {
		b.Raw = slices.Clone(b.Raw)
		l.found[b.Hash] = &store.FoundBlock{Block: b, State: store.FoundPending, UpdatedAt: b.FoundAt}
	}
	return nil
}

func (l *Log) isClosed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.closed
}

// SetFoundBlockState records the outcome of a submission in the log's
// in-memory record only (the active coordinator owns the cluster's
// record). The block must have been added with AddFoundBlock.
func (l *Log) SetFoundBlockState(ctx context.Context, hash chainmath.Hash, state, reason string, at time.Time) error {
	switch state {
	case store.FoundPending, store.FoundAccepted, store.FoundRejected, store.FoundAbandoned, store.FoundOrphaned:
	default:
		return fmt.Errorf("sharelog: found block %s: unknown state %q", hash, state)
	}
	l.foundMu.Lock()
	defer l.foundMu.Unlock()
	f, ok := l.found[hash]
	if !ok {
		return fmt.Errorf("sharelog: found block %s is not recorded", hash)
	}
	if state != store.FoundOrphaned && f.State != store.FoundOrphaned {
		f.Attempts++ // orphaning, or a reorg undoing it, is no submission
	}
	f.State, f.Reason, f.UpdatedAt = state, reason, at
	return nil
}

// FoundBlocks lists the blocks of the in-memory record in state ("" for
// all), oldest first (by FoundAt, then height).
func (l *Log) FoundBlocks(ctx context.Context, state string) ([]store.FoundBlock, error) {
	l.foundMu.Lock()
	defer l.foundMu.Unlock()
	var out []store.FoundBlock
	for _, f := range l.found {
		if state == "" || f.State == state {
			c := *f
			c.Raw = slices.Clone(f.Raw)
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b store.FoundBlock) int {
		if c := a.FoundAt.Compare(b.FoundAt); c != 0 {
			return c
		}
		if c := a.Height - b.Height; c != 0 {
			return int(max(-1, min(1, c)))
		}
		return strings.Compare(a.Hash.String(), b.Hash.String())
	})
	return out, nil
}
