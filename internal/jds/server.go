// Package jds is the Job Declarator Server of Stratum V2's Job Declaration
// protocol (specification chapter 6, Full-Template mode): a miner's Job
// Declarator Client allocates a token, declares the template it wants to
// mine (coinbase and transaction ids), provides the transactions the pool
// does not know, and then sets the declared job on its mining channel with
// SetCustomMiningJob (the coordinator claims the job with Server.Claim).
// A PushSolution makes the server assemble and submit the block itself.
//
// docs/stratum-v2.md ("Job declaration") lists every check and the
// choices the specification leaves open.
package jds

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/sv2"
	"github.com/powcoord/powcoord/internal/work"
)

// Refusal codes (DeclareMiningJob.Error and SetCustomMiningJob.Error):
// the reference implementation's invalid-mining-job-token and
// invalid-job-param-value-<field>, the field of the message at fault.
const (
	ErrToken          = "invalid-mining-job-token"
	ErrCoinbasePrefix = "invalid-job-param-value-coinbase-tx-prefix"
	ErrCoinbaseSuffix = "invalid-job-param-value-coinbase-tx-suffix"
	ErrWtxidList      = "invalid-job-param-value-wtxid-list"
	ErrVersion        = "invalid-job-param-value-version"
	ErrTxList         = "invalid-job-param-value-transaction-list"
)

// Refusal is a declaration or custom job refused: the code to send and
// what was wrong.
type Refusal struct {
	Code   string
	Detail string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Detail }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Payout is what the pool requires a declared coinbase to pay.
type Payout struct {
	// Outputs must each be paid at least their amount (Underpaid).
	Outputs []*wire.TxOut
	// Ref is the payout provider's own record of this payout, handed
	// back with the declared job (the coordinator's PPLNS record).
	Ref any
}

// Config configures a Server.
type Config struct {
	// Noise is the pool's V2 server (its authority key); the Job
	// Declaration connections use it with their own frame caps.
	Noise *sv2.Server
	// Source is the pool's work source: its current template is the tip
	// a declaration must build on and the transactions known without
	// asking; a PushSolution's block is submitted to it.
	Source work.Source
	// Check judges a declared block but for proof of work (required;
	// see work.BlockChecker).
	Check work.BlockChecker
	// Payout returns the outputs the coinbase of a job declared by user
	// must pay (the payout plan: solo address or PPLNS split).
	Payout func(user string) (Payout, error)
	// ExtranonceSize is the extranonce space of the pool's extended
	// channels (extranonce prefix and extranonce): a declared coinbase
	// must leave exactly this many bytes between prefix and suffix.
	ExtranonceSize int
	// TokenTTL is how long an allocated or declared token stays usable
	// (default 10 minutes).
	TokenTTL time.Duration
	// MaxConns caps the Job Declaration connections served at once
	// (default 256); one more is closed at once, with a log line.
	MaxConns int
	// HandshakeTimeout bounds the handshake and SetupConnection (default
	// 10 s); IdleTimeout bounds silence after (default 10 min).
	HandshakeTimeout, IdleTimeout time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// maxTokens bounds the tokens held (allocated and declared): past it the
// oldest are dropped.
const maxTokens = 1 << 14

// Per-connection bounds: the transactions (count and bytes) a connection
// has provided that the server keeps for its later declarations, and its
// tokens not yet used (allocated and not declared, or declared and not
// set on a channel): one client cannot push every other client's tokens
// out of the maxTokens the server holds.
const (
	maxKnownTxs     = 1 << 14
	maxKnownBytes   = 8_000_000
	maxLiveTokens   = 16
	defaultMaxConns = 256
)

// Job is a declared job, claimed by the coordinator for SetCustomMiningJob.
type Job struct {
	User     string // the user_identifier of the allocation
	Version  uint32
	Coinbase *Coinbase
	// Template is the block the declaration makes: the pool's tip,
	// bits and time limits, the declared transactions in order, and
	// CoinbaseValue what the coinbase pays.
	Template *work.Template
	Branch   []chainmath.Hash // the coinbase's merkle path
	Payout   Payout
	expires  time.Time
	claimed  bool
}

type allocation struct {
	user    string
	payout  Payout
	expires time.Time
}

// Server is a Job Declarator Server.
type Server struct {
	cfg   Config
	noise *sv2.Server
	log   *slog.Logger

	mu       sync.Mutex
	allocs   map[string]*allocation
	declared map[string]*Job
	order    []string // tokens, oldest first
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Noise == nil:
		return nil, errors.New("jds: no V2 server (authority key)")
	case cfg.Source == nil:
		return nil, errors.New("jds: no work source")
	case cfg.Check == nil:
		return nil, errors.New("jds: no block checker")
	case cfg.Payout == nil:
		return nil, errors.New("jds: no payout rule")
	case cfg.ExtranonceSize < 1 || cfg.ExtranonceSize > sv2.MaxB032:
		return nil, fmt.Errorf("jds: extranonce size %d: must be 1..32", cfg.ExtranonceSize)
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 10 * time.Minute
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, noise: cfg.Noise.WithCaps(sv2.FromJDClient()), log: cfg.Logger,
		allocs: make(map[string]*allocation), declared: make(map[string]*Job)}, nil
}

// Serve accepts Job Declaration connections on ln until ctx ends, then
// closes ln and every connection and waits for them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("jds: accept on %s: %w", ln.Addr(), err)
		}
		mu.Lock()
		full := len(conns) >= s.cfg.MaxConns
		if !full {
			conns[c] = struct{}{}
		}
		mu.Unlock()
		if full {
			s.log.Info("refusing job declarator client: too many connections", "remote", c.RemoteAddr().String(), "max", s.cfg.MaxConns)
			c.Close()
			continue
		}
		wg.Go(func() {
			s.serveConn(ctx, c)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// conn is one Job Declaration connection (its reader goroutine only).
type conn struct {
	s      *Server
	raw    net.Conn
	c      *sv2.Conn
	remote string
	known  map[chainmath.Hash][]byte // transactions it provided, by wtxid
	knownB int                       // their bytes
	tokens [][]byte                  // its tokens, possibly no longer live
	// pending is the declaration waiting for its missing transactions.
	pending *pendingDeclaration
	last    *Job // the last job declared (PushSolution)
}

type pendingDeclaration struct {
	m       *sv2.DeclareMiningJob
	alloc   *allocation
	cb      *Coinbase
	missing []uint16
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	remote := raw.RemoteAddr().String()
	raw.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	c, err := s.noise.Handshake(raw)
	if err != nil {
		s.log.Info("closing job declarator client: handshake failed", "remote", remote, "err", err)
		return
	}
	cn := &conn{s: s, raw: raw, c: c, remote: remote, known: make(map[chainmath.Hash][]byte)}
	_, m, err := c.ReadMessage()
	if err != nil {
		s.log.Info("closing job declarator client: no SetupConnection", "remote", remote, "err", err)
		return
	}
	setup, ok := m.(*sv2.SetupConnection)
	if !ok {
		s.log.Info("closing job declarator client: SetupConnection must come first", "remote", remote, "message", fmt.Sprintf("%T", m))
		return
	}
	var code string
	switch {
	case setup.Protocol != sv2.ProtocolJobDeclaration:
		code = "unsupported-protocol"
	case setup.MinVersion > 2 || setup.MaxVersion < 2:
		code = "protocol-version-mismatch"
	case setup.Flags&sv2.FlagDeclareTxData == 0:
		// Coinbase-only mode never declares: only Full-Template is served.
		code = "unsupported-feature-flags"
	}
	if code != "" {
		s.log.Info("refusing job declarator client: SetupConnection", "remote", remote, "error", code, "protocol", setup.Protocol, "flags", setup.Flags)
		cn.write(&sv2.SetupConnectionError{Flags: setup.Flags &^ sv2.FlagDeclareTxData, ErrorCode: code})
		return
	}
	if !cn.write(&sv2.SetupConnectionSuccess{UsedVersion: 2}) {
		return
	}
	for {
		raw.SetDeadline(s.cfg.Now().Add(s.cfg.IdleTimeout))
		h, m, err := c.ReadMessage()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				s.log.Debug("job declarator client disconnected", "remote", remote)
			} else {
				s.log.Info("closing job declarator client: invalid frame", "remote", remote, "err", err)
			}
			return
		}
		if m == nil {
			continue // an extension's message
		}
		if !cn.handle(ctx, h, m) {
			return
		}
	}
}

func (cn *conn) write(ms ...sv2.Message) bool {
	cn.raw.SetWriteDeadline(cn.s.cfg.Now().Add(10 * time.Second))
	if err := cn.c.WriteMessages(ms...); err != nil {
		cn.s.log.Info("closing job declarator client: write failed", "remote", cn.remote, "err", err)
		return false
	}
	return true
}

// handle answers one message; false closes the connection.
func (cn *conn) handle(ctx context.Context, h sv2.Header, m sv2.Message) bool {
	switch m := m.(type) {
	case *sv2.AllocateMiningJobToken:
		return cn.allocate(m)
	case *sv2.DeclareMiningJob:
		if cn.pending != nil {
			cn.s.log.Info("closing job declarator client: DeclareMiningJob while the last one waits for its transactions", "remote", cn.remote, "request", m.RequestID)
			return false
		}
		return cn.declare(ctx, m)
	case *sv2.ProvideMissingTransactionsSuccess:
		return cn.provided(ctx, m)
	case *sv2.PushSolution:
		cn.push(ctx, m)
		return true
	}
	cn.s.log.Info("closing job declarator client: unexpected message", "remote", cn.remote, "message", sv2.MessageName(h.MsgType))
	return false
}

func newToken() []byte {
	t := make([]byte, 16)
	rand.Read(t)
	return t
}

// remember stores a token, dropping the oldest past maxTokens and every
// expired one at the front. s.mu must be held.
func (s *Server) rememberLocked(tok string, now time.Time) {
	s.order = append(s.order, tok)
	for len(s.order) > 0 {
		t := s.order[0]
		a, d := s.allocs[t], s.declared[t]
		expired := (a == nil || now.After(a.expires)) && (d == nil || now.After(d.expires))
		if len(s.order) <= maxTokens && !expired {
			break
		}
		delete(s.allocs, t)
		delete(s.declared, t)
		s.order = s.order[1:]
	}
}

// liveLocked reports whether tok is allocated and not declared, or
// declared and not claimed, and unexpired. s.mu must be held.
func (s *Server) liveLocked(tok []byte, now time.Time) bool {
	if a := s.allocs[string(tok)]; a != nil && !now.After(a.expires) {
		return true
	}
	j := s.declared[string(tok)]
	return j != nil && !j.claimed && !now.After(j.expires)
}

func (cn *conn) allocate(m *sv2.AllocateMiningJobToken) bool {
	s := cn.s
	p, err := s.cfg.Payout(m.UserIdentifier)
	if err != nil {
		// AllocateMiningJobToken has no error answer: the client sees
		// the connection close.
		s.log.Info("closing job declarator client: no payout for its user", "remote", cn.remote, "user", m.UserIdentifier, "err", err)
		return false
	}
	outs, err := MarshalOutputs(p.Outputs)
	if err != nil {
		s.log.Error("job declaration: required outputs", "user", m.UserIdentifier, "err", err)
		return false
	}
	tok := newToken()
	now := s.cfg.Now()
	s.mu.Lock()
	live := cn.tokens[:0]
	for _, t := range cn.tokens {
		if s.liveLocked(t, now) {
			live = append(live, t)
		}
	}
	cn.tokens = live
	if len(live) >= maxLiveTokens {
		s.mu.Unlock()
		s.log.Info("closing job declarator client: too many unused tokens", "remote", cn.remote, "user", m.UserIdentifier, "unused", len(live))
		return false
	}
	s.allocs[string(tok)] = &allocation{user: m.UserIdentifier, payout: p, expires: now.Add(s.cfg.TokenTTL)}
	s.rememberLocked(string(tok), now)
	cn.tokens = append(cn.tokens, tok)
	s.mu.Unlock()
	s.log.Debug("job declaration token allocated", "remote", cn.remote, "user", m.UserIdentifier, "outputs", len(p.Outputs))
	return cn.write(&sv2.AllocateMiningJobTokenSuccess{RequestID: m.RequestID, MiningJobToken: tok, CoinbaseTxOutputs: outs})
}

// refuseDeclaration answers DeclareMiningJob.Error and logs why.
func (cn *conn) refuseDeclaration(reqID uint32, r *Refusal) bool {
	cn.s.log.Info("job declaration refused", "remote", cn.remote, "request", reqID, "code", r.Code, "reason", r.Detail)
	detail := []byte(r.Detail)
	if len(detail) > sv2.MaxB064K {
		detail = detail[:sv2.MaxB064K]
	}
	return cn.write(&sv2.DeclareMiningJobError{RequestID: reqID, ErrorCode: r.Code, ErrorDetails: detail})
}

func (cn *conn) declare(ctx context.Context, m *sv2.DeclareMiningJob) bool {
	s := cn.s
	now := s.cfg.Now()
	// The token is used up by this declaration, whatever its outcome.
	s.mu.Lock()
	a := s.allocs[string(m.MiningJobToken)]
	delete(s.allocs, string(m.MiningJobToken))
	s.mu.Unlock()
	if a == nil || now.After(a.expires) {
		return cn.refuseDeclaration(m.RequestID, refuse(ErrToken, "token %x was not allocated here, is used up or expired", m.MiningJobToken))
	}
	cb, r := cn.checkCoinbase(m, a)
	if r != nil {
		return cn.refuseDeclaration(m.RequestID, r)
	}
	// Transactions: the pool's template's and those this connection
	// provided are known; the rest are asked for.
	tmpl := s.cfg.Source.Current()
	byWtxid := make(map[chainmath.Hash]bool, len(tmpl.Txs))
	for _, tx := range tmpl.Txs {
		byWtxid[tx.WTxID] = true
	}
	var missing []uint16
	for i, w := range m.WtxidList {
		if h := chainmath.Hash(w); !byWtxid[h] && cn.known[h] == nil {
			missing = append(missing, uint16(i))
		}
	}
	if len(missing) > 0 {
		cn.pending = &pendingDeclaration{m: m, alloc: a, cb: cb, missing: missing}
		s.log.Debug("job declaration: asking for missing transactions", "remote", cn.remote, "request", m.RequestID, "missing", len(missing))
		return cn.write(&sv2.ProvideMissingTransactions{RequestID: m.RequestID, UnknownTxPositionList: missing})
	}
	return cn.finish(ctx, m, a, cb)
}

// checkCoinbase checks the declared coinbase: it parses, leaves the
// channels' extranonce space, is for the block after the pool's tip
// (BIP 34 height) and pays the required outputs.
func (cn *conn) checkCoinbase(m *sv2.DeclareMiningJob, a *allocation) (*Coinbase, *Refusal) {
	cb, err := ParseCoinbase(m.CoinbaseTxPrefix, m.CoinbaseTxSuffix)
	if err != nil {
		return nil, refuse(ErrCoinbasePrefix, "%v", err)
	}
	if cb.ExtranonceSize != cn.s.cfg.ExtranonceSize {
		return nil, refuse(ErrCoinbasePrefix, "the coinbase leaves %d extranonce bytes, the pool's channels use %d", cb.ExtranonceSize, cn.s.cfg.ExtranonceSize)
	}
	if n := len(cb.Tx.TxIn[0].SignatureScript); n < 2 || n > 100 {
		return nil, refuse(ErrCoinbasePrefix, "coinbase scriptSig of %d bytes: consensus allows 2 to 100", n)
	}
	if w := cb.Tx.TxIn[0].Witness; len(w) > 0 && (len(w) != 1 || !bytes.Equal(w[0], make([]byte, 32))) {
		return nil, refuse(ErrCoinbaseSuffix, "the coinbase witness must be one 32-byte zero reserved value")
	}
	tmpl := cn.s.cfg.Source.Current()
	height, err := chainmath.ParseCoinbaseHeight(cb.ScriptPrefix)
	if err != nil {
		return nil, refuse(ErrCoinbasePrefix, "%v", err)
	}
	if height != tmpl.Height {
		return nil, refuse(ErrCoinbasePrefix, "coinbase height %d: the pool's tip %s is at height %d, its next block %d (stale or foreign prev hash)", height, tmpl.PrevHash, tmpl.Height-1, tmpl.Height)
	}
	if err := Underpaid(cb.Tx.TxOut, a.payout.Outputs); err != nil {
		return nil, refuse(ErrCoinbaseSuffix, "%v", err)
	}
	return cb, nil
}

func (cn *conn) provided(ctx context.Context, m *sv2.ProvideMissingTransactionsSuccess) bool {
	p := cn.pending
	if p == nil || p.m.RequestID != m.RequestID {
		cn.s.log.Info("closing job declarator client: ProvideMissingTransactions.Success for no request", "remote", cn.remote, "request", m.RequestID)
		return false
	}
	cn.pending = nil
	if len(m.TransactionList) != len(p.missing) {
		return cn.refuseDeclaration(m.RequestID, refuse(ErrTxList, "%d transactions provided, %d asked for", len(m.TransactionList), len(p.missing)))
	}
	// Room for them all first: earlier ones are forgotten, never these.
	total := 0
	for _, raw := range m.TransactionList {
		total += len(raw)
	}
	if len(cn.known)+len(m.TransactionList) > maxKnownTxs || cn.knownB+total > maxKnownBytes {
		clear(cn.known)
		cn.knownB = 0
	}
	for i, raw := range m.TransactionList {
		var tx wire.MsgTx
		r := bytes.NewReader(raw)
		if err := tx.Deserialize(r); err != nil || r.Len() != 0 {
			return cn.refuseDeclaration(m.RequestID, refuse(ErrTxList, "transaction %d (position %d) does not parse: %v", i, p.missing[i], err))
		}
		want := chainmath.Hash(p.m.WtxidList[p.missing[i]])
		if got := chainmath.Hash(tx.WitnessHash()); got != want {
			return cn.refuseDeclaration(m.RequestID, refuse(ErrTxList, "transaction %d has wtxid %s, position %d declared %s", i, got, p.missing[i], want))
		}
		cn.known[want] = raw
		cn.knownB += len(raw)
	}
	return cn.finish(ctx, p.m, p.alloc, p.cb)
}

// finish builds the declared block on the pool's tip, has the chain
// judge it, and answers.
func (cn *conn) finish(ctx context.Context, m *sv2.DeclareMiningJob, a *allocation, cb *Coinbase) bool {
	s := cn.s
	tmpl := s.cfg.Source.Current()
	known := make(map[chainmath.Hash][]byte, len(tmpl.Txs))
	for _, tx := range tmpl.Txs {
		known[tx.WTxID] = tx.Raw
	}
	txs := make([]work.Tx, len(m.WtxidList))
	blk := &wire.MsgBlock{Transactions: make([]*wire.MsgTx, 0, len(txs)+1)}
	blk.Transactions = append(blk.Transactions, cb.Tx)
	txids := make([]chainmath.Hash, 0, len(txs)+1)
	txids = append(txids, chainmath.Hash(cb.Tx.TxHash()))
	for i, w := range m.WtxidList {
		raw := known[chainmath.Hash(w)]
		if raw == nil {
			raw = cn.known[chainmath.Hash(w)]
		}
		if raw == nil {
			// Known when declared, gone from the template since.
			return cn.refuseDeclaration(m.RequestID, refuse(ErrWtxidList, "transaction %d (%s) is no longer known", i, chainmath.Hash(w)))
		}
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			return cn.refuseDeclaration(m.RequestID, refuse(ErrWtxidList, "transaction %d: %v", i, err))
		}
		txs[i] = work.Tx{TxID: chainmath.Hash(tx.TxHash()), WTxID: chainmath.Hash(w), Raw: raw}
		blk.Transactions = append(blk.Transactions, &tx)
		txids = append(txids, txs[i].TxID)
	}
	ntime := max(tmpl.CurTime, tmpl.MinTime, uint32(s.cfg.Now().Unix()))
	if mt := tmpl.MaxTimeAt(s.cfg.Now()); mt != 0 {
		ntime = min(ntime, mt)
	}
	hdr := chainmath.Header{Version: m.Version, PrevBlock: tmpl.PrevHash, MerkleRoot: chainmath.MerkleRoot(txids), Time: ntime, Bits: tmpl.Bits}
	hb := hdr.Bytes()
	if err := blk.Header.Deserialize(bytes.NewReader(hb[:])); err != nil {
		return cn.refuseDeclaration(m.RequestID, refuse(ErrVersion, "header: %v", err))
	}
	if err := s.cfg.Check.CheckBlock(ctx, blk); err != nil {
		var rej *work.RejectedError
		if !errors.As(err, &rej) {
			s.log.Warn("job declaration: the chain could not judge a declared block", "remote", cn.remote, "err", err)
			return cn.refuseDeclaration(m.RequestID, refuse(ErrWtxidList, "the pool's node could not check the block: %v", err))
		}
		code := ErrWtxidList
		if strings.HasPrefix(rej.Reason, "bad-cb") {
			code = ErrCoinbaseSuffix
		}
		return cn.refuseDeclaration(m.RequestID, refuse(code, "the chain refuses the declared block: %s", rej.Reason))
	}
	var value int64
	for _, o := range cb.Tx.TxOut {
		value += o.Value
	}
	t := &work.Template{Height: tmpl.Height, PrevHash: tmpl.PrevHash, Version: m.Version, Bits: tmpl.Bits, CurTime: ntime,
		MinTime: tmpl.MinTime, MaxTime: tmpl.MaxTime, Created: tmpl.Created, CoinbaseValue: value, Txs: txs,
		WitnessCommitment: witnessCommitment(cb.Tx)}
	job := &Job{User: a.user, Version: m.Version, Coinbase: cb, Template: t, Branch: chainmath.MerkleBranch(txids[1:]),
		Payout: a.payout, expires: s.cfg.Now().Add(s.cfg.TokenTTL)}
	tok := newToken()
	s.mu.Lock()
	s.declared[string(tok)] = job
	s.rememberLocked(string(tok), s.cfg.Now())
	cn.tokens = append(cn.tokens, tok)
	s.mu.Unlock()
	cn.last = job
	s.log.Info("job declared", "remote", cn.remote, "user", a.user, "height", t.Height, "transactions", len(txs), "coinbase_value", value)
	return cn.write(&sv2.DeclareMiningJobSuccess{RequestID: m.RequestID, NewMiningJobToken: tok})
}

// Claim returns the job declared under token for a SetCustomMiningJob
// and marks it claimed: each declared job is set on one channel once.
func (s *Server) Claim(token []byte) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.declared[string(token)]
	switch {
	case j == nil:
		return nil, refuse(ErrToken, "token %x names no declared job", token)
	case j.claimed:
		return nil, refuse(ErrToken, "the job of token %x is already set on a channel", token)
	case s.cfg.Now().After(j.expires):
		return nil, refuse(ErrToken, "the job of token %x expired", token)
	}
	j.claimed = true
	return j, nil
}

// push assembles the block of a PushSolution on the connection's last
// declared job and submits it.
func (cn *conn) push(ctx context.Context, m *sv2.PushSolution) {
	s := cn.s
	j := cn.last
	if j == nil {
		s.log.Info("job declaration: PushSolution without a declared job", "remote", cn.remote)
		return
	}
	if chainmath.Hash(m.PrevHash) != j.Template.PrevHash || m.NBits != j.Template.Bits || len(m.Extranonce) != j.Coinbase.ExtranonceSize {
		s.log.Info("job declaration: PushSolution does not match the last declared job", "remote", cn.remote,
			"prev_hash", chainmath.Hash(m.PrevHash).String(), "nbits", fmt.Sprintf("%08x", m.NBits), "extranonce_bytes", len(m.Extranonce))
		return
	}
	coinbase := make([]byte, 0, len(j.Coinbase.Coinb1)+len(m.Extranonce)+len(j.Coinbase.Coinb2))
	coinbase = append(append(append(coinbase, j.Coinbase.Coinb1...), m.Extranonce...), j.Coinbase.Coinb2...)
	root := chainmath.RootFromBranch(chainmath.DoubleSHA256(coinbase), j.Branch)
	h := chainmath.Header{Version: m.Version, PrevBlock: j.Template.PrevHash, MerkleRoot: root, Time: m.NTime, Bits: m.NBits, Nonce: m.Nonce}
	raw := h.Bytes()
	hash := chainmath.DoubleSHA256(raw[:])
	target, err := j.Template.Target()
	if err != nil || !target.Meets(&hash) {
		s.log.Info("job declaration: PushSolution does not meet the block target", "remote", cn.remote, "hash", hash.String())
		return
	}
	blk, err := work.AssembleBlock(j.Template, raw, coinbase)
	if err != nil {
		s.log.Info("job declaration: PushSolution's block does not assemble", "remote", cn.remote, "err", err)
		return
	}
	err = s.cfg.Source.Submit(context.WithoutCancel(ctx), blk, j.User)
	s.log.Info("job declaration: pushed solution submitted", "remote", cn.remote, "height", j.Template.Height, "hash", hash.String(), "err", err)
}
