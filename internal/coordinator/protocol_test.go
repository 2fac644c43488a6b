package coordinator_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/work"
)

// harness is a coordinator on the embedded chain, listening on 127.0.0.1:0.
type harness struct {
	t     *testing.T
	coord *coordinator.Coordinator
	chain *simchain.Chain
	store *store.Store
	addr  string
	pipe  *pipeListener // set with harnessOpts.pipe
	stop  func()        // stops the coordinator (and closes its own store); idempotent
	// cancel ends Serve's context without waiting for it to return (a
	// term ending while a share is being handled).
	cancel context.CancelFunc
}

type harnessOpts struct {
	blockDiff float64
	shareDiff float64
	cfg       func(*coordinator.Config)
	// pipe serves in-memory connections (net.Pipe) instead of TCP, for
	// tests inside a testing/synctest bubble, where time is virtual.
	pipe bool
	// source, if set, wraps the embedded chain as the coordinator's
	// source (to inject faults).
	source func(*simchain.Chain) work.Source
	// store, if set, is used instead of a new database file.
	store *store.Store
	// listenAddr is the TCP address to listen on (127.0.0.1:0).
	listenAddr string
	// listen, if set, wraps the listener before Serve gets it.
	listen func(net.Listener) net.Listener
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	if o.blockDiff == 0 {
		o.blockDiff = 1e6 // no share becomes a block by accident
	}
	if o.shareDiff == 0 {
		o.shareDiff = 1e-7
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := o.store
	if st == nil {
		var err error
		if st, err = store.Open(filepath.Join(t.TempDir(), "powcoord.db")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 10 * time.Second, StartDifficulty: o.blockDiff, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var src work.Source = chain
	if o.source != nil {
		src = o.source(chain)
	}
	cfg := coordinator.Config{Source: src, Store: st, ShareDifficulty: o.shareDiff, SharesPerMinute: -1, Logger: log}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	coord, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	var pl *pipeListener
	if o.pipe {
		pl = newPipeListener()
		ln = pl
	} else {
		if o.listenAddr == "" {
			o.listenAddr = "127.0.0.1:0"
		}
		if ln, err = net.Listen("tcp", o.listenAddr); err != nil {
			t.Fatal(err)
		}
	}
	if o.listen != nil {
		ln = o.listen(ln)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if o.store == nil {
				st.Close()
			}
		})
	}
	t.Cleanup(stop)
	return &harness{t: t, coord: coord, chain: chain, store: st, addr: ln.Addr().String(), pipe: pl, stop: stop, cancel: cancel}
}

// client is a raw Stratum client for tests.
type client struct {
	t      *testing.T
	conn   net.Conn
	r      *bufio.Reader
	nextID int
	queue  []*stratum.Message // notifications read while waiting for a response

	en1     []byte
	en2Size int
	diff    float64
	jobs    map[string]*stratum.Notify
	lastJob *stratum.Notify
}

func (h *harness) dial() *client {
	h.t.Helper()
	var conn net.Conn
	if h.pipe != nil {
		conn = h.pipe.dial()
	} else {
		var err error
		if conn, err = net.Dial("tcp", h.addr); err != nil {
			h.t.Fatal(err)
		}
	}
	h.t.Cleanup(func() { conn.Close() })
	return &client{t: h.t, conn: conn, r: bufio.NewReader(conn), jobs: map[string]*stratum.Notify{}}
}

func (c *client) send(line string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, line+"\n"); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) readMsg() (*stratum.Message, error) {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	return stratum.Parse(line)
}

// call sends a request and returns its response, queueing notifications.
func (c *client) call(method string, params any) *stratum.Message {
	c.t.Helper()
	c.nextID++
	id := c.nextID
	b, _ := stratum.AppendRequest(nil, id, method, params)
	c.send(strings.TrimSuffix(string(b), "\n"))
	for {
		m, err := c.readMsg()
		if err != nil {
			c.t.Fatalf("%s: reading response: %v", method, err)
		}
		if m.Method != "" {
			c.handle(m)
			c.queue = append(c.queue, m)
			continue
		}
		if string(m.ID) != fmt.Sprint(id) {
			c.t.Fatalf("%s: response id %s, want %d", method, m.ID, id)
		}
		if m.Result == nil {
			c.t.Fatalf("%s: response without a result key", method)
		}
		return m
	}
}

func (c *client) handle(m *stratum.Message) {
	switch m.Method {
	case "mining.set_difficulty":
		var p []float64
		json.Unmarshal(m.Params, &p)
		c.diff = p[0]
	case "mining.notify":
		n, err := stratum.ParseNotify(m.Params)
		if err != nil {
			c.t.Fatal(err)
		}
		if n.Clean {
			clear(c.jobs)
		}
		c.jobs[n.JobID] = n
		c.lastJob = n
	}
}

// next returns the next notification, from the queue or the wire.
func (c *client) next() *stratum.Message {
	c.t.Helper()
	if len(c.queue) > 0 {
		m := c.queue[0]
		c.queue = c.queue[1:]
		return m
	}
	m, err := c.readMsg()
	if err != nil {
		c.t.Fatalf("waiting for a notification: %v", err)
	}
	if m.Method == "" {
		c.t.Fatalf("unexpected response %s", m.Result)
	}
	c.handle(m)
	return m
}

// waitNotify skips notifications until a mining.notify arrives.
func (c *client) waitNotify() *stratum.Notify {
	c.t.Helper()
	for {
		m := c.next()
		if m.Method == "mining.notify" {
			n, _ := stratum.ParseNotify(m.Params)
			return n
		}
	}
}

func (c *client) subscribe() {
	c.t.Helper()
	m := c.call("mining.subscribe", []string{"test/1.0"})
	var res []json.RawMessage
	if err := json.Unmarshal(m.Result, &res); err != nil || len(res) != 3 {
		c.t.Fatalf("subscribe result %s", m.Result)
	}
	var en1 string
	json.Unmarshal(res[1], &en1)
	json.Unmarshal(res[2], &c.en2Size)
	var err error
	if c.en1, err = hex.DecodeString(en1); err != nil || len(c.en1) != 4 {
		c.t.Fatalf("extranonce1 %q", en1)
	}
}

func (c *client) authorize(user string) {
	c.t.Helper()
	m := c.call("mining.authorize", []string{user, "x"})
	if string(m.Result) != "true" {
		c.t.Fatalf("authorize %s: %s %s", user, m.Result, m.Error)
	}
}

// ready subscribes, authorizes and waits for the first job.
func (c *client) ready(user string) *stratum.Notify {
	c.t.Helper()
	c.subscribe()
	c.authorize(user)
	for c.lastJob == nil {
		c.next()
	}
	c.queue = nil
	return c.lastJob
}

type share struct {
	worker, job, en2, ntime, nonce, vbits string
	hash                                  chainmath.Hash
}

func (s share) params() []string {
	p := []string{s.worker, s.job, s.en2, s.ntime, s.nonce}
	if s.vbits != "" {
		p = append(p, s.vbits)
	}
	return p
}

// header rebuilds the header of a share step by step, independently of
// stratum.Job, as docs/stratum-v1.md ("Rebuilding the header") says.
func header(n *stratum.Notify, en1, en2 []byte, ntime, nonce, version uint32) [80]byte {
	cb, _ := hex.DecodeString(n.Coinb1 + hex.EncodeToString(en1) + hex.EncodeToString(en2) + n.Coinb2)
	var branch []chainmath.Hash
	for _, b := range n.Branch {
		var h chainmath.Hash
		hex.Decode(h[:], []byte(b))
		branch = append(branch, h)
	}
	prev, _ := chainmath.ParseStratumPrevHash(n.PrevHash)
	nbits, _ := stratum.ParseHex32("nbits", n.NBits)
	h := chainmath.Header{Version: version, PrevBlock: prev, MerkleRoot: chainmath.RootFromBranch(chainmath.DoubleSHA256(cb), branch), Time: ntime, Bits: nbits, Nonce: nonce}
	return h.Bytes()
}

// solve finds a share for job n at difficulty diff; block says whether it
// must (true) or must not (false) meet the block target.
func (c *client) solve(n *stratum.Notify, en2v uint32, diff float64, wantBlock bool, vbits uint32) share {
	c.t.Helper()
	ntime, _ := stratum.ParseHex32("ntime", n.NTime)
	return c.solveAt(n, en2v, diff, wantBlock, vbits, ntime)
}

// solveAt is solve with the share's ntime given.
func (c *client) solveAt(n *stratum.Notify, en2v uint32, diff float64, wantBlock bool, vbits, ntime uint32) share {
	c.t.Helper()
	return c.solveNonces(n, en2v, diff, wantBlock, vbits, ntime, 0)
}

// solveNonces is solveAt counting nonces up from start.
func (c *client) solveNonces(n *stratum.Notify, en2v uint32, diff float64, wantBlock bool, vbits, ntime, start uint32) share {
	c.t.Helper()
	shareTgt, _ := chainmath.TargetForDifficulty(diff)
	nbits, _ := stratum.ParseHex32("nbits", n.NBits)
	bt, _ := chainmath.CompactToBig(nbits)
	blockTgt := chainmath.TargetFromBig(bt)
	version, _ := stratum.ParseHex32("version", n.Version)
	version = version&^coordinator.DefaultVersionMask | vbits
	en2 := make([]byte, c.en2Size)
	binary.BigEndian.PutUint32(en2[c.en2Size-4:], en2v)
	hdr := header(n, c.en1, en2, ntime, 0, version)
	for nonce := start; nonce < 1<<31; nonce++ {
		binary.LittleEndian.PutUint32(hdr[76:], nonce)
		h := chainmath.DoubleSHA256(hdr[:])
		if !shareTgt.Meets(&h) || blockTgt.Meets(&h) != wantBlock {
			continue
		}
		s := share{job: n.JobID, en2: hex.EncodeToString(en2), ntime: stratum.Hex32(ntime), nonce: stratum.Hex32(nonce), hash: h}
		if vbits != 0 {
			s.vbits = stratum.Hex32(vbits)
		}
		return s
	}
	c.t.Fatal("no share found")
	return share{}
}

// submit sends a share and returns (accepted, error code).
func (c *client) submit(s share) (bool, int) {
	c.t.Helper()
	m := c.call("mining.submit", s.params())
	if e := m.ResponseError(); e != nil {
		return false, e.Code
	}
	return string(m.Result) == "true", 0
}

func TestHandshake(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.dial()

	// mining.configure before subscribe: the mask is the intersection.
	m := c.call("mining.configure", []any{[]string{"version-rolling", "minimum-difficulty"}, map[string]any{"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2}})
	var conf map[string]any
	json.Unmarshal(m.Result, &conf)
	if conf["version-rolling"] != true || conf["version-rolling.mask"] != "1fffffe0" || conf["minimum-difficulty"] != false {
		t.Fatalf("configure result %s", m.Result)
	}
	m = c.call("mining.configure", []any{[]string{"version-rolling"}, map[string]any{"version-rolling.mask": "00006000"}})
	json.Unmarshal(m.Result, &conf)
	if conf["version-rolling.mask"] != "00006000" {
		t.Fatalf("narrow mask result %s", m.Result)
	}

	// The subscribe reply is the first line a fresh connection gets.
	c2 := h.dial()
	c2.subscribe()
	if c2.en2Size != 4 {
		t.Fatalf("extranonce2 size %d", c2.en2Size)
	}
	if m := c2.call("mining.extranonce.subscribe", []any{}); string(m.Result) != "true" {
		t.Fatalf("extranonce.subscribe %s", m.Result)
	}
	// suggest_difficulty before authorize sets the first difficulty.
	if m := c2.call("mining.suggest_difficulty", []any{0.0005}); string(m.Result) != "true" {
		t.Fatalf("suggest_difficulty %s %s", m.Result, m.Error)
	}
	c2.authorize("alice")
	if first := c2.next(); first.Method != "mining.set_difficulty" {
		t.Fatalf("first notification %s, want mining.set_difficulty", first.Method)
	}
	if c2.diff != 0.0005 {
		t.Fatalf("difficulty %v, want the suggested 0.0005", c2.diff)
	}
	n := c2.waitNotify()
	if !n.Clean || len(n.PrevHash) != 64 || n.Version != "20000000" || len(n.Branch) != 0 {
		t.Fatalf("first job %+v", n)
	}
	// The job builds on the embedded chain's tip.
	prev, _ := chainmath.ParseStratumPrevHash(n.PrevHash)
	if got := h.chain.Current().PrevHash; prev != got {
		t.Fatalf("job prevhash %s, chain tip %s", prev, got)
	}
	// After authorize: a new difficulty comes with a new job.
	c2.call("mining.suggest_difficulty", []any{0.002})
	if m := c2.next(); m.Method != "mining.set_difficulty" || c2.diff != 0.002 {
		t.Fatalf("got %s diff %v", m.Method, c2.diff)
	}
	if n2 := c2.waitNotify(); n2.JobID == n.JobID || n2.Clean {
		t.Fatalf("re-targeted job %+v", n2)
	}
	// Unknown methods get error 20, not silence.
	m = c2.call("mining.get_transactions", []any{})
	if e := m.ResponseError(); e == nil || e.Code != 20 {
		t.Fatalf("unknown method answered %s %s", m.Result, m.Error)
	}
	// Bad suggest_difficulty is an error naming the value.
	m = c2.call("mining.suggest_difficulty", []any{-3})
	if e := m.ResponseError(); e == nil || !strings.Contains(e.Message, "-3") {
		t.Fatalf("negative difficulty answered %s %s", m.Result, m.Error)
	}
	// Extranonce1 differs per live connection.
	c3 := h.dial()
	c3.subscribe()
	if hex.EncodeToString(c2.en1) == hex.EncodeToString(c3.en1) {
		t.Fatal("two connections share an extranonce1")
	}
}

func TestSubmitRules(t *testing.T) {
	const diff = 1e-7
	h := newHarness(t, harnessOpts{shareDiff: diff})
	c := h.dial()
	c.call("mining.configure", []any{[]string{"version-rolling"}, map[string]any{"version-rolling.mask": "1fffe000"}})
	n := c.ready("alice")

	valid := func(en2 uint32) share {
		s := c.solve(n, en2, diff, false, 0)
		s.worker = "alice"
		return s
	}
	codeOf := func(name string, s share, want int) {
		t.Helper()
		ok, code := c.submit(s)
		if ok || code != want {
			t.Fatalf("%s: accepted=%v code=%d, want rejection %d", name, ok, code, want)
		}
	}

	s := valid(1)
	if ok, code := c.submit(s); !ok {
		t.Fatalf("valid share rejected with %d", code)
	}
	codeOf("duplicate", s, stratum.CodeDuplicate)

	s = valid(2)
	s.job = "ffffff"
	codeOf("unknown job", s, stratum.CodeJobNotFound)

	s = valid(3)
	s.worker = "mallory"
	codeOf("unauthorized worker", s, stratum.CodeUnauthorized)
	s.worker = ""
	codeOf("empty worker", s, stratum.CodeUnauthorized)
	// A second worker on the same connection (a proxy's): its shares
	// count, on its own job (whose coinbase pays bob, not alice); a
	// third, never authorized, still does not.
	c.authorize("bob")
	nb := c.waitNotify()
	s.worker = "bob"
	codeOf("second worker's share on the first worker's job", s, stratum.CodeOther)
	sb := c.solve(nb, 3, diff, false, 0)
	sb.worker = "bob"
	if ok, code := c.submit(sb); !ok {
		t.Fatalf("second worker's share on its own job rejected with %d", code)
	}
	s = valid(30)
	s.worker = "mallory"
	codeOf("unauthorized worker after a second authorize", s, stratum.CodeUnauthorized)
	s.worker = "alice"
	if ok, code := c.submit(s); !ok {
		t.Fatalf("first worker's share after a second authorize rejected with %d", code)
	}

	s = valid(4)
	s.en2 = s.en2 + "00"
	codeOf("extranonce2 length", s, stratum.CodeOther)

	s = valid(5)
	ntime, _ := stratum.ParseHex32("ntime", n.NTime)
	s.ntime = stratum.Hex32(ntime - 1)
	codeOf("ntime before the job", s, stratum.CodeOther)
	s.ntime = stratum.Hex32(uint32(time.Now().Unix()) + 7200)
	codeOf("ntime too far ahead", s, stratum.CodeOther)

	// Version bits: inside the mask accepted, outside rejected.
	vs := c.solve(n, 6, diff, false, 0x00004000)
	vs.worker = "alice"
	if ok, code := c.submit(vs); !ok {
		t.Fatalf("share with rolled version bits rejected with %d", code)
	}
	vs = valid(7)
	vs.vbits = "00000001"
	codeOf("version bits outside the mask", vs, stratum.CodeOther)

	// Low difficulty: a share good for diff but judged at a harder job.
	s = valid(8)
	hashDiff := chainmath.HashDifficulty(s.hash)
	c.call("mining.suggest_difficulty", []any{hashDiff * 4})
	n2 := c.waitNotify()
	// The re-targeted job is new work on the same template (another
	// coinbase variant): a share good for diff but not for the new one.
	if n2.Coinb2 == n.Coinb2 || n2.PrevHash != n.PrevHash {
		t.Fatalf("re-targeted job: coinb2 %s (was %s), prevhash %s (was %s)", n2.Coinb2, n.Coinb2, n2.PrevHash, n.PrevHash)
	}
	var s2 share
	for en2 := uint32(9); ; en2++ {
		if s2 = c.solve(n2, en2, diff, false, 0); chainmath.HashDifficulty(s2.hash) < hashDiff*4 {
			break
		}
	}
	s2.worker = "alice"
	codeOf("low difficulty", s2, stratum.CodeLowDifficulty)
	// The same share on the old job (its difficulty still applies) is fine.
	if ok, code := c.submit(s); !ok {
		t.Fatalf("share on the earlier job rejected with %d", code)
	}

	// Malformed submit params.
	m := c.call("mining.submit", []any{"alice", 1})
	if e := m.ResponseError(); e == nil || e.Code != stratum.CodeOther {
		t.Fatalf("malformed submit answered %s %s", m.Result, m.Error)
	}

	// Not subscribed: a connection that only authorized.
	c2 := h.dial()
	c2.authorize("bob")
	ok, code := c2.submit(share{worker: "bob", job: "1", en2: "00000000", ntime: n.NTime, nonce: "00000000"})
	if ok || code != stratum.CodeNotSubscribed {
		t.Fatalf("unsubscribed submit: %v %d", ok, code)
	}

	st := h.coord.Status()
	var alice coordinator.WorkerStats
	for _, w := range st.Workers {
		if w.Name == "alice" {
			alice = w
		}
	}
	// The session's account is its first worker's: bob's share counts
	// there too (the ledger keeps it under bob).
	if alice.Accepted != 5 {
		t.Errorf("alice accepted %d, want 5", alice.Accepted)
	}
	want := map[string]uint64{"duplicate": 1, "job-not-found": 1, "unauthorized": 3, "bad-extranonce2": 1, "bad-ntime": 2, "bad-version": 1, "low-difficulty": 1, "malformed": 1}
	for k, v := range want {
		if alice.Rejected[k] != v {
			t.Errorf("alice rejected[%s] = %d, want %d (all: %v)", k, alice.Rejected[k], v, alice.Rejected)
		}
	}
	// Every accepted share is in the ledger.
	shares, err := h.store.Shares(context.Background(), "alice")
	if err != nil || len(shares) != 4 {
		t.Fatalf("ledger has %d shares for alice (%v), want 4", len(shares), err)
	}
	if shares, err := h.store.Shares(context.Background(), "bob"); err != nil || len(shares) != 1 {
		t.Fatalf("ledger has %d shares for bob (%v), want 1", len(shares), err)
	}
}

func TestBlockAndStale(t *testing.T) {
	// Block difficulty low enough that the test finds blocks quickly.
	h := newHarness(t, harnessOpts{blockDiff: 2e-6, shareDiff: 1e-7})
	a, b := h.dial(), h.dial()
	na := a.ready("alice")
	nb := b.ready("bob")
	height := h.chain.Current().Height

	s := a.solve(na, 1, 1e-7, true, 0)
	s.worker = "alice"
	if ok, code := a.submit(s); !ok {
		t.Fatalf("block share rejected with %d", code)
	}
	// Both sessions get a clean job on the new tip.
	for _, c := range []*client{a, b} {
		n := c.waitNotify()
		if !n.Clean {
			t.Fatalf("job after a block is not clean: %+v", n)
		}
		prev, _ := chainmath.ParseStratumPrevHash(n.PrevHash)
		if prev != s.hash {
			t.Fatalf("new job builds on %s, want the found block %s", prev, s.hash)
		}
	}
	if got := h.chain.Current().Height; got != height+1 {
		t.Fatalf("chain height %d, want %d", got, height+1)
	}
	blocks, _ := h.store.LastBlocks(context.Background(), 1)
	if len(blocks) != 1 || blocks[0].Hash != s.hash || blocks[0].Finder != "alice" {
		t.Fatalf("stored tip %+v", blocks)
	}
	// Bob's share on the old job is stale.
	sb := b.solve(nb, 1, 1e-7, false, 0)
	sb.worker = "bob"
	if ok, code := b.submit(sb); ok || code != stratum.CodeJobNotFound {
		t.Fatalf("stale share: %v %d", ok, code)
	}
	if h.coord.Status().BlocksFound != 1 {
		t.Fatalf("blocks found %d", h.coord.Status().BlocksFound)
	}
}

func TestHostileLines(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	// Invalid JSON: an error reply, then the connection closes.
	c := h.dial()
	c.send(`{"id": 1, "method": "mining.subscribe", "params": [`)
	m, err := c.readMsg()
	if err != nil || m.ResponseError() == nil || m.ResponseError().Code != stratum.CodeOther {
		t.Fatalf("invalid JSON answered %+v %v", m, err)
	}
	if _, err := c.readMsg(); err == nil {
		t.Fatal("connection still open after invalid JSON")
	}
	// 200 KB without a newline: closed, nothing else.
	c = h.dial()
	go io.WriteString(c.conn, strings.Repeat("A", 200*1024))
	if _, err := c.readMsg(); err == nil {
		t.Fatal("connection still open after a 200 KB line")
	}
	// The coordinator still serves honest miners.
	ok := h.dial()
	if n := ok.ready("carol"); n == nil {
		t.Fatal("no job after hostile input")
	}
}
