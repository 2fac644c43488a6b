// Package loadtest drives a Stratum V1 coordinator with many real
// sessions from one process: each session subscribes, authorizes, mines
// valid shares at a set rate on the jobs it is sent, and notes when new
// work arrives. It also serves tests that need a raw miner which reports
// exactly which shares the pool answered true.
package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	// clean flag and the time its line was read. The notify is recognised
	// by scanning bytes; it is parsed in full only when work is needed.
	OnNotify func(prevHash []byte, clean bool, at time.Time)

	conn    net.Conn
	r       *bufio.Reader
	en1     []byte
	en1Hex  string
	en2Size int

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

// Dial connects a Miner to addr from the local IP src ("" for any),
// subscribes and authorizes, and starts its reader. It returns when the
// handshake is answered.
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
	m := &Miner{User: user, conn: conn, r: bufio.NewReaderSize(conn, 1024), diff: 1, workCh: make(chan struct{})}
	if err := m.handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	return m, nil
}

// handshake sends subscribe and authorize and reads the subscribe reply.
func (m *Miner) handshake() error {
	m.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer m.conn.SetDeadline(time.Time{})
	buf, _ := stratum.AppendRequest(nil, 1, "mining.subscribe", []string{"powcoord-loadtest/1"})
	buf, _ = stratum.AppendRequest(buf, 2, "mining.authorize", []string{m.User, "x"})
	if _, err := m.conn.Write(buf); err != nil {
		return fmt.Errorf("sending the handshake: %w", err)
	}
	for got := 0; got < 2; {
		msg, at, err := m.readMsg()
		if err != nil {
			return fmt.Errorf("reading the handshake: %w", err)
		}
		if msg == nil {
			continue // a notify
		}
		if msg.Method != "" {
			if err := m.handleNote(msg, at); err != nil {
				return err
			}
			continue
		}
		got++
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
			if m.en1, err = hex.DecodeString(m.en1Hex); err != nil || m.en2Size < 4 || m.en2Size > 8 {
				return fmt.Errorf("subscribe result %s: bad extranonce", msg.Result)
			}
		} else if string(msg.Result) != "true" {
			return fmt.Errorf("authorize %q answered %s", m.User, msg.Result)
		}
	}
	m.nextID = 3
	return nil
}

// readLine reads the next line; at is when it was read, before any
// parsing (the notify latency should not include ours). The line is only
// valid until the next read.
func (m *Miner) readLine() (line []byte, at time.Time, err error) {
	line, err = m.r.ReadSlice('\n')
	at = time.Now()
	if errors.Is(err, bufio.ErrBufferFull) {
		rest, err2 := m.r.ReadBytes('\n')
		line, err = append(append([]byte(nil), line...), rest...), err2
	}
	return line, at, err
}

// readMsg reads the next line and handles a mining.notify itself, cheaply
// (see scanNotify); any other line is parsed and returned. msg is nil
// after a notify.
func (m *Miner) readMsg() (msg *stratum.Message, at time.Time, err error) {
	line, at, err := m.readLine()
	if err != nil {
		return nil, at, err
	}
	if prev, clean, ok := scanNotify(line); ok {
		m.noteWork(line, prev, clean, at)
		return nil, at, nil
	}
	msg, err = stratum.Parse(line)
	return msg, at, err
}

var (
	notifyMethod = []byte(`"method":"mining.notify"`)
	paramsOpen   = []byte(`"params":["`)
)

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
func (m *Miner) noteWork(line, prev []byte, clean bool, at time.Time) {
	m.mu.Lock()
	m.raw = append(m.raw[:0], line...)
	m.cur = nil
	first := !m.hasWork
	m.hasWork = true
	m.mu.Unlock()
	if first {
		close(m.workCh)
	}
	if m.OnNotify != nil {
		m.OnNotify(prev, clean, at)
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

func (m *Miner) handleNote(msg *stratum.Message, at time.Time) error {
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
		m.noteWork(line, []byte(n.PrevHash), n.Clean, at)
	}
	return nil
}

// Run reads from the pool until the connection ends or ctx is done; it
// answers nothing (a Miner only submits). It returns the read error.
func (m *Miner) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { m.conn.Close() })
	defer stop()
	for {
		msg, now, err := m.readMsg()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if msg == nil {
			continue // a notify
		}
		if msg.Method != "" {
			if err := m.handleNote(msg, now); err != nil {
				return err
			}
			continue
		}
		m.mu.Lock()
		if len(m.pending) == 0 {
			m.mu.Unlock()
			continue
		}
		p := m.pending[0]
		m.pending = m.pending[1:]
		ok := string(msg.Result) == "true"
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
