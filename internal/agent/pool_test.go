package agent

import (
	"bytes"
	"encoding/hex"
	"encoding/json"

	"fmt"

	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/stratum"
)

// fakePool is a small scripted Stratum V1 server on real loopback TCP. It
// answers the handshake, hands out a job after mining.authorize when told
// to, and checks every share by rebuilding the header from the fields the
// agent sent and the job it was sent: a share that misses the difficulty
// in force for its job is rejected and recorded as invalid.
type fakePool struct {
	t        testing.TB
	ln       net.Listener
	addr     string
	user     string
	en2Size  int
	autoDiff float64 // >0: after authorize send set_difficulty(autoDiff) and a clean job
	// rejectEvery >0: answer every n-th valid share with error 23 anyway.
	rejectEvery int

	sessions chan *fakeConn // connections that sent mining.authorize
	submits  chan submitRec // every mining.submit, checked
	overflow atomic.Uint64  // submits not recorded because the channel was full
	nextEn1  atomic.Uint32  // extranonce1 counter
	wg       sync.WaitGroup // serving goroutines
	connsMu  sync.Mutex     //
	conns    []*fakeConn    // every accepted connection
	replies  atomic.Uint64  // submit answers written
	rejects  atomic.Uint64  // submit answers written with an error
	codes    sync.Map       // error code → *atomic.Uint64
}

// fakeJob is a job as the pool sent it, with what was in force for it.
type fakeJob struct {
	n    stratum.Notify
	diff float64
	en1  []byte
}

// submitRec is one mining.submit as the pool saw it.
type submitRec struct {
	conn *fakeConn
	s    stratum.Submit
	at   time.Time
	diff float64 // the share's own difficulty, T1/hash
	err  error   // nil for a valid share
	code int     // error code answered (0: accepted)
}

// fakeConn is one accepted connection.
type fakeConn struct {
	p      *fakePool
	c      net.Conn
	closed chan struct{} // closed when the serving goroutine ends

	wmu sync.Mutex
	mu  sync.Mutex // guards the fields below
	en1 []byte
	// diff is the difficulty the next notify gets (set_difficulty applies
	// from the next notify).
	diff    float64
	jobs    map[string]*fakeJob
	methods []string
	seen    map[string]bool
}

// newFakePool listens on addr ("" for a free port) and serves; opts adjust
// the pool before it accepts anything.
func newFakePool(t testing.TB, addr string, opts ...func(*fakePool)) *fakePool {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePool{
		t: t, ln: ln, addr: ln.Addr().String(), user: "tester", en2Size: 4,
		sessions: make(chan *fakeConn, 16),
		submits:  make(chan submitRec, 1<<16),
	}
	p.nextEn1.Store(0x1000 + rand.Uint32N(1<<20))
	for _, o := range opts {
		o(p)
	}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.close)
	return p
}

// withDiff makes the pool send set_difficulty(d) and a clean job after
// every authorize.
func withDiff(d float64) func(*fakePool) { return func(p *fakePool) { p.autoDiff = d } }

func (p *fakePool) url() string { return "stratum+tcp://" + p.addr }

// close stops the listener and every connection and waits for them.
func (p *fakePool) close() {
	p.ln.Close()
	p.connsMu.Lock()
	for _, c := range p.conns {
		c.c.Close()
	}
	p.connsMu.Unlock()
	p.wg.Wait()
	if n := p.overflow.Load(); n != 0 {
		p.t.Errorf("fake pool: %d submits not recorded", n)
	}
}

func (p *fakePool) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		en1 := make([]byte, 4)
		v := p.nextEn1.Add(1)
		en1[0], en1[1], en1[2], en1[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		fc := &fakeConn{p: p, c: c, closed: make(chan struct{}), en1: en1, diff: 1,
			jobs: map[string]*fakeJob{}, seen: map[string]bool{}}
		p.connsMu.Lock()
		p.conns = append(p.conns, fc)
		p.connsMu.Unlock()
		p.wg.Go(fc.serve)
	}
}

func (c *fakeConn) write(line []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.Write(line) // a write error shows up as a read error in serve
}

func (c *fakeConn) reply(id json.RawMessage, result any, e *stratum.Error) {
	line, err := stratum.AppendResponse(nil, id, result, e)
	if err != nil {
		c.p.t.Error(err)
	}
	c.write(line)
}

// call sends a notification from the pool.
func (c *fakeConn) call(method string, params any) {
	line, err := stratum.AppendRequest(nil, nil, method, params)
	if err != nil {
		c.p.t.Error(err)
	}
	c.write(line)
}

// setDifficulty sends mining.set_difficulty; it governs the next notify.
func (c *fakeConn) setDifficulty(d float64) {
	c.mu.Lock()
	c.diff = d
	c.mu.Unlock()
	c.call("mining.set_difficulty", []float64{d})
}

// setExtranonce sends mining.set_extranonce; it governs the next notify.
func (c *fakeConn) setExtranonce(en1 []byte) {
	c.mu.Lock()
	c.en1 = en1
	c.mu.Unlock()
	c.call("mining.set_extranonce", []any{hex.EncodeToString(en1), c.p.en2Size})
}

// notify sends a fresh job and returns when the line was written.
func (c *fakeConn) notify(id string, clean bool) time.Time {
	c.mu.Lock()
	n := makeNotify(c.p.t, id, clean, len(c.en1)+c.p.en2Size)
	c.jobs[id] = &fakeJob{n: *n, diff: c.diff, en1: c.en1}
	c.mu.Unlock()
	line, err := stratum.AppendRequest(nil, nil, "mining.notify", n)
	if err != nil {
		c.p.t.Error(err)
	}
	c.write(line)
	return time.Now()
}

// methodLog returns the methods the agent called, in order.
func (c *fakeConn) methodLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.methods...)
}

// line is one line from the agent and when the pool read it.
type line struct {
	b  []byte
	at time.Time
}

// serve reads lines in one goroutine, stamping each when it arrives, and
// handles them in another, so a backlog of share checks does not delay
// the arrival times.
func (c *fakeConn) serve() {
	defer close(c.closed)
	defer c.c.Close()
	lines := make(chan line, 1<<14)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(lines)
	wg.Go(func() {
		for l := range lines {
			c.handle(l)
		}
	})
	lr := stratum.NewLineReader(c.c, 16<<10, 4096)
	for {
		b, err := lr.ReadLine()
		if err != nil {
			return
		}
		select {
		case lines <- line{append([]byte(nil), b...), time.Now()}:
		default:
			c.p.t.Error("fake pool: line backlog full")
			return
		}
	}
}

func (c *fakeConn) handle(l line) {
	m, err := stratum.Parse(l.b)
	if err != nil {
		c.p.t.Errorf("fake pool: agent sent %q: %v", l.b, err)
		c.c.Close()
		return
	}
	if m.Method == "" {
		return
	}
	if m.IsNotification() {
		c.p.t.Errorf("fake pool: agent sent %s without an id", m.Method)
	}
	c.mu.Lock()
	c.methods = append(c.methods, m.Method)
	c.mu.Unlock()
	switch m.Method {
	case "mining.configure":
		c.reply(m.ID, map[string]any{"version-rolling": true, "version-rolling.mask": "1fffe000"}, nil)
	case "mining.subscribe":
		subs := [][]string{{"mining.set_difficulty", "s1"}, {"mining.notify", "s1"}}
		c.reply(m.ID, []any{subs, hex.EncodeToString(c.en1), c.p.en2Size}, nil)
	case "mining.authorize":
		var p []string
		ok := json.Unmarshal(m.Params, &p) == nil && len(p) == 2 && p[0] == c.p.user
		c.reply(m.ID, ok, nil)
		if ok && c.p.autoDiff > 0 {
			c.setDifficulty(c.p.autoDiff)
			c.notify("j1", true)
		}
		c.p.sessions <- c
	case "mining.extranonce.subscribe":
		c.reply(m.ID, true, nil)
	case "mining.submit":
		c.submit(m, l.at)
	default:
		c.reply(m.ID, nil, &stratum.Error{Code: stratum.CodeOther, Message: "unknown method"})
	}
}

func (c *fakeConn) submit(m *stratum.Message, at time.Time) {
	rec := submitRec{conn: c, at: at}
	s, err := stratum.ParseSubmit(m.Params)
	if err != nil {
		rec.err = err
		rec.code = stratum.CodeOther
	} else {
		rec.s = *s
		rec.diff, rec.code, rec.err = c.check(s)
	}
	if rec.err == nil && c.p.rejectEvery > 0 && (c.p.replies.Load()+1)%uint64(c.p.rejectEvery) == 0 {
		rec.code = stratum.CodeLowDifficulty // scripted rejection of a valid share
	}
	if rec.code == 0 {
		c.reply(m.ID, true, nil)
	} else {
		msg := "rejected"
		if rec.err != nil {
			msg = rec.err.Error()
		}
		c.reply(m.ID, nil, &stratum.Error{Code: rec.code, Message: msg})
		c.p.rejects.Add(1)
		v, _ := c.p.codes.LoadOrStore(rec.code, new(atomic.Uint64))
		v.(*atomic.Uint64).Add(1)
	}
	c.p.replies.Add(1)
	select {
	case c.p.submits <- rec:
	default:
		c.p.overflow.Add(1)
	}
}

// check rebuilds the header of a share, written out here step by step
// from docs/stratum-v1.md ("Rebuilding the header") rather than with the
// agent's code or stratum.Job, so that it checks them independently, and
// returns the share's difficulty or why it is invalid.
func (c *fakeConn) check(s *stratum.Submit) (float64, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[s.JobID]
	if j == nil {
		return 0, stratum.CodeJobNotFound, fmt.Errorf("job %q unknown", s.JobID)
	}
	if s.Worker != c.p.user {
		return 0, stratum.CodeUnauthorized, fmt.Errorf("worker %q", s.Worker)
	}
	if s.VersionBits != "" {
		return 0, stratum.CodeOther, fmt.Errorf("version_bits %q sent though the agent does not roll", s.VersionBits)
	}
	en2, err := hex.DecodeString(s.Extranonce2)
	if err != nil || len(en2) != c.p.en2Size {
		return 0, stratum.CodeOther, fmt.Errorf("extranonce2 %q: want %d bytes of hex", s.Extranonce2, c.p.en2Size)
	}
	if s.NTime != j.n.NTime {
		return 0, stratum.CodeOther, fmt.Errorf("ntime %q, job has %q", s.NTime, j.n.NTime)
	}
	nonce, err := stratum.ParseHex32("nonce", s.Nonce)
	if err != nil {
		return 0, stratum.CodeOther, err
	}
	key := s.JobID + "/" + s.Extranonce2 + "/" + s.Nonce
	if c.seen[key] {
		return 0, stratum.CodeDuplicate, fmt.Errorf("duplicate share %s", key)
	}
	c.seen[key] = true

	cb1, _ := hex.DecodeString(j.n.Coinb1)
	cb2, _ := hex.DecodeString(j.n.Coinb2)
	coinbase := bytes.Join([][]byte{cb1, j.en1, en2, cb2}, nil)
	root := chainmath.DoubleSHA256(coinbase)
	for _, b := range j.n.Branch {
		bb, _ := hex.DecodeString(b)
		root = chainmath.DoubleSHA256(append(root[:], bb...))
	}
	prevWords, _ := hex.DecodeString(j.n.PrevHash)
	var hdr [80]byte
	version, _ := stratum.ParseHex32("version", j.n.Version)
	ntime, _ := stratum.ParseHex32("ntime", s.NTime)
	nbits, _ := stratum.ParseHex32("nbits", j.n.NBits)
	le32(hdr[0:], version)
	for i := 0; i < 32; i += 4 { // swap each word back
		hdr[4+i], hdr[5+i], hdr[6+i], hdr[7+i] = prevWords[i+3], prevWords[i+2], prevWords[i+1], prevWords[i]
	}
	copy(hdr[36:68], root[:])
	le32(hdr[68:], ntime)
	le32(hdr[72:], nbits)
	le32(hdr[76:], nonce)
	h := chainmath.DoubleSHA256(hdr[:])
	target, err := chainmath.TargetForDifficulty(j.diff)
	if err != nil {
		return 0, stratum.CodeOther, err
	}
	d := chainmath.HashDifficulty(h)
	if !target.Meets(&h) {
		return d, stratum.CodeLowDifficulty, fmt.Errorf("share of job %s difficulty %g below %g (hash %s)", s.JobID, d, j.diff, h)
	}
	return d, 0, nil
}

func le32(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }

// makeNotify builds a plausible job: a real BIP34 coinbase split around
// the extranonce slot, a random previous block and a three-entry branch.
func makeNotify(t testing.TB, id string, clean bool, slot int) *stratum.Notify {
	cb1, cb2, err := chainmath.BuildCoinbase(chainmath.CoinbaseParams{
		Height:         int64(100 + rand.IntN(1000)),
		ExtranonceSize: slot,
		Tag:            []byte("/fakepool/"),
		Outputs:        []*wire.TxOut{{Value: 50e8, PkScript: []byte{0x51}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var prev chainmath.Hash
	for i := range prev {
		prev[i] = byte(rand.Uint32())
	}
	n := &stratum.Notify{
		JobID:    id,
		PrevHash: chainmath.StratumPrevHash(prev),
		Coinb1:   hex.EncodeToString(cb1),
		Coinb2:   hex.EncodeToString(cb2),
		Version:  "20000000",
		NBits:    "1d00ffff", // difficulty 1: no test share is a block
		NTime:    stratum.Hex32(uint32(time.Now().Unix())),
		Clean:    clean,
	}
	for range 3 {
		var b chainmath.Hash
		for i := range b {
			b[i] = byte(rand.Uint32())
		}
		n.Branch = append(n.Branch, hex.EncodeToString(b[:]))
	}
	return n
}

// nextSession waits for a connection that authorized.
func (p *fakePool) nextSession(t testing.TB) *fakeConn {
	t.Helper()
	select {
	case c := <-p.sessions:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no agent session within 10 s")
		return nil
	}
}

// nextSubmit waits for the next share; it fails the test on an invalid
// one unless allowInvalid.
func (p *fakePool) nextSubmit(t testing.TB) submitRec {
	t.Helper()
	select {
	case r := <-p.submits:
		if r.err != nil {
			t.Fatalf("invalid share %+v: %v", r.s, r.err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no share within 20 s")
		return submitRec{}
	}
}

// waitClosed waits until c's serving goroutine has ended (the agent hung
// up or the pool closed it).
func (c *fakeConn) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open after 10 s")
	}
}
