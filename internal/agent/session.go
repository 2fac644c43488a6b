package agent

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"

	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powcoord/powcoord/internal/stratum"
)

// Timeouts of a session.
const (
	dialTimeout      = 5 * time.Second
	handshakeTimeout = 10 * time.Second
	writeTimeout     = 10 * time.Second
	// idleTimeout ends a session that has sent nothing for this long (a
	// pool sends a job at least every 60 s).
	idleTimeout = 180 * time.Second
	maxLine     = 64 << 10
	maxPending  = 1024
	// writeFailedDrain is how long the reader may go on after a write
	// failed: what the pool sent before it went away (client.reconnect
	// in particular) is still read, and a pool that stopped reading but
	// goes on sending cannot keep a session alive that can send nothing.
	writeFailedDrain = time.Second
)

// versionRollingMask is the BIP 320 mask offered in mining.configure.
const versionRollingMask = "1fffe000"

// sessionResult says how a session ended.
type sessionResult struct {
	established  bool   // subscribe and authorize succeeded
	primaryBack  bool   // ended because the primary pool answers again
	redirect     string // client.reconnect target host:port
	redirectWait time.Duration
	err          error
}

// pending is a request waiting for its response.
type pending struct {
	id     uint64
	method string
}

// session is one connection to a pool. The reading goroutine owns the
// protocol state; writes are serialized by wmu. The queue of requests
// awaiting answers has its own lock, pmu, so that the reader never waits
// for a write that is blocked on a full socket: it keeps reading, and a
// pool that waits for us to read before it reads our submits never
// deadlocks with us.
type session struct {
	a    *Agent
	pool pool
	addr string
	conn net.Conn

	wmu  sync.Mutex
	wbuf []byte

	pmu     sync.Mutex
	nextID  uint64
	pending []pending

	// units hands out work units across every job of the session, so a
	// job re-sent with the same content (a new difficulty, say) never
	// has its nonces hashed twice.
	units atomic.Uint64

	// endBy is, once a write has failed, the read deadline (Unix
	// nanoseconds) by which the reader ends; werr is that write's error.
	endBy atomic.Int64
	werr  atomic.Pointer[error]

	// Owned by the reading goroutine.
	en1        []byte
	en2Size    int
	diff       float64
	subscribed bool
	authorized bool
	early      *stratum.Notify // a notify that came before the subscribe reply
}

// runSession connects to addr and runs the protocol until the connection
// ends, ctx is cancelled or (onBackup) the primary pool answers again.
func (a *Agent) runSession(ctx context.Context, p pool, addr string, onBackup bool) (r sessionResult) {
	a.mu.Lock()
	a.st.Pool = p.url
	a.mu.Unlock()
	conn, err := a.dial(ctx, p, addr)
	if err != nil {
		r.err = err
		return r
	}
	sctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(sctx, func() { conn.Close() })
	var wg sync.WaitGroup
	var primaryBack bool
	defer func() {
		cancel()
		stopClose()
		conn.Close()
		wg.Wait()
		r.primaryBack = primaryBack && ctx.Err() == nil
	}()
	if onBackup {
		wg.Go(func() {
			if a.watchPrimary(sctx) {
				primaryBack = true
				cancel()
			}
		})
	}
	a.log.Debug("pool connected", "pool", p.url, "addr", addr)
	if p.v2 {
		return a.runSV2(conn, p)
	}
	s := &session{a: a, pool: p, addr: addr, conn: conn, diff: 1}
	r = s.run()
	return r
}

// watchPrimary probes the primary pool every PrimaryRetry (with jitter)
// and returns true once it answers a mining.subscribe, false when ctx ends.
func (a *Agent) watchPrimary(ctx context.Context) bool {
	for {
		if !wait(ctx, jitter(a.cfg.PrimaryRetry)) {
			return false
		}
		if err := a.probe(ctx, a.pools[0].addr); err == nil {
			return true
		} else {
			a.log.Debug("primary pool still unavailable", "pool", a.pools[0].url, "err", err)
		}
	}
}

// probe dials addr, sends mining.subscribe and waits for a response.
func (a *Agent) probe(ctx context.Context, addr string) error {
	conn, err := a.dial(ctx, a.pools[0], addr) // only the primary is probed
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if a.pools[0].v2 {
		return a.probeSV2(conn, a.pools[0])
	}
	line, _ := stratum.AppendRequest(nil, 1, "mining.subscribe", []string{a.cfg.UserAgent})
	if _, err := conn.Write(line); err != nil {
		return err
	}
	lr := stratum.NewLineReader(conn, maxLine, 4096)
	for {
		l, err := lr.ReadLine()
		if err != nil {
			return err
		}
		m, err := stratum.Parse(l)
		if err != nil {
			return err
		}
		if m.Method == "" {
			if e := m.ResponseError(); e != nil {
				return e
			}
			return nil
		}
	}
}

// send writes a request with the next id and queues it for its response.
func (s *session) send(method string, params any) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.pmu.Lock()
	s.nextID++
	id := s.nextID
	if len(s.pending) >= maxPending {
		s.pending = s.pending[1:] // a pool that never answers: forget the oldest
	}
	s.pending = append(s.pending, pending{id: id, method: method})
	s.pmu.Unlock()
	var err error
	s.wbuf, err = stratum.AppendRequest(s.wbuf[:0], id, method, params)
	if err != nil {
		return err
	}
	s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.conn.Write(s.wbuf); err != nil {
		err = fmt.Errorf("sending %s: %w", method, err)
		s.writeFailed(err)
		return err
	}
	return nil
}

// writeFailed ends the session after a failed write, without closing the
// connection under its reader: a pool that sends client.reconnect and
// closes makes the next write fail, while the client.reconnect line may
// still wait unread in the socket (docs/stratum-v1.md, "Conventions").
// The reader reads what is there and ends at the pool's end of stream,
// or writeFailedDrain from now at the latest.
func (s *session) writeFailed(err error) {
	s.werr.CompareAndSwap(nil, &err)
	s.endBy.CompareAndSwap(0, time.Now().Add(writeFailedDrain).UnixNano())
	// After the store: a reader that set its own deadline before it
	// either sees endBy or has this deadline set after its own.
	s.conn.SetReadDeadline(time.Unix(0, s.endBy.Load()))
}

// reply answers a request from the pool.
func (s *session) reply(id json.RawMessage, result any, e *stratum.Error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf, _ = stratum.AppendResponse(s.wbuf[:0], id, result, e)
	s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.conn.Write(s.wbuf); err != nil {
		s.writeFailed(fmt.Errorf("sending a response: %w", err))
	}
}

// take removes and returns the pending request a response answers: the one
// with its id, or else the oldest (pools answer in order).
func (s *session) take(rawID json.RawMessage) (pending, bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if len(s.pending) == 0 {
		return pending{}, false
	}
	if id, err := strconv.ParseUint(string(bytes.Trim(rawID, `"`)), 10, 64); err == nil {
		for i, p := range s.pending {
			if p.id == id {
				s.pending = append(s.pending[:i], s.pending[i+1:]...)
				return p, true
			}
		}
	}
	p := s.pending[0]
	s.pending = s.pending[1:]
	return p, true
}

// submit sends a share found on j.
func (s *session) submit(j *job, en2 []byte, nonce uint32) {
	params := []string{s.a.cfg.User, j.ID, hex.EncodeToString(en2), stratum.Hex32(j.NTime), stratum.Hex32(nonce)}
	if err := s.send("mining.submit", params); err != nil {
		s.a.log.Debug("share not sent", "job", j.ID, "err", err)
	}
}

// run performs the handshake and then handles messages until the
// connection ends.
func (s *session) run() sessionResult {
	if err := s.sendHandshake(); err != nil {
		return sessionResult{err: err}
	}
	return s.readLoop()
}

// sendHandshake sends the requests that open a session.
func (s *session) sendHandshake() error {
	a := s.a
	configure := []any{[]string{"version-rolling"}, map[string]any{
		"version-rolling.mask": versionRollingMask, "version-rolling.min-bit-count": 2}}
	for _, req := range []struct {
		method string
		params any
	}{
		{"mining.configure", configure},
		{"mining.subscribe", []string{a.cfg.UserAgent}},
		{"mining.authorize", []string{a.cfg.User, a.cfg.Pass}},
		{"mining.extranonce.subscribe", []string{}},
	} {
		if err := s.send(req.method, req.params); err != nil {
			return err
		}
	}
	return nil
}

// readLoop handles the pool's messages until the connection ends, a
// write has failed and the pool's messages are read, or the pool asks
// to reconnect.
func (s *session) readLoop() (r sessionResult) {
	a := s.a
	handshakeEnd := time.Now().Add(handshakeTimeout)
	lr := stratum.NewLineReader(s.conn, maxLine, 4096)
	for {
		if r.established {
			s.conn.SetReadDeadline(time.Now().Add(idleTimeout))
		} else {
			s.conn.SetReadDeadline(handshakeEnd)
		}
		if end := s.endBy.Load(); end != 0 {
			s.conn.SetReadDeadline(time.Unix(0, end))
		}
		line, err := lr.ReadLine()
		if err != nil {
			if werr := s.werr.Load(); werr != nil {
				err = fmt.Errorf("%w (then reading: %v)", *werr, err)
			}
			r.err = err
			return r
		}
		m, err := stratum.Parse(line)
		if err != nil {
			r.err = fmt.Errorf("from pool: %w", err)
			return r
		}
		if m.Method != "" {
			if err := s.handleCall(m, &r); err != nil {
				r.err = err
				return r
			}
			if r.redirect != "" {
				return r
			}
			continue
		}
		if err := s.handleResponse(m); err != nil {
			r.err = err
			return r
		}
		if !r.established && s.subscribed && s.authorized {
			r.established = true
			a.mu.Lock()
			a.st.Connected = true
			a.st.Sessions++
			a.st.Extranonce1 = hex.EncodeToString(s.en1)
			a.mu.Unlock()
			a.log.Info("pool session established", "pool", s.pool.url, "extranonce1", hex.EncodeToString(s.en1), "extranonce2_size", s.en2Size)
		}
	}
}

// handleResponse matches a response to its request.
func (s *session) handleResponse(m *stratum.Message) error {
	a := s.a
	p, ok := s.take(m.ID)
	if !ok {
		a.log.Debug("response to no request", "id", string(m.ID))
		return nil
	}
	e := m.ResponseError()
	switch p.method {
	case "mining.configure":
		a.log.Debug("mining.configure answered", "result", string(m.Result), "error", e)
	case "mining.subscribe":
		if e != nil {
			return fmt.Errorf("mining.subscribe refused: %w", e)
		}
		en1, size, err := parseSubscribe(m.Result)
		if err != nil {
			return err
		}
		s.en1, s.en2Size, s.subscribed = en1, size, true
		if n := s.early; n != nil {
			s.early = nil
			s.notify(n)
		}
	case "mining.authorize":
		var ok bool
		if e != nil || json.Unmarshal(m.Result, &ok) != nil || !ok {
			return fmt.Errorf("mining.authorize for user %q refused: result %s, error %v", a.cfg.User, m.Result, e)
		}
		s.authorized = true
	case "mining.submit":
		var ok bool
		_ = json.Unmarshal(m.Result, &ok)
		a.mu.Lock()
		if e == nil && ok {
			a.st.Accepted++
		} else {
			code := stratum.CodeOther
			if e != nil {
				code = e.Code
			}
			a.st.Rejected++
			a.st.RejectedByCode[code]++
		}
		a.mu.Unlock()
		if e != nil || !ok {
			a.log.Info("share rejected", "pool", s.pool.url, "error", e)
		}
	default:
		a.log.Debug("response", "method", p.method, "result", string(m.Result), "error", e)
	}
	return nil
}

// parseSubscribe decodes [subscriptions, extranonce1, extranonce2_size].
func parseSubscribe(res json.RawMessage) ([]byte, int, error) {
	var arr []json.RawMessage
	if err := json.Unmarshal(res, &arr); err != nil || len(arr) < 3 {
		return nil, 0, fmt.Errorf("mining.subscribe result %.80q: want [subscriptions, extranonce1, extranonce2_size]", res)
	}
	var en1Hex string
	if err := json.Unmarshal(arr[1], &en1Hex); err != nil {
		return nil, 0, fmt.Errorf("mining.subscribe extranonce1 %s: want a hex string", arr[1])
	}
	en1, err := hex.DecodeString(en1Hex)
	if err != nil {
		return nil, 0, fmt.Errorf("mining.subscribe extranonce1 %q: not hex", en1Hex)
	}
	var size int
	if err := json.Unmarshal(arr[2], &size); err != nil || size < 0 || size > 16 {
		return nil, 0, fmt.Errorf("mining.subscribe extranonce2_size %s: want an integer 0..16", arr[2])
	}
	return en1, size, nil
}

// handleCall handles a notification or request from the pool.
func (s *session) handleCall(m *stratum.Message, r *sessionResult) error {
	a := s.a
	switch m.Method {
	case "mining.set_difficulty":
		var p []float64
		if err := json.Unmarshal(m.Params, &p); err != nil || len(p) < 1 || !(p[0] > 0) {
			a.log.Warn("bad mining.set_difficulty from pool", "params", string(m.Params))
			return nil
		}
		s.diff = p[0] // applies from the next notify
		a.log.Debug("difficulty set", "difficulty", p[0])
	case "mining.notify":
		n, err := stratum.ParseNotify(m.Params)
		if err != nil {
			a.log.Warn("bad mining.notify from pool", "err", err)
			return nil
		}
		if !s.subscribed {
			s.early = n
			return nil
		}
		s.notify(n)
	case "mining.set_extranonce":
		var p []json.RawMessage
		if err := json.Unmarshal(m.Params, &p); err != nil || len(p) < 2 {
			a.log.Warn("bad mining.set_extranonce from pool", "params", string(m.Params))
			return nil
		}
		en1, size, err := parseSubscribe(append(append([]byte("[null,"), p[0]...), append(append([]byte(","), p[1]...), ']')...))
		if err != nil {
			a.log.Warn("bad mining.set_extranonce from pool", "params", string(m.Params), "err", err)
			return nil
		}
		s.en1, s.en2Size = en1, size // applies from the next notify
		a.mu.Lock()
		a.st.Extranonce1 = hex.EncodeToString(en1)
		a.mu.Unlock()
		if m.ID != nil && !m.IsNotification() {
			s.reply(m.ID, true, nil)
		}
	case "client.reconnect":
		host, port, wait := s.parseReconnect(m.Params)
		r.redirect = net.JoinHostPort(host, port)
		r.redirectWait = wait
	case "client.get_version":
		s.reply(m.ID, a.cfg.UserAgent, nil)
	case "client.show_message":
		a.log.Info("message from pool", "pool", s.pool.url, "params", string(m.Params))
	default:
		a.log.Debug("unknown method from pool", "method", m.Method)
		if !m.IsNotification() {
			s.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: "unknown method " + m.Method})
		}
	}
	return nil
}

// parseReconnect reads client.reconnect's optional [host, port, wait]. The
// agent only follows a redirect to the host it is connected to.
func (s *session) parseReconnect(params json.RawMessage) (host, port string, wait time.Duration) {
	host, port, _ = net.SplitHostPort(s.addr)
	var p []json.RawMessage
	_ = json.Unmarshal(params, &p)
	if len(p) > 0 {
		var h string
		if json.Unmarshal(p[0], &h) == nil && h != "" && h != host {
			s.a.log.Warn("client.reconnect to another host ignored", "host", h)
		}
	}
	if len(p) > 1 {
		var ps string
		var pn int
		if json.Unmarshal(p[1], &ps) == nil {
			if n, err := strconv.Atoi(ps); err == nil && n > 0 && n < 65536 {
				port = ps
			}
		} else if json.Unmarshal(p[1], &pn) == nil && pn > 0 && pn < 65536 {
			port = strconv.Itoa(pn)
		}
	}
	if len(p) > 2 {
		var w float64
		if json.Unmarshal(p[2], &w) == nil && w > 0 {
			wait = min(time.Duration(w*float64(time.Second)), 10*time.Minute)
		}
	}
	return host, port, wait
}

// notify turns a mining.notify into the job every thread hashes.
func (s *session) notify(n *stratum.Notify) {
	j, err := newJob(n, s.en1, s.en2Size, s.diff, s.a.span)
	if err != nil {
		s.a.log.Warn("bad mining.notify from pool", "err", err)
		return
	}
	j.sess = s
	j.next = &s.units
	s.a.publish(j)
	s.a.log.Debug("new job", "job", j.ID, "clean", j.Clean, "difficulty", j.diff)
}
