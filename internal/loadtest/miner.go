// Package loadtest drives a Stratum V1 coordinator with many real
// sessions from one process: each session subscribes, authorizes, mines
// valid shares at a set rate on the jobs it is sent, and notes when new
// work arrives. It also serves tests that need a raw miner which reports
// exactly which shares the pool answered true.
package loadtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
)

// Share is a share a Miner submitted.
type Share struct {
	Worker      string
	Extranonce1 string // hex
	JobID       string
	Extranonce2 string // hex
	NTime       uint32
	Nonce       uint32
	Hash        chainmath.Hash
	Block       bool // it meets the job's block target
}

// work is a decoded job with its block target, ready to hash.
type work struct {
	*stratum.Job
	blockTgt chainmath.Target
}

func parseWork(n *stratum.Notify) (*work, error) {
	j, err := stratum.DecodeNotify(n)
	if err != nil {
		return nil, err
	}
	bt, err := j.BlockTarget()
	if err != nil {
		return nil, err
	}
	return &work{Job: j, blockTgt: bt}, nil
}

// Miner is one raw Stratum session.
type Miner struct {
	// User is the username it authorizes as.
	User string
	// OnAccepted, if set, is called (from the reader) for every share the
	// pool answered true.
	OnAccepted func(Share)
	// OnAnswer, if set, is called (from the reader) with every submit's
	// verdict, after OnAccepted.
	OnAnswer func(accepted bool)
	// OnNotify, if set, is called (from the reader) when a mining.notify
	// arrives, with its prevhash field (only valid during the call), its
	// clean flag, when the read that brought the line's first byte
	// returned, and when the read that completed the line returned (the
	// same time unless the line was split across reads). The notify is
	// recognised by scanning bytes; it is parsed in full only when work
	// is needed.
	OnNotify func(prevHash []byte, clean bool, first, at time.Time)

	conn    net.Conn
	en1     []byte
	en1Hex  string
	en2Size int

	// What reads the connection owns (the handshake, then Run or an
	// event loop; one at a time).
	lines     stratum.LineSplitter
	partialAt time.Time // when the unfinished line's first byte was read
	handshook int       // handshake replies read (2: done)

	mu      sync.Mutex
	wmu     sync.Mutex // serializes writes
	cur     *work      // parsed from raw on first use
	raw     []byte     // the latest mining.notify line, not yet parsed into cur
	diff    float64
	tgt     chainmath.Target
	nextID  int
	pending []pendingShare // submits awaiting their response, in order
	en2     uint64
	workCh  chan struct{} // signalled when the first work arrives
	hasWork bool

	accepted, rejected int
}

type pendingShare struct {
	id int
	sh Share
}

// maxLine is the longest line a Miner accepts from a pool.
const maxLine = 1 << 20

// readBufSize is the read buffer of one goroutine reader (Run, the
// handshake).
const readBufSize = 2048

// Dial connects a Miner to addr from the local IP src ("" for any),
// subscribes and authorizes. It returns when the handshake is answered;
// Run (or an event loop) reads on from there.
func Dial(ctx context.Context, addr, src, user string) (*Miner, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		d.Control = bindNoPort
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &Miner{User: user, conn: conn, lines: stratum.NewLineSplitter(maxLine), diff: 1, workCh: make(chan struct{})}
	if err := m.handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	return m, nil
}

// handshake sends subscribe and authorize and reads until both are
// answered; whatever follows them in the same read (difficulty, the
// first job) is handled too.
func (m *Miner) handshake() error {
	m.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer m.conn.SetDeadline(time.Time{})
	buf, _ := stratum.AppendRequest(nil, 1, "mining.subscribe", []string{"powcoord-loadtest/1"})
	buf, _ = stratum.AppendRequest(buf, 2, "mining.authorize", []string{m.User, "x"})
	if _, err := m.conn.Write(buf); err != nil {
		return fmt.Errorf("sending the handshake: %w", err)
	}
	rb := make([]byte, readBufSize)
	for m.handshook < 2 {
		n, err := m.conn.Read(rb)
		at := time.Now()
		if n > 0 {
			if ferr := m.feed(rb[:n], at); ferr != nil {
				return ferr
			}
		}
		if err != nil && m.handshook < 2 {
			return fmt.Errorf("reading the handshake: %w", err)
		}
	}
	m.nextID = 3
	return nil
}

// feed handles the bytes of one read, which returned at at: every line
// they complete, in order. It returns an error when the stream is
// unusable (a line too long or not JSON, a refused handshake).
func (m *Miner) feed(data []byte, at time.Time) error {
	first := at
	if m.lines.Pending() > 0 {
		first = m.partialAt // the line this read completes began earlier
	}
	emitted := false
	var herr error
	_, err := m.lines.Feed(data, func(line []byte) bool {
		herr = m.handleLine(line, first, at)
		first, emitted = at, true
		return herr == nil
	})
	if err == nil {
		err = herr
	}
	if m.lines.Pending() > 0 && (emitted || first == at) {
		m.partialAt = at // a new unfinished line began in this read
	}
	return err
}

// handleLine handles one line from the pool; first and at are when its
// first byte and its end were read.
func (m *Miner) handleLine(line []byte, first, at time.Time) error {
	if prev, clean, ok := scanNotify(line); ok {
		m.noteWork(line, prev, clean, first, at)
		return nil
	}
	if m.handshook >= 2 {
		if ok, known := scanResult(line); known {
			m.answer(ok)
			return nil
		}
	}
	msg, err := stratum.Parse(line)
	if err != nil {
		return err
	}
	if msg.Method != "" {
		return m.handleNote(msg, first, at)
	}
	if m.handshook < 2 {
		return m.handshakeReply(msg)
	}
	m.answer(string(msg.Result) == "true")
	return nil
}

// handshakeReply takes the answer to subscribe (id 1) or authorize.
func (m *Miner) handshakeReply(msg *stratum.Message) error {
	m.handshook++
	if e := msg.ResponseError(); e != nil {
		return fmt.Errorf("handshake refused: %w", e)
	}
	if string(msg.ID) == "1" {
		var res []json.RawMessage
		if err := json.Unmarshal(msg.Result, &res); err != nil || len(res) != 3 {
			return fmt.Errorf("subscribe result %s", msg.Result)
		}
		json.Unmarshal(res[1], &m.en1Hex)
		json.Unmarshal(res[2], &m.en2Size)
		var err error
		if m.en1, err = hex.DecodeString(m.en1Hex); err != nil || m.en2Size < 4 || m.en2Size > 8 {
			return fmt.Errorf("subscribe result %s: bad extranonce", msg.Result)
		}
	} else if string(msg.Result) != "true" {
		return fmt.Errorf("authorize %q answered %s", m.User, msg.Result)
	}
	return nil
}

// answer takes the verdict on the oldest unanswered submit.
func (m *Miner) answer(ok bool) {
	m.mu.Lock()
	if len(m.pending) == 0 {
		m.mu.Unlock()
		return
	}
	p := m.pending[0]
	m.pending = m.pending[1:]
	if ok {
		m.accepted++
	} else {
		m.rejected++
	}
	m.mu.Unlock()
	if ok && m.OnAccepted != nil {
		m.OnAccepted(p.sh)
	}
	if m.OnAnswer != nil {
		m.OnAnswer(ok)
	}
}

var (
	notifyMethod = []byte(`"method":"mining.notify"`)
	paramsOpen   = []byte(`"params":["`)
	resultOpen   = []byte(`{"id":`)
	resultTrue   = []byte(`,"result":true,"error":null}`)
)

// scanResult recognises the answer the coordinator writes to an accepted
// submit ({"id":<n>,"result":true,"error":null}) by its bytes. known is
// false for any other line, which goes through the full parser.
func scanResult(line []byte) (ok, known bool) {
	rest, found := bytes.CutPrefix(line, resultOpen)
	if !found {
		return false, false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || !bytes.Equal(bytes.TrimRight(rest[i:], " \r"), resultTrue) {
		return false, false
	}
	return true, true
}

// scanNotify recognises a mining.notify line as the coordinator writes it
// ({"id":null,"method":"mining.notify","params":["<job>","<prevhash>",
// ...,<clean>]}) by scanning bytes, and returns its prevhash field and
// clean flag. ok is false for any other line or layout; those go through
// the full parser, which validates.
func scanNotify(line []byte) (prev []byte, clean, ok bool) {
	i := bytes.Index(line, notifyMethod)
	if i < 0 {
		return nil, false, false
	}
	j := bytes.Index(line[i:], paramsOpen)
	if j < 0 {
		return nil, false, false
	}
	rest := line[i+j+len(paramsOpen):]
	k := bytes.IndexByte(rest, '"') // end of the job id (hex: no escapes)
	if k < 0 || len(rest) < k+3+64+1 || rest[k+1] != ',' || rest[k+2] != '"' || rest[k+3+64] != '"' {
		return nil, false, false
	}
	prev = rest[k+3 : k+3+64]
	tail := bytes.TrimRight(rest, " \r\n")
	switch {
	case bytes.HasSuffix(tail, []byte("true]}")):
		clean = true
	case bytes.HasSuffix(tail, []byte("false]}")):
	default:
		return nil, false, false
	}
	return prev, clean, true
}

// noteWork keeps a copy of a notify line for parsing when work is needed
// and reports the arrival.
func (m *Miner) noteWork(line, prev []byte, clean bool, first, at time.Time) {
	m.mu.Lock()
	m.raw = append(m.raw[:0], line...)
	m.cur = nil
	wasFirst := !m.hasWork
	m.hasWork = true
	m.mu.Unlock()
	if wasFirst {
		close(m.workCh)
	}
	if m.OnNotify != nil {
		m.OnNotify(prev, clean, first, at)
	}
}

// workLocked returns the current job, parsing the latest notify line if
// that has not been done yet. m.mu is held.
func (m *Miner) workLocked() (*work, error) {
	if m.cur != nil || len(m.raw) == 0 {
		return m.cur, nil
	}
	msg, err := stratum.Parse(m.raw)
	if err != nil {
		return nil, err
	}
	n, err := stratum.ParseNotify(msg.Params)
	if err != nil {
		return nil, err
	}
	w, err := parseWork(n)
	if err != nil {
		return nil, err
	}
	if m.tgt == (chainmath.Target{}) {
		m.tgt, _ = chainmath.TargetForDifficulty(m.diff)
	}
	m.cur = w
	return w, nil
}

func (m *Miner) handleNote(msg *stratum.Message, first, at time.Time) error {
	switch msg.Method {
	case "mining.set_difficulty":
		var p []float64
		if err := json.Unmarshal(msg.Params, &p); err != nil || len(p) < 1 {
			return fmt.Errorf("set_difficulty %s", msg.Params)
		}
		tgt, err := chainmath.TargetForDifficulty(p[0])
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.diff, m.tgt = p[0], tgt
		m.mu.Unlock()
	case "mining.notify": // a layout scanNotify does not know
		n, err := stratum.ParseNotify(msg.Params)
		if err != nil {
			return err
		}
		line, _ := stratum.AppendRequest(nil, nil, "mining.notify", n)
		m.noteWork(line, []byte(n.PrevHash), n.Clean, first, at)
	}
	return nil
}

// Run reads from the pool on the calling goroutine until the connection
// ends or ctx is done; it answers nothing (a Miner only submits). It
// returns the read error (nil once ctx is done).
func (m *Miner) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { m.conn.Close() })
	defer stop()
	buf := make([]byte, readBufSize)
	for {
		n, err := m.conn.Read(buf)
		at := time.Now()
		if n > 0 {
			if ferr := m.feed(buf[:n], at); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// WaitWork blocks until the first job arrived or ctx ends.
func (m *Miner) WaitWork(ctx context.Context) error {
	select {
	case <-m.workCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Counts returns how many submitted shares were accepted and rejected.
func (m *Miner) Counts() (accepted, rejected int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.accepted, m.rejected
}

// Extranonce1 returns the session's extranonce1 in hex.
func (m *Miner) Extranonce1() string { return m.en1Hex }

// Close closes the connection.
func (m *Miner) Close() error { return m.conn.Close() }

// Solve finds a share on the current job: one meeting the share target,
// or with block set one meeting the block target. It tries at most
// maxHashes nonces and reports false when none did.
func (m *Miner) Solve(block bool, maxHashes int) (Share, bool) {
	m.mu.Lock()
	w, err := m.workLocked()
	tgt := m.tgt
	m.en2++
	en2v := m.en2
	m.mu.Unlock()
	if w == nil || err != nil {
		return Share{}, false
	}
	if block {
		tgt = w.blockTgt
	}
	var full [8]byte
	binary.BigEndian.PutUint64(full[:], en2v)
	en2 := full[8-m.en2Size:] // the low bytes of the counter
	h := w.Header(m.en1, en2, w.NTime, 0, 0, 0)
	hdr := h.Bytes()
	for nonce := 0; nonce < maxHashes; nonce++ {
		binary.LittleEndian.PutUint32(hdr[76:], uint32(nonce))
		hash := chainmath.DoubleSHA256(hdr[:])
		if tgt.Meets(&hash) {
			return Share{Worker: m.User, Extranonce1: m.en1Hex, JobID: w.ID, Extranonce2: hex.EncodeToString(en2),
				NTime: w.NTime, Nonce: uint32(nonce), Hash: hash, Block: w.blockTgt.Meets(&hash)}, true
		}
	}
	return Share{}, false
}

// Submit sends sh; its answer is counted by Run.
func (m *Miner) Submit(sh Share) error {
	m.mu.Lock()
	id := m.nextID
	m.nextID++
	m.pending = append(m.pending, pendingShare{id: id, sh: sh})
	m.mu.Unlock()
	var line [256]byte
	buf := stratum.AppendSubmit(line[:0], uint64(id), &stratum.Submit{Worker: sh.Worker, JobID: sh.JobID, Extranonce2: sh.Extranonce2, NTime: stratum.Hex32(sh.NTime), Nonce: stratum.Hex32(sh.Nonce)})
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := m.conn.Write(buf)
	return err
}
