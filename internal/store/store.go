// Package store keeps the coordinator's durable state in one SQLite file:
// the blocks the pool found (with their full serialization) and the share
// ledger.
//
// The database runs in WAL mode with synchronous=FULL, so a write that has
// returned is on disk and survives a crash or power loss. Writes go through
// a single connection; reads use a separate pool, which WAL lets proceed
// while a write is in progress.
//
// # Group commit
//
// Each committed SQLite transaction costs at least one fsync, which bounds a
// naive "one transaction per share" ledger to a few hundred shares per second
// on ordinary disks. RecordShare therefore does not write by itself: it
// hands its share to a single writer goroutine over a buffered channel and
// waits for the outcome. The writer takes the first pending share, then
// everything else already queued (up to MaxBatch shares), packs them into
// one "share segment" row (see segment.go: one row per batch instead of one
// per share, which takes SQLite's per-row cost off the hot path), commits
// (one fsync) and only then answers every caller of that batch. While the writer is busy committing, new shares pile up in
// the queue and become the next batch, so a batch closes exactly when the
// writer is free: under light load each share commits alone with no added
// latency, and under heavy load the fsync cost is shared by up to MaxBatch
// callers, so throughput grows with concurrency. A caller is only told
// "recorded" after the commit that contains its share has returned. Close
// stops accepting shares, lets the writer commit everything already queued,
// and then closes the database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// MaxBatch caps how many shares the writer commits in one transaction.
const MaxBatch = 4096

// insertSegment stores one committed batch of shares (segment.go).
const insertSegment = `INSERT INTO share_segments (count, data, seq_end) VALUES (?, ?, ?)`

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("store: closed")

const schema = `
CREATE TABLE IF NOT EXISTS blocks (
	id       INTEGER PRIMARY KEY,
	height   INTEGER NOT NULL,
	hash     BLOB    NOT NULL UNIQUE,
	header   BLOB    NOT NULL,
	raw      BLOB    NOT NULL,
	finder   TEXT    NOT NULL,
	time     INTEGER NOT NULL,
	found_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_height ON blocks(height, id);
CREATE TABLE IF NOT EXISTS shares (
	id          INTEGER PRIMARY KEY,
	time        INTEGER NOT NULL,
	worker      TEXT    NOT NULL,
	extranonce1 TEXT    NOT NULL,
	job_id      TEXT    NOT NULL,
	extranonce2 TEXT    NOT NULL,
	ntime       INTEGER NOT NULL,
	nonce       INTEGER NOT NULL,
	version     INTEGER NOT NULL,
	difficulty  REAL    NOT NULL,
	achieved    REAL    NOT NULL,
	hash        BLOB    NOT NULL,
	block       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS shares_worker ON shares(worker, id);
CREATE TABLE IF NOT EXISTS share_segments (
	id    INTEGER PRIMARY KEY,
	count INTEGER NOT NULL,
	data  BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`

// Block is the ledger's block (internal/ledger): the store is one of its
// drivers and has no type of its own.
type Block = ledger.Block

// Share is the ledger's share (internal/ledger).
type Share = ledger.Share

type shareReq struct {
	share Share
	many  []Share // RecordShares: these instead of share
	done  chan error
	// wake: no share, only a wake-up of the writer to commit waiting
	// reject counts (CountReject).
	wake bool
}

// Store is an open SQLite database. It is safe for concurrent use.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: every write goes through it
	r    *sql.DB // readers

	mu     sync.RWMutex // guards closed against the send on reqs
	closed bool
	reqs   chan shareReq
	wdone  chan struct{}
	total  int64 // shares in the ledger; only the writer changes it after Open

	retention atomic.Int64  // worker history retention (SetHistoryRetention)
	rejMu     sync.Mutex    // guards rejects
	rejects   ledger.Rollup // reject counts waiting for the next commit
	// wakePending: a wake-up for the rejects is queued (CountReject).
	wakePending atomic.Bool

	bestMu    sync.Mutex // guards best and bestFloor; never held across a share commit
	best      map[bestKey]BestShare
	bestFloor map[string]float64 // newBests' scratch: per worker, the least record to beat
	bestHook  func(BestShare, float64)

	// The writer goroutine's prepared statements and scratch.
	insSegment *sql.Stmt
	insMinute  *sql.Stmt
	rollup     ledger.Rollup
	pruned     time.Time   // the last pruneHistory
	upserts    []*sql.Stmt // [i]: the upsert of 1<<i best-share records
	bestArgs   []any
}

// Open opens (creating if needed) the database file at path and its schema,
// and starts the share writer.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("store: database path %q: must be a plain file name without '?', '#' or a file: prefix", path)
	}
	dsn := path + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	hadHistory, err := hasHistoryTable(w)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %q: look for the worker history: %w", path, err)
	}
	if _, err := w.Exec(schema + foundSchema + payoutSchema + bestSchema + historySchema); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: create schema in %q: %w", path, err)
	}
	var mode string
	if err := w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %q: read journal mode: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("store: %q: journal mode is %q, want wal", path, mode)
	}
	total, err := migrateSeqEnd(w)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %q: number the share segments: %w", path, err)
	}
	if err := migratePayoutRules(w); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %q: add the payout rules column: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %q for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	s := &Store{
		path:  path,
		w:     w,
		r:     r,
		reqs:  make(chan shareReq, MaxBatch),
		wdone: make(chan struct{}),
		total: total,
	}
	s.retention.Store(int64(ledger.DefaultHistoryRetention))
	if err := s.loadBest(); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store: %q: %w", path, err)
	}
	if s.insSegment, err = w.Prepare(insertSegment); err == nil {
		if s.insMinute, err = w.Prepare(upsertMinute); err == nil {
			err = s.prepareUpserts()
		}
	}
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store: %q: prepare statements: %w", path, err)
	}
	if !hadHistory {
		if err := s.backfillHistory(); err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("store: %q: %w", path, err)
		}
	}
	go s.writer()
	return s, nil
}

// Path returns the database file name the store was opened with.
func (s *Store) Path() string { return s.path }

// Close flushes every share already handed to RecordShare, stops the writer
// and closes the database. Calls after the first return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.wdone
	errs := []error{s.insSegment.Close(), s.insMinute.Close()}
	for _, st := range s.upserts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, s.r.Close(), s.w.Close())...)
}

// AddBlock stores b durably: when it returns nil the block is on disk. A
// block whose hash is already stored is an error.
func (s *Store) AddBlock(ctx context.Context, b Block) error {
	if s.isClosed() {
		return ErrClosed
	}
	if len(b.Raw) < chainmath.HeaderSize {
		return fmt.Errorf("store: block %s: raw block is %d bytes, shorter than a header", b.Hash, len(b.Raw))
	}
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO blocks (height, hash, header, raw, finder, time, found_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		b.Height, b.Hash[:], b.Header[:], b.Raw, b.Finder, int64(b.Time), b.FoundAt.UnixNano())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return fmt.Errorf("store: block %s at height %d is already stored", b.Hash, b.Height)
		}
		return fmt.Errorf("store: add block %s at height %d: %w", b.Hash, b.Height, err)
	}
	return nil
}

const blockCols = `height, hash, header, raw, finder, time, found_at`

func scanBlocks(rows *sql.Rows) ([]Block, error) {
	defer rows.Close()
	var out []Block
	for rows.Next() {
		b, err := scanBlock(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read blocks: %w", err)
	}
	return out, nil
}

// scanBlock reads the blockCols of one row, then extra columns into extra.
func scanBlock(rows *sql.Rows, extra ...any) (Block, error) {
	var (
		b                 Block
		hash, header, raw []byte
		tm, found         int64
	)
	if err := rows.Scan(append([]any{&b.Height, &hash, &header, &raw, &b.Finder, &tm, &found}, extra...)...); err != nil {
		return Block{}, fmt.Errorf("store: read block: %w", err)
	}
	if len(hash) != len(b.Hash) || len(header) != len(b.Header) {
		return Block{}, fmt.Errorf("store: block at height %d: stored hash is %d bytes and header %d bytes", b.Height, len(hash), len(header))
	}
	copy(b.Hash[:], hash)
	copy(b.Header[:], header)
	b.Raw = raw
	b.Time = uint32(tm)
	b.FoundAt = time.Unix(0, found)
	return b, nil
}

// Blocks returns the stored blocks with height >= fromHeight, oldest first,
// at most limit of them (limit <= 0: all).
func (s *Store) Blocks(ctx context.Context, fromHeight int64, limit int) ([]Block, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT `+blockCols+` FROM blocks WHERE height >= ? ORDER BY height, id LIMIT ?`, fromHeight, limit)
	if err != nil {
		return nil, fmt.Errorf("store: query blocks from height %d: %w", fromHeight, err)
	}
	return scanBlocks(rows)
}

// LastBlocks returns the newest n blocks, oldest first.
func (s *Store) LastBlocks(ctx context.Context, n int) ([]Block, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if n <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT `+blockCols+` FROM blocks ORDER BY height DESC, id DESC LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("store: query last %d blocks: %w", n, err)
	}
	out, err := scanBlocks(rows)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// BlockCount returns how many blocks are stored.
func (s *Store) BlockCount(ctx context.Context) (int64, error) {
	return s.count(ctx, "blocks")
}

// ShareCount returns how many shares are in the ledger.
func (s *Store) ShareCount(ctx context.Context) (int64, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	var n int64
	if err := s.r.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM shares) + (SELECT COALESCE(SUM(count), 0) FROM share_segments)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count shares: %w", err)
	}
	return n, nil
}

func (s *Store) count(ctx context.Context, table string) (int64, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count %s: %w", table, err)
	}
	return n, nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// RecordShare adds sh to the ledger and returns once the transaction holding
// it has committed (see the package doc for how concurrent calls share one
// commit). If ctx ends first, RecordShare returns ctx's error; the share may
// still be committed afterwards.
func (s *Store) RecordShare(ctx context.Context, sh Share) error {
	return s.submit(ctx, shareReq{share: sh, done: make(chan error, 1)})
}

// RecordShares makes every share of shares durable in one request: the
// writer commits them together with whatever else is waiting (a batch may
// exceed MaxBatch by up to len(shares)). It returns nil once all of them
// are durable; on an error none of them is. A caller that gathers shares
// itself (the coordinator does) pays one hand-off per batch instead of
// one per share.
func (s *Store) RecordShares(ctx context.Context, shares []Share) error {
	if len(shares) == 0 {
		return nil
	}
	return s.submit(ctx, shareReq{many: shares, done: make(chan error, 1)})
}

// submit hands req to the writer and waits for its commit.
func (s *Store) submit(ctx context.Context, req shareReq) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *shareReq) count() int {
	if r.many != nil {
		return len(r.many)
	}
	if r.wake {
		return 0
	}
	return 1
}

// writer is the single goroutine that commits shares in batches.
func (s *Store) writer() {
	defer close(s.wdone)
	batch := make([]shareReq, 0, MaxBatch)
	var enc segmentEncoder
	for first := range s.reqs {
		batch = append(batch[:0], first)
		n := first.count()
	fill:
		for n < MaxBatch && len(batch) < MaxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
				n += r.count()
			default:
				break fill
			}
		}
		err := s.commitShares(&enc, batch)
		for i := range batch {
			if !batch[i].wake {
				batch[i].done <- err
			}
			batch[i] = shareReq{}
		}
		s.pruneHistory(time.Now())
	}
	// Reject counts that arrived after the last wake-up.
	s.commitShares(&enc, nil)
}

func (s *Store) commitShares(enc *segmentEncoder, batch []shareReq) error {
	enc.reset()
	s.rollup.Reset()
	for i := range batch {
		if batch[i].many != nil {
			for k := range batch[i].many {
				enc.add(&batch[i].many[k])
				s.rollup.Share(&batch[i].many[k])
			}
			continue
		}
		if batch[i].wake {
			continue
		}
		enc.add(&batch[i].share)
		s.rollup.Share(&batch[i].share)
	}
	s.takeRejects(&s.rollup)
	if enc.n == 0 && s.rollup.Len() == 0 {
		return nil
	}
	// The writer must finish what it accepted even while Close waits, so
	// it does not take a caller's context. One transaction: one commit,
	// one fsync, for the segment, the batch's worker history and (rare
	// once a ledger has some history) a new best share.
	bests := s.newBests(batch)
	seqEnd := s.total + int64(enc.n)
	fail := func(err error) error {
		s.putBackRejects(&s.rollup)
		return err
	}
	tx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		return fail(fmt.Errorf("store: commit share batch of %d: %w", len(batch), err))
	}
	if enc.n > 0 {
		if _, err := tx.Stmt(s.insSegment).Exec(enc.n, enc.bytes(), seqEnd); err != nil {
			tx.Rollback()
			return fail(fmt.Errorf("store: commit share batch of %d: %w", len(batch), err))
		}
	}
	if err := addMinutes(tx.Stmt(s.insMinute), s.rollup.Rows()); err != nil {
		tx.Rollback()
		return fail(err)
	}
	if len(bests) > 0 {
		if err := s.upsertBest(tx, bests); err != nil {
			tx.Rollback()
			return fail(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(fmt.Errorf("store: commit share batch of %d: %w", len(batch), err))
	}
	s.total = seqEnd
	if len(bests) > 0 {
		s.applyBest(bests)
	}
	return nil
}

// Shares returns the ledger's shares of worker ("" for every worker), in
// the order they were recorded. Shares are stored in packed batches, so
// asking for one worker still reads the whole ledger.
func (s *Store) Shares(ctx context.Context, worker string) ([]Share, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	// One read transaction, so that the legacy rows and the segments are
	// one snapshot.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: read shares of %q: %w", worker, err)
	}
	defer tx.Rollback()
	out, err := legacyShares(ctx, tx, worker)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, count, data FROM share_segments ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: query share segments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, count int64
			data      []byte
		)
		if err := rows.Scan(&id, &count, &data); err != nil {
			return nil, fmt.Errorf("store: read share segment: %w", err)
		}
		var n int
		out, n, err = decodeSegment(out, data, worker)
		if err != nil {
			return nil, fmt.Errorf("store: share segment %d: %w", id, err)
		}
		if int64(n) != count {
			return nil, fmt.Errorf("store: share segment %d holds %d shares, its count says %d", id, n, count)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read share segments: %w", err)
	}
	return out, nil
}

// legacyShares reads the one-row-per-share table that ledgers written
// before share segments use; it is read first, since every row in it is
// older than any segment.
func legacyShares(ctx context.Context, tx *sql.Tx, worker string) ([]Share, error) {
	q := `SELECT time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, hash, block FROM shares`
	var args []any
	if worker != "" {
		q += ` WHERE worker = ?`
		args = append(args, worker)
	}
	q += ` ORDER BY id`
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query shares of %q: %w", worker, err)
	}
	defer rows.Close()
	var out []Share
	for rows.Next() {
		var (
			sh                    Share
			tm, ntime, nonce, ver int64
			hash                  []byte
		)
		if err := rows.Scan(&tm, &sh.Worker, &sh.Extranonce1, &sh.JobID, &sh.Extranonce2, &ntime, &nonce, &ver,
			&sh.Difficulty, &sh.Achieved, &hash, &sh.Block); err != nil {
			return nil, fmt.Errorf("store: read share: %w", err)
		}
		if len(hash) != len(sh.Hash) {
			return nil, fmt.Errorf("store: share of %q: stored hash is %d bytes", sh.Worker, len(hash))
		}
		copy(sh.Hash[:], hash)
		sh.Time = time.Unix(0, tm)
		sh.NTime, sh.Nonce, sh.Version = uint32(ntime), uint32(nonce), uint32(ver)
		out = append(out, sh)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read shares: %w", err)
	}
	return out, nil
}

// SetMeta durably stores value under key in a small key/value table (for
// settings that must stay fixed for the life of the database, such as the
// embedded chain's parameters), replacing any earlier value.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if s.isClosed() {
		return ErrClosed
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("store: set meta %q: %w", key, err)
	}
	return nil
}

// Meta returns the value stored under key; ok is false when there is none.
func (s *Store) Meta(ctx context.Context, key string) (value string, ok bool, err error) {
	if s.isClosed() {
		return "", false, ErrClosed
	}
	err = s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: read meta %q: %w", key, err)
	}
	return value, true, nil
}
