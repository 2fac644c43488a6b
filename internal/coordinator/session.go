package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/proxyproto"
	"github.com/powcoord/powcoord/internal/stratum"
)

// Rejection reasons, as counted per worker and in metrics.
const (
	ReasonMalformed     = "malformed"
	ReasonNotSubscribed = "not-subscribed"
	ReasonUnauthorized  = "unauthorized"
	ReasonJobNotFound   = "job-not-found"
	ReasonStale         = "stale"
	ReasonDuplicate     = "duplicate"
	ReasonExtranonce2   = "bad-extranonce2"
	ReasonNTime         = "bad-ntime"
	ReasonVersion       = "bad-version"
	ReasonLowDifficulty = "low-difficulty"
	ReasonWrongPayout   = "wrong-payout" // a job made for another worker's payout address
	ReasonLedger        = "ledger-error"
)

const maxJobsPerSession = 64

// maxPayeesPerSession caps the payout addresses one connection may mine
// for: each gets its own job at every work update.
const maxPayeesPerSession = 16

// payee is a payout script a session mines for and the first worker
// authorized with it: the finder of a block on its jobs.
type payee struct {
	script []byte
	worker string
}

// session is one miner connection. Its reader goroutine (serve) handles
// requests one at a time, in order; the coordinator's broadcaster sends it
// work concurrently.
//
// Lock order: Coordinator.mu, then session.mu, then epoch.mu; the
// accounting and store locks are leaf locks taken with none of these held
// except session.mu (stats.setDifficulty in sendWork). session.mu guards
// every field below it and serializes writes to conn, so that a
// mining.set_difficulty always precedes the notify it belongs to. Share
// validation (validateShare) runs without it, on a copy of the facts it
// needs; the ledger write runs without it too.
type session struct {
	c           *Coordinator
	conn        net.Conn
	ln          net.Listener // the listener it came from; set before it is published
	id          uint64
	en1         uint32
	en1Bytes    [4]byte
	en1Hex      string
	connectedAt time.Time

	mu sync.Mutex
	// connShares (the share path's half of the connection: its remote
	// address, closed, the reject rule and the shares with the ledger)
	// and shareLane (duplicates, vardiff) are guarded by mu too.
	connShares
	shareLane
	subscribed bool
	// user (below) is the first worker authorized; moreWorkers holds any
	// other with its payout script, allocated only for a session that
	// authorizes a second one (a Go map costs ≈ 450 bytes, a tenth of an
	// idle session).
	moreWorkers map[string][]byte
	user        string // first authorized name: accounting
	payout      []byte // user's payout script
	mask        uint32
	diff        float64 // difficulty for the next job
	fixedDiff   bool    // set by a d= password field: vardiff and suggestions leave it
	diffSent    float64 // last mining.set_difficulty sent
	diffTgt     chainmath.Target
	diffTgtFor  float64
	jobs        []jobRef // the jobs a share may name, oldest first
	jobSeq      uint64
	lastEpoch   *epoch
	reissue     reissue // coinbase variants of lastEpoch's jobs
	// morePayees are the payout scripts of the other workers that user's
	// does not pay, each once, in authorize order: every work update
	// sends one job per payout (docs/payouts.md).
	morePayees []payee

	scratch []byte   // the coinbase being rebuilt; reader goroutine only
	en2Buf  [16]byte // a submission's extranonce2, decoded; reader goroutine only

	ev atomic.Pointer[evState] // set when the session is served by the event loop
}

func newSession(c *Coordinator, conn net.Conn, ln net.Listener, id uint64, en1 uint32) *session {
	s := &session{
		c:           c,
		conn:        conn,
		ln:          ln,
		id:          id,
		en1:         en1,
		connectedAt: c.cfg.Now(),
		diff:        c.cfg.ShareDifficulty,
	}
	s.vd = newVardiff(&c.cfg)
	s.connShares.init(c, &s.mu, "", conn.RemoteAddr().String())
	s.connShares.ev = &s.ev
	s.vd.max = listenerMaxDifficulty(ln, &c.cfg)
	s.vd.min = min(max(s.vd.min, listenerMinDifficulty(ln)), s.vd.max)
	s.diff = s.clampSession(s.diff)
	binary.BigEndian.PutUint32(s.en1Bytes[:], en1)
	s.en1Hex = hex.EncodeToString(s.en1Bytes[:])
	return s
}

// serve is a session on a goroutine of its own, blocked in Read between
// lines: the path for connections the event loop cannot poll (TLS,
// net.Pipe, other systems than Linux). See eventloop_linux.go for the
// other.
func (s *session) serve(ctx context.Context) {
	defer s.teardown()
	// A small read buffer: a longer line is gathered in pieces, and an
	// idle session keeps only this much.
	lr := stratum.NewLineReader(s.conn, s.c.cfg.MaxLineBytes, 256)
	var sub stratum.Submit
	var deadline time.Time // the read deadline set on conn
	for {
		deadline = s.nextReadDeadline(deadline)
		line, err := lr.ReadLine()
		if err != nil {
			s.logClose(err)
			return
		}
		if !s.handleLine(ctx, line, &sub) {
			return
		}
	}
}

// nextReadDeadline sets the read deadline for the next line and returns
// it; set is what it returned for the line before (zero for none). During the handshake the deadline is set
// as readTimeout says. After it, a session may stay silent IdleTimeout
// from its last line, or up to a sixteenth longer: a deadline still at
// least IdleTimeout away is kept, and a new one is set IdleTimeout plus
// a sixteenth ahead, so that a session sending many lines moves it once
// in every IdleTimeout/16 instead of once a line (a deadline is a timer
// to stop and start again; on net.Pipe a new timer).
func (s *session) nextReadDeadline(set time.Time) time.Time {
	now := s.c.cfg.Now()
	s.mu.Lock()
	handshake := !s.subscribed || s.user == ""
	s.mu.Unlock()
	if handshake {
		// Set every line, and not kept past the handshake: its deadline
		// may be later than the idle one.
		s.conn.SetReadDeadline(now.Add(s.readTimeout()))
		return time.Time{}
	}
	idle := s.c.cfg.IdleTimeout
	if !set.Before(now.Add(idle)) {
		return set
	}
	d := now.Add(idle + idle/16)
	s.conn.SetReadDeadline(d)
	return d
}

// readTimeout is how long the session may stay silent from now: the rest
// of the handshake time until it has subscribed and authorized (counted
// from the connection, not from the last line), the idle timeout after.
func (s *session) readTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.subscribed || s.user == "" {
		return max(s.connectedAt.Add(s.c.cfg.HandshakeTimeout).Sub(s.c.cfg.Now()), time.Millisecond)
	}
	return s.c.cfg.IdleTimeout
}

// handleLine handles one request line; false ends the session. sub is the
// caller's scratch for the share path.
func (s *session) handleLine(ctx context.Context, line []byte, sub *stratum.Submit) bool {
	// The share path: mining.submit in its common form is read without
	// reflection; everything else goes through Parse.
	if id, ok := stratum.ParseSubmitLine(line, sub); ok {
		s.handleSubmit(ctx, id, sub)
		return true
	}
	// Anything else is answered after the shares before it.
	s.drain()
	m, err := stratum.Parse(line)
	if err != nil && proxyproto.StartsWithHeader(line) {
		// A trusted proxy's header never gets here (the listener takes
		// it): this peer is not on --proxy-protocol-from.
		s.c.log.Info("closing miner: PROXY header from an address not trusted to send one", "remote", s.remote)
		return false
	}
	if err != nil {
		s.c.log.Info("closing miner: invalid message", "remote", s.remote, "err", err)
		s.reply(nil, nil, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
		return false
	}
	if m.Method == "" {
		return true // a response to something we asked; nothing to do
	}
	s.dispatch(ctx, m)
	return true
}

// teardown ends the session once its reading has stopped: the shares
// with the ledger are answered first, then the connection is closed and
// the session forgotten.
func (s *session) teardown() {
	s.drain()
	s.mu.Lock()
	s.closed = true
	user := s.user
	s.mu.Unlock()
	s.conn.Close()
	s.c.dropSession(s)
	if user != "" {
		s.c.stats.disconnected(user)
	}
}

func (s *session) logClose(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrClosedPipe):
		s.c.log.Debug("miner disconnected", "remote", s.remote)
	case errors.Is(err, stratum.ErrLineTooLong):
		s.c.log.Info("closing miner: line too long", "remote", s.remote, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		s.c.log.Info("closing miner: read deadline passed", "remote", s.remote)
	default:
		s.c.log.Debug("miner connection ended", "remote", s.remote, "err", err)
	}
}

func (s *session) dispatch(ctx context.Context, m *stratum.Message) {
	switch m.Method {
	case "mining.subscribe":
		s.handleSubscribe(m)
	case "mining.authorize":
		s.handleAuthorize(m)
	case "mining.configure":
		s.handleConfigure(m)
	case "mining.suggest_difficulty":
		s.handleSuggestDifficulty(m)
	case "mining.extranonce.subscribe":
		s.reply(m.ID, true, nil)
	case "mining.submit":
		p, err := stratum.ParseSubmit(m.Params)
		if err != nil {
			s.c.metrics.shares.WithLabelValues(ReasonMalformed).Inc()
			s.c.stats.rejected(s.currentUser(), ReasonMalformed)
			s.reply(m.ID, false, &stratum.Error{Code: stratum.CodeOther, Message: err.Error()})
			return
		}
		s.handleSubmit(ctx, m.ID, p)
	default:
		s.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: fmt.Sprintf("unknown method %q", m.Method)})
	}
}

// reply writes a response. A nil id (a notification) gets no response
// unless it carries an error.
func (s *session) reply(id json.RawMessage, result any, e *stratum.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replyLocked(id, result, e)
}

// replyLocked is reply with s.mu held.
func (s *session) replyLocked(id json.RawMessage, result any, e *stratum.Error) {
	if e == nil && (len(id) == 0 || bytes.Equal(id, []byte("null"))) {
		return
	}
	bp := wbufPool.Get().(*[]byte)
	buf, err := stratum.AppendResponse((*bp)[:0], id, result, e)
	if err != nil {
		wbufPool.Put(bp)
		s.c.log.Error("encoding response", "err", err)
		return
	}
	s.writeLocked(bp, buf)
}

// wbufPool holds write buffers, so that an idle session keeps none.
var wbufPool = sync.Pool{New: func() any { return new([]byte) }}

// writeLocked sends b, built on the pooled buffer bp, and returns bp to
// the pool; a failed write closes the connection. s.mu must be held.
func (s *session) writeLocked(bp *[]byte, b []byte) {
	defer func() {
		if cap(b) <= 64<<10 {
			*bp = b[:0]
			wbufPool.Put(bp)
		}
	}()
	if s.closed {
		return
	}
	rest := b
	if ev := s.ev.Load(); ev != nil {
		// Most writes fit the socket buffer: sent at once, no deadline.
		n, ok, err := ev.writeNow(rest)
		if err != nil {
			s.closed = true
			s.closeConn()
			return
		}
		if ok {
			if rest = rest[n:]; len(rest) == 0 {
				return
			}
		}
	}
	s.conn.SetWriteDeadline(s.c.cfg.Now().Add(s.c.cfg.WriteTimeout))
	if _, err := s.conn.Write(rest); err != nil {
		s.closed = true
		s.closeConn()
		return
	}
	if s.ev.Load() != nil {
		// Cleared, so that the next direct write does not find a deadline
		// that passed while the session was idle.
		s.conn.SetWriteDeadline(time.Time{})
	}
}

// abort closes the connection from outside the session's goroutines
// (shutdown, stale work) without waiting on the peer: the write deadline
// is set to now first, so a TLS connection's close alert cannot block on
// a miner that does not read.
func (s *session) abort() {
	s.conn.SetWriteDeadline(s.c.cfg.Now())
	s.closeConn()
}

// closeConn closes the connection from outside its reading: a session on
// the event loop is woken to find it closed and end (one on its own
// goroutine sees its Read fail).
func (s *session) closeConn() {
	s.conn.Close()
	if ev := s.ev.Load(); ev != nil {
		ev.wake(s)
	}
}

func (s *session) currentUser() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}
