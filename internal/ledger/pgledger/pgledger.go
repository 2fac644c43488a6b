// Package pgledger is the cluster's share ledger and block store in
// PostgreSQL (through pgx/v5).
//
// # Schema
//
// Open creates or upgrades the schema; migrations are numbered, recorded in
// the table pgledger_schema, and run in one transaction under an advisory
// lock, so they are safe to run from several processes at once and again on
// every start.
//
//   - shares: one row per accepted share. The hash column (the share's
//     header hash, 32 bytes) is unique: it names the work the share proves,
//     so a share delivered twice (a redelivery after a crash, a front-end
//     retrying a publish) is stored once. id orders rows by commit (Record
//     holds an advisory lock from its insert to its commit). Besides the
//     primary key and the hash, shares has two cheap indexes (schema
//     version 4): BRIN on time (WorkSince, BestShares since a block) and
//     hash on worker (Shares of one worker). Every index costs each
//     stored share; see docs/ledger.md for which query uses which.
//   - best_shares: each worker's best share of all time (highest achieved
//     difficulty, of equal ones the earliest, then the lowest hash),
//     raised by Record in the transaction of the shares.
//   - payout_blocks, payouts: what each found block pays (RecordPayouts):
//     its PPLNS cutoff (a shares id), window and value, and its outputs.
//   - worker_minutes: the worker history (history.go), one row per worker
//     and minute: accepted shares, their work, the newest one's time,
//     added by Record in the transaction of the shares it counts, and
//     pruned past the retention.
//   - quarantine: what a ledger writer could not store (Quarantine): a
//     share the ledger refuses, or a message that does not decode, kept
//     with the reason for an operator.
//   - blocks: the embedded chain's blocks as the cluster stores them, keyed
//     by (chain, height): two coordinators can never both store a block at
//     one height of one chain. (chain, hash) is unique too.
//
// Column types: hashes and headers are bytea in internal byte order (as
// sha256d produces them, like internal/store); ntime, nonce and version
// are bigint holding the uint32 values; share and block times are
// timestamptz, a block header's time is bigint.
package pgledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/ledger"
)

// MaxBatch is the largest number of shares Record takes in one call.
const MaxBatch = 65536

// Share is the ledger's share (internal/ledger).
type Share = ledger.Share

// Block is the ledger's block (internal/ledger).
type Block = ledger.Block

// ErrHeightTaken is returned (wrapped) by AddBlock when the chain already
// has a block at that height.
var ErrHeightTaken = errors.New("pgledger: height already taken")

// Ledger is an open connection pool to the ledger database. It is safe for
// concurrent use, also by several processes on one database.
type Ledger struct {
	pool *pgxpool.Pool
	url  string // redacted, for errors
	best bestCache
	hist history
}

// Open connects to the PostgreSQL database at dbURL (a postgres:// URL or
// a key=value connection string), checks that it answers, and creates or
// upgrades the schema. Errors name the URL with any password removed.
func Open(ctx context.Context, dbURL string) (*Ledger, error) {
	safe := RedactURL(dbURL)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("pgledger: database URL %s: %s", safe, redactErr(err, dbURL))
	}
	// A batch of thousands of shares is costed above jit_above_cost, and
	// compiling its expressions took more CPU than running them.
	if _, set := cfg.ConnConfig.RuntimeParams["jit"]; !set {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgledger: connecting to %s: %s", safe, redactErr(err, dbURL))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgledger: connecting to %s: %s", safe, redactErr(err, dbURL))
	}
	l := &Ledger{pool: pool, url: safe}
	l.hist.retention.Store(int64(ledger.DefaultHistoryRetention))
	if err := l.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return l, nil
}

// Close closes every connection of the pool.
func (l *Ledger) Close() { l.pool.Close() }

var pwParam = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL returns dbURL with its password, if any, replaced by "xxxxx",
// for logs and errors.
func RedactURL(dbURL string) string {
	if u, err := url.Parse(dbURL); err == nil && u.Scheme != "" {
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	s := pwParam.ReplaceAllString(dbURL, "${1}xxxxx")
	// A URL net/url refused may still carry user:password@.
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
				s = s[:i+3] + rest[:colon] + ":xxxxx" + rest[at:]
			}
		}
	}
	return s
}

// redactErr returns err's text with the password of dbURL removed, in case
// a driver error repeats the connection string.
func redactErr(err error, dbURL string) string {
	msg := err.Error()
	if u, perr := url.Parse(dbURL); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	for _, m := range pwParam.FindAllStringSubmatch(dbURL, -1) {
		if v := strings.Trim(m[2], "'"); v != "" {
			msg = strings.ReplaceAll(msg, v, "xxxxx")
		}
	}
	return msg
}

// migrations are applied in order; entry i brings the schema to version
// i+1. Never edit an applied one: append.
var migrations = []string{
	`CREATE TABLE shares (
		id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		hash        bytea            NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
		time        timestamptz      NOT NULL,
		worker      text             NOT NULL,
		extranonce1 text             NOT NULL,
		job_id      text             NOT NULL,
		extranonce2 text             NOT NULL,
		ntime       bigint           NOT NULL CHECK (ntime BETWEEN 0 AND 4294967295),
		nonce       bigint           NOT NULL CHECK (nonce BETWEEN 0 AND 4294967295),
		version     bigint           NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
		difficulty  double precision NOT NULL,
		achieved    double precision NOT NULL,
		block       boolean          NOT NULL
	);
	CREATE INDEX shares_worker_time ON shares (worker, time);
	CREATE INDEX shares_time ON shares (time);
	CREATE TABLE blocks (
		chain    text        NOT NULL,
		height   bigint      NOT NULL CHECK (height >= 0),
		hash     bytea       NOT NULL CHECK (octet_length(hash) = 32),
		header   bytea       NOT NULL CHECK (octet_length(header) = 80),
		raw      bytea       NOT NULL,
		finder   text        NOT NULL,
		time     bigint      NOT NULL,
		found_at timestamptz NOT NULL,
		PRIMARY KEY (chain, height),
		UNIQUE (chain, hash)
	);`,
	// Best shares (BestShares): a worker's highest shares first.
	`CREATE INDEX shares_worker_achieved ON shares (worker, achieved DESC);`,
	// PPLNS payouts of found blocks (RecordPayouts; docs/payouts.md).
	`CREATE TABLE payout_blocks (
		hash   bytea  PRIMARY KEY CHECK (octet_length(hash) = 32),
		height bigint NOT NULL,
		mode   text   NOT NULL,
		cutoff bigint NOT NULL,
		window_size text NOT NULL,
		value  bigint NOT NULL
	);
	CREATE TABLE payouts (
		hash   bytea   NOT NULL REFERENCES payout_blocks (hash),
		idx    integer NOT NULL,
		script bytea   NOT NULL,
		amount bigint  NOT NULL,
		work   text    NOT NULL,
		fee    boolean NOT NULL,
		label  text    NOT NULL,
		PRIMARY KEY (hash, idx)
	);
	CREATE INDEX payouts_script ON payouts (script);`,
	// Cheaper share inserts (every index costs each stored share a
	// descent and a WAL record): each worker's best share of all time in
	// best_shares, raised by Record, instead of an index on every share
	// row; time ranges (WorkSince, BestShares since a block) through a
	// BRIN index (shares are appended in about time order, so a range of
	// pages summarizes a span of time); shares of one worker (Shares)
	// through a hash index, one small entry per share.
	`DROP INDEX shares_worker_achieved;
	DROP INDEX shares_time;
	DROP INDEX shares_worker_time;
	CREATE INDEX shares_time_brin ON shares USING brin (time) WITH (autosummarize = on);
	CREATE INDEX shares_worker_hash ON shares USING hash (worker);
	CREATE TABLE best_shares (
		worker   text             PRIMARY KEY,
		achieved double precision NOT NULL,
		time     timestamptz      NOT NULL,
		hash     bytea            NOT NULL CHECK (octet_length(hash) = 32)
	);
	INSERT INTO best_shares (worker, achieved, time, hash)
		SELECT DISTINCT ON (worker) worker, achieved, time, hash FROM shares
		ORDER BY worker, achieved DESC, time, hash;`,
	// What the ledger writers could not store (Quarantine).
	`CREATE TABLE quarantine (
		key            bytea       PRIMARY KEY CHECK (octet_length(key) = 32),
		quarantined_at timestamptz NOT NULL DEFAULT now(),
		subject        text        NOT NULL,
		reason         text        NOT NULL,
		worker         bytea,
		data           bytea       NOT NULL
	);`,
	// Worker history (history.go): per worker and minute (Unix seconds
	// of its start), raised by Record in the transaction of the shares;
	// filled from the shares of the default retention span.
	`CREATE TABLE worker_minutes (
		worker   text             NOT NULL,
		minute   bigint           NOT NULL,
		account  text             NOT NULL,
		accepted bigint           NOT NULL,
		rejected bigint           NOT NULL,
		work     double precision NOT NULL,
		last     timestamptz,
		PRIMARY KEY (worker, minute)
	);
	CREATE INDEX worker_minutes_minute ON worker_minutes (minute);
	CREATE INDEX worker_minutes_account ON worker_minutes (account, minute);
	INSERT INTO worker_minutes (worker, minute, account, accepted, rejected, work, last)
		SELECT worker, (floor(extract(epoch FROM time) / 60) * 60)::bigint AS m, split_part(worker, '.', 1),
			count(*), 0, sum(difficulty), max(time)
		FROM shares WHERE time >= now() - interval '8 days' GROUP BY worker, m;`,
	// The PPLNS rules each block was paid under (payout.BlockRules), for
	// its window download (GET /api/blocks/{hash}/shares).
	`ALTER TABLE payout_blocks ADD COLUMN rules text NOT NULL DEFAULT '';`,
}

// recordLock is the advisory lock key every Record transaction holds
// from before its insert until it commits: share ids are then assigned
// in commit order, so the shares with id up to a visible id are all
// committed and a PPLNS cutoff names one exact set (docs/payouts.md).
const recordLock = 0x706f77636f6f7273 // "powcoors"

// migrationLock is the advisory lock key that serializes migrations
// between processes.
const migrationLock = 0x706f77636f6f7264 // "powcoord"

func (l *Ledger) migrate(ctx context.Context) error {
	if err := l.applyMigrations(ctx, len(migrations)); err != nil {
		return fmt.Errorf("pgledger: schema migration in %s: %w", l.url, err)
	}
	return nil
}

// applyMigrations brings the schema up to version upto (tests migrate
// to older versions) in one transaction, under an advisory lock that
// another process migrating the same database waits for (and then finds
// nothing left to do).
func (l *Ledger) applyMigrations(ctx context.Context, upto int) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS pgledger_schema (
		version    integer     PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("creating table pgledger_schema: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pgledger_schema`).Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("the database is at schema version %d, newer than this program's %d", have, len(migrations))
	}
	for v := have + 1; v <= upto; v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgledger_schema (version) VALUES ($1)`, v); err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
	}
	return tx.Commit(ctx)
}

// SchemaVersion returns the schema version the database is at.
func (l *Ledger) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := l.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pgledger_schema`).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgledger: reading the schema version in %s: %w", l.url, err)
	}
	return v, nil
}

func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", field, s)
	}
	return nil
}

// CheckShare reports what makes sh unfit for the ledger (Record refuses a
// batch holding such a share), nil when nothing does.
func CheckShare(sh *Share) error { return checkShare(sh) }

func checkShare(sh *Share) error {
	if sh.Hash == (chainmath.Hash{}) {
		return errors.New("hash is all zeros")
	}
	if sh.Time.IsZero() {
		return errors.New("time is not set")
	}
	if err := ledger.CheckWorker(sh.Worker); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"extranonce1", sh.Extranonce1}, {"job id", sh.JobID}, {"extranonce2", sh.Extranonce2},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	if !(sh.Difficulty > 0) || math.IsInf(sh.Difficulty, 0) {
		return fmt.Errorf("difficulty %v: want a finite number > 0", sh.Difficulty)
	}
	if !(sh.Achieved >= 0) || math.IsInf(sh.Achieved, 0) {
		return fmt.Errorf("achieved difficulty %v: want a finite number >= 0", sh.Achieved)
	}
	return nil
}

// Record stores shares in one transaction and returns how many of them
// were new. A share whose hash is already stored (or appears twice in the
// batch) is skipped, so recording a batch again stores nothing twice.
// Nothing is stored when any share is invalid or the transaction fails.
func (l *Ledger) Record(ctx context.Context, shares []Share) (stored int, err error) {
	if len(shares) == 0 {
		return 0, nil
	}
	if len(shares) > MaxBatch {
		return 0, fmt.Errorf("pgledger: batch of %d shares: at most %d at once", len(shares), MaxBatch)
	}
	for i := range shares {
		if err := checkShare(&shares[i]); err != nil {
			return 0, fmt.Errorf("pgledger: share %d of %d (hash %s): %v", i, len(shares), shares[i].Hash, err)
		}
	}
	// Insert in hash order (a batch's duplicates are then adjacent, and
	// only the first of each is sent).
	order := make([]int, len(shares))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(shares[a].Hash[:], shares[b].Hash[:]) })
	order = slices.CompactFunc(order, func(a, b int) bool { return shares[a].Hash == shares[b].Hash })
	n := len(order)
	var (
		hashes               = make([][]byte, n)
		times                = make([]time.Time, n)
		workers, en1s, jobs  = make([]string, n), make([]string, n), make([]string, n)
		en2s                 = make([]string, n)
		ntimes, nonces, vers = make([]int64, n), make([]int64, n), make([]int64, n)
		diffs, achieved      = make([]float64, n), make([]float64, n)
		blocks               = make([]bool, n)
	)
	for j, i := range order {
		sh := &shares[i]
		hashes[j] = sh.Hash[:]
		times[j] = sh.Time
		workers[j], en1s[j], jobs[j], en2s[j] = sh.Worker, sh.Extranonce1, sh.JobID, sh.Extranonce2
		ntimes[j], nonces[j], vers[j] = int64(sh.NTime), int64(sh.Nonce), int64(sh.Version)
		diffs[j], achieved[j] = sh.Difficulty, sh.Achieved
		blocks[j] = sh.Block
	}
	bests := l.best.candidates(shares, order)
	// One round trip, one implicit transaction (the statements of a batch
	// run in one and it commits at its end): the advisory lock first, held
	// to the commit (see recordLock), then the shares, then best_shares.
	// Under the lock no other Record inserts, and the insert's snapshot,
	// taken after the lock was granted, sees every share committed before:
	// NOT EXISTS skips exactly the stored ones, without the speculative
	// insertion ON CONFLICT costs per row (the unique index still refuses
	// a duplicate should anything insert without the lock). WITH
	// ORDINALITY keeps the hash order through the insert. OFFSET 0 keeps
	// the NOT EXISTS a probe of the hash index per share: as a join, a
	// batch of thousands of shares gets a hash anti join over a
	// sequential scan of the whole table.
	var b pgx.Batch
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(recordLock))
	// The shares inserted (RETURNING: only the new ones) are rolled up
	// into the worker history in the same statement.
	ins := b.Queue(`WITH ins AS (INSERT INTO shares
		(hash, time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, block)
		SELECT h, t, w, e1, j, e2, nt, no, v, d, a, b FROM unnest(
			$1::bytea[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::bigint[], $8::bigint[], $9::bigint[], $10::float8[], $11::float8[], $12::bool[])
			WITH ORDINALITY AS u(h, t, w, e1, j, e2, nt, no, v, d, a, b, ord)
		WHERE NOT EXISTS (SELECT 1 FROM shares s WHERE s.hash = u.h OFFSET 0)
		ORDER BY ord
		RETURNING worker, time, difficulty),
	up AS (`+upsertMinutes+`)
	SELECT count(*) FROM ins`,
		hashes, times, workers, en1s, jobs, en2s, ntimes, nonces, vers, diffs, achieved, blocks)
	var stored64 int64
	ins.QueryRow(func(row pgx.Row) error { return row.Scan(&stored64) })
	if len(bests.workers) > 0 {
		b.Queue(upsertBest, bests.workers, bests.achieved, bests.times, bests.hashes)
	}
	if err := l.pool.SendBatch(ctx, &b).Close(); err != nil {
		return 0, fmt.Errorf("pgledger: recording %d shares in %s: %w", len(shares), l.url, err)
	}
	l.best.committed(bests)
	l.pruneHistory(ctx)
	return int(stored64), nil
}

// ShareCount returns how many shares are stored.
func (l *Ledger) ShareCount(ctx context.Context) (int64, error) {
	var n int64
	if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM shares`).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgledger: counting shares in %s: %w", l.url, err)
	}
	return n, nil
}

// Shares returns the stored shares of worker ("" for every worker) in the
// order they were stored, at most limit of them (limit <= 0: all).
func (l *Ledger) Shares(ctx context.Context, worker string, limit int) ([]Share, error) {
	// Two queries, not one with "$1 = '' OR worker = $1": a cached
	// generic plan of that could not use the index on worker.
	q := `SELECT hash, time, worker, extranonce1, job_id, extranonce2, ntime, nonce, version, difficulty, achieved, block
		FROM shares`
	var args []any
	if worker != "" {
		q += ` WHERE worker = $1`
		args = append(args, worker)
	}
	q += ` ORDER BY id`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT $%d`, len(args)+1)
		args = append(args, limit)
	}
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgledger: reading shares of worker %q in %s: %w", worker, l.url, err)
	}
	defer rows.Close()
	var out []Share
	for rows.Next() {
		var (
			sh                    Share
			hash                  []byte
			ntime, nonce, version int64
		)
		if err := rows.Scan(&hash, &sh.Time, &sh.Worker, &sh.Extranonce1, &sh.JobID, &sh.Extranonce2,
			&ntime, &nonce, &version, &sh.Difficulty, &sh.Achieved, &sh.Block); err != nil {
			return nil, fmt.Errorf("pgledger: reading shares of worker %q: %w", worker, err)
		}
		if len(hash) != len(sh.Hash) {
			return nil, fmt.Errorf("pgledger: stored share hash is %d bytes, want 32", len(hash))
		}
		copy(sh.Hash[:], hash)
		sh.NTime, sh.Nonce, sh.Version = uint32(ntime), uint32(nonce), uint32(version)
		out = append(out, sh)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: reading shares of worker %q: %w", worker, err)
	}
	return out, nil
}

// WorkSince returns, for every worker with a share whose time is at or
// after since, the sum of those shares' difficulties (the work they
// prove, in units of difficulty-1 shares).
func (l *Ledger) WorkSince(ctx context.Context, since time.Time) (map[string]float64, error) {
	rows, err := l.pool.Query(ctx, `SELECT worker, sum(difficulty) FROM shares WHERE time >= $1 GROUP BY worker`, since)
	if err != nil {
		return nil, fmt.Errorf("pgledger: summing work since %s in %s: %w", since.Format(time.RFC3339Nano), l.url, err)
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var (
			w string
			d float64
		)
		if err := rows.Scan(&w, &d); err != nil {
			return nil, fmt.Errorf("pgledger: summing work since %s: %w", since.Format(time.RFC3339Nano), err)
		}
		out[w] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: summing work since %s: %w", since.Format(time.RFC3339Nano), err)
	}
	return out, nil
}

// AddBlock stores b as the block at b.Height of chain. When the chain
// already has a block at that height the error wraps ErrHeightTaken and
// names the stored block; storing the same block again is that error too.
func (l *Ledger) AddBlock(ctx context.Context, chain string, b Block) error {
	if chain == "" {
		return fmt.Errorf("pgledger: block %s at height %d: empty chain name", b.Hash, b.Height)
	}
	if err := checkText("chain name", chain); err != nil {
		return fmt.Errorf("pgledger: block %s at height %d: %v", b.Hash, b.Height, err)
	}
	if err := checkText("finder", b.Finder); err != nil {
		return fmt.Errorf("pgledger: block %s at height %d: %v", b.Hash, b.Height, err)
	}
	if b.Height < 0 {
		return fmt.Errorf("pgledger: block %s: height %d is negative", b.Hash, b.Height)
	}
	if len(b.Raw) < chainmath.HeaderSize {
		return fmt.Errorf("pgledger: block %s at height %d: raw block is %d bytes, shorter than a header", b.Hash, b.Height, len(b.Raw))
	}
	found := b.FoundAt
	if found.IsZero() {
		found = time.Now()
	}
	tag, err := l.pool.Exec(ctx, `INSERT INTO blocks (chain, height, hash, header, raw, finder, time, found_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		chain, b.Height, b.Hash[:], b.Header[:], b.Raw, b.Finder, int64(b.Time), found)
	if err != nil {
		return fmt.Errorf("pgledger: storing block %s at height %d of chain %q in %s: %w", b.Hash, b.Height, chain, l.url, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Conflict on the height or on the hash: say which block is there.
	var (
		height int64
		hash   []byte
	)
	err = l.pool.QueryRow(ctx, `SELECT height, hash FROM blocks WHERE chain = $1 AND (height = $2 OR hash = $3) ORDER BY height = $2 DESC LIMIT 1`,
		chain, b.Height, b.Hash[:]).Scan(&height, &hash)
	if err != nil {
		return fmt.Errorf("pgledger: block %s at height %d of chain %q: %w (and reading the stored one failed: %v)", b.Hash, b.Height, chain, ErrHeightTaken, err)
	}
	var have chainmath.Hash
	copy(have[:], hash)
	if height == b.Height {
		return fmt.Errorf("pgledger: block %s at height %d of chain %q: %w by block %s", b.Hash, b.Height, chain, ErrHeightTaken, have)
	}
	return fmt.Errorf("pgledger: block %s at height %d of chain %q: already stored at height %d: %w", b.Hash, b.Height, chain, height, ErrHeightTaken)
}

// Blocks returns chain's blocks with height >= fromHeight, lowest first,
// at most limit of them (limit <= 0: all).
func (l *Ledger) Blocks(ctx context.Context, chain string, fromHeight int64, limit int) ([]Block, error) {
	q := `SELECT height, hash, header, raw, finder, time, found_at FROM blocks
		WHERE chain = $1 AND height >= $2 ORDER BY height`
	args := []any{chain, fromHeight}
	if limit > 0 {
		q += ` LIMIT $3`
		args = append(args, limit)
	}
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pgledger: reading blocks of chain %q from height %d in %s: %w", chain, fromHeight, l.url, err)
	}
	defer rows.Close()
	var out []Block
	for rows.Next() {
		var (
			b            Block
			hash, header []byte
			tm           int64
		)
		if err := rows.Scan(&b.Height, &hash, &header, &b.Raw, &b.Finder, &tm, &b.FoundAt); err != nil {
			return nil, fmt.Errorf("pgledger: reading blocks of chain %q: %w", chain, err)
		}
		if len(hash) != len(b.Hash) || len(header) != len(b.Header) {
			return nil, fmt.Errorf("pgledger: block at height %d of chain %q: stored hash is %d bytes and header %d bytes", b.Height, chain, len(hash), len(header))
		}
		copy(b.Hash[:], hash)
		copy(b.Header[:], header)
		b.Time = uint32(tm)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgledger: reading blocks of chain %q: %w", chain, err)
	}
	return out, nil
}

// Tip returns the highest stored block of chain; ok is false when the
// chain has none.
func (l *Ledger) Tip(ctx context.Context, chain string) (b Block, ok bool, err error) {
	var h int64
	err = l.pool.QueryRow(ctx, `SELECT coalesce(max(height), -1) FROM blocks WHERE chain = $1`, chain).Scan(&h)
	if err != nil {
		return Block{}, false, fmt.Errorf("pgledger: reading the tip of chain %q in %s: %w", chain, l.url, err)
	}
	if h < 0 {
		return Block{}, false, nil
	}
	bs, err := l.Blocks(ctx, chain, h, 1)
	if err != nil {
		return Block{}, false, err
	}
	if len(bs) == 0 {
		return Block{}, false, fmt.Errorf("pgledger: tip of chain %q at height %d vanished while reading it", chain, h)
	}
	return bs[0], true, nil
}

// BlockCount returns how many blocks chain has stored.
func (l *Ledger) BlockCount(ctx context.Context, chain string) (int64, error) {
	var n int64
	if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM blocks WHERE chain = $1`, chain).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgledger: counting blocks of chain %q in %s: %w", chain, l.url, err)
	}
	return n, nil
}
