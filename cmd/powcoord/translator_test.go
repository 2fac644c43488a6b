package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/proxy"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/sv2"
)

// The translator (powcoord proxy) between V1 miners and a real
// coordinator serving Stratum V2 on the embedded chain.

// v1raw is a bare V1 miner: it mines every job from extranonce2 = 0 and
// nonce 0 (resetting its extranonce2 on each job), rolling version bit 13.
type v1raw struct {
	t       *testing.T
	conn    net.Conn
	lr      *stratum.LineReader
	id      int
	en1     []byte
	en2Size int
	diff    float64
	mask    uint32
	cur     *stratum.Job
	jobs    map[string]*stratum.Job
	nonce   uint32 // next nonce to try on cur
	cleans  int    // clean notifies seen
	setEn   int    // mining.set_extranonce seen
	seen    map[string]bool
	repeats []string // job ids sent again without a new extranonce1
}

const rawRoll = 0x00002000 // the version bit the raw miner rolls

// dialRaw connects, configures version rolling, subscribes (to
// mining.set_extranonce too when exSub) and authorizes as user.
func dialRaw(t *testing.T, addr, user string, exSub bool) *v1raw {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &v1raw{t: t, conn: nc, lr: stratum.NewLineReader(nc, 1<<16, 4096), jobs: map[string]*stratum.Job{}, seen: map[string]bool{}}
	res := c.call("mining.configure", []any{[]string{"version-rolling"}, map[string]any{"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2}})
	var conf map[string]any
	json.Unmarshal(res.Result, &conf)
	if conf["version-rolling"] != true || conf["version-rolling.mask"] != "1fffe000" {
		t.Fatalf("mining.configure answered %s, want version rolling under 1fffe000 (the intersection with 1fffffe0)", res.Result)
	}
	c.mask = 0x1fffe000
	res = c.call("mining.subscribe", []string{"raw/1"})
	var sub []json.RawMessage
	if err := json.Unmarshal(res.Result, &sub); err != nil || len(sub) != 3 {
		t.Fatalf("subscribe result %s", res.Result)
	}
	var en1 string
	json.Unmarshal(sub[1], &en1)
	json.Unmarshal(sub[2], &c.en2Size)
	c.en1, _ = hex.DecodeString(en1)
	if exSub {
		c.call("mining.extranonce.subscribe", []string{})
	}
	if res = c.call("mining.authorize", []string{user, "x"}); string(res.Result) != "true" {
		t.Fatalf("authorize %s: %s", user, res.Result)
	}
	return c
}

// read reads one line, applying notifications.
func (c *v1raw) read() (*stratum.Message, error) {
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := c.lr.ReadLine()
	if err != nil {
		return nil, err
	}
	m, err := stratum.Parse(line)
	if err != nil {
		c.t.Fatalf("proxy sent %q: %v", line, err)
	}
	switch m.Method {
	case "mining.set_difficulty":
		var p []float64
		json.Unmarshal(m.Params, &p)
		c.diff = p[0]
	case "mining.notify":
		j, err := stratum.ParseJob(m.Params)
		if err != nil {
			c.t.Fatalf("notify: %v", err)
		}
		if j.Clean {
			clear(c.jobs)
			c.cleans++
		}
		if c.seen[j.ID] {
			c.repeats = append(c.repeats, j.ID)
		}
		c.seen[j.ID] = true
		c.jobs[j.ID], c.cur, c.nonce = j, j, 0
	case "mining.set_extranonce":
		var p []json.RawMessage
		json.Unmarshal(m.Params, &p)
		var en1 string
		json.Unmarshal(p[0], &en1)
		json.Unmarshal(p[1], &c.en2Size)
		c.en1, _ = hex.DecodeString(en1)
		c.setEn++
		clear(c.seen) // the same job with a new extranonce1 is new work
	}
	return m, nil
}

// call sends a request and reads until its response.
func (c *v1raw) call(method string, params any) *stratum.Message {
	c.t.Helper()
	c.id++
	b, _ := stratum.AppendRequest(nil, c.id, method, params)
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
	for {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("%s: waiting for the answer: %v", method, err)
		}
		if m.Method == "" && string(m.ID) == fmt.Sprint(c.id) {
			return m
		}
	}
}

// work waits for a job.
func (c *v1raw) work() {
	c.t.Helper()
	for c.cur == nil {
		if _, err := c.read(); err != nil {
			c.t.Fatal(err)
		}
	}
}

// find returns the next nonce on the current job (extranonce2 zero,
// version bit 13 rolled) whose hash meets difficulty d, and the hash.
func (c *v1raw) find(d float64) (uint32, chainmath.Hash) {
	tgt, _ := chainmath.TargetForDifficulty(d)
	en2 := make([]byte, c.en2Size)
	root := c.cur.MerkleRoot(c.en1, en2)
	for {
		n := c.nonce
		c.nonce++
		h := c.cur.HeaderWithRoot(root, c.cur.NTime, n, rawRoll, c.mask)
		hash := h.Hash()
		if tgt.Meets(&hash) {
			return n, hash
		}
		if c.nonce == 1<<26 {
			c.t.Fatalf("no share at difficulty %v in 2^26 nonces", d)
		}
	}
}

// submit sends a share of the current job and returns the error code (0:
// accepted).
func (c *v1raw) submit(jobID string, nonce uint32) int {
	c.t.Helper()
	en2 := hex.EncodeToString(make([]byte, c.en2Size))
	m := c.call("mining.submit", []string{"raw", jobID, en2, stratum.Hex32(c.cur.NTime), stratum.Hex32(nonce), stratum.Hex32(rawRoll)})
	if e := m.ResponseError(); e != nil {
		return e.Code
	}
	if string(m.Result) != "true" {
		c.t.Fatalf("submit answered %s", m.Result)
	}
	return 0
}

// mineOne finds and submits one share at the miner's difficulty on the
// current job; it returns the error code.
func (c *v1raw) mineOne() int {
	c.t.Helper()
	c.work()
	return c.mineAt(c.diff)
}

// mineAt is mineOne at difficulty d.
func (c *v1raw) mineAt(d float64) int {
	c.t.Helper()
	c.work()
	n, _ := c.find(d)
	return c.submit(c.cur.ID, n)
}

// startProxy runs a proxy on 127.0.0.1:0 in front of upstreams.
func startProxy(t *testing.T, ctx context.Context, user string, upstreams ...string) (*proxy.Proxy, string, chan error) {
	t.Helper()
	p, err := proxy.New(proxy.Config{Upstreams: upstreams, User: user, SharesPerMinute: -1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, ln) }()
	return p, ln.Addr().String(), done
}

// waitFor polls cond every 20 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("after %v: %s", limit, what)
		}
		<-time.After(20 * time.Millisecond) // polling with a deadline
	}
	return time.Since(start)
}

func runAgents(t *testing.T, ctx context.Context, url string, users ...string) ([]*agent.Agent, *sync.WaitGroup) {
	return runAgentsAt(t, ctx, url, 2e6, users...)
}

// runAgentsAt runs one single-thread agent per user, each hashing at
// about rate hashes a second.
func runAgentsAt(t *testing.T, ctx context.Context, url string, rate float64, users ...string) ([]*agent.Agent, *sync.WaitGroup) {
	t.Helper()
	var wg sync.WaitGroup
	var out []*agent.Agent
	for _, u := range users {
		a, err := agent.New(agent.Config{URLs: []string{url}, User: u, Pass: "x", Threads: 1, Logger: quietLogger(), HashLimit: rate})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
		wg.Go(func() { a.Run(ctx) })
	}
	return out, &wg
}

// TestProxyV1MinersOnV2Coordinator: two V1 agents and two raw V1 miners
// (each mining every job from extranonce2 0 and nonce 0) behind the proxy
// mine on a coordinator's V2 listener: blocks are found and credited to
// the proxy's user, every forwarded share is accepted upstream, the
// coordinator's ledger holds exactly the shares the proxy forwarded, and
// the proxy answers duplicates, unknown jobs and low-difficulty shares
// itself with the V1 codes.
func TestProxyV1MinersOnV2Coordinator(t *testing.T) {
	dir := t.TempDir()
	f := testFlags(dir)
	f.listen.V2 = "127.0.0.1:0"
	f.pool.banMinShares = -1
	f.blockDiff = 4e-4 // a block every 20 shares or so
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(ctx)
	p, addr, pdone := startProxy(t, pctx, "proxyuser", inst.lns.SV2URL)

	// Two raw miners: the same search (extranonce2 0, nonces from 0) on
	// the same jobs, told apart only by their extranonce1 slices.
	r1 := dialRaw(t, addr, "raw.one", true)
	r2 := dialRaw(t, addr, "raw.two", false)
	if len(r1.en1) != 6 || r1.en2Size != 2 || string(r1.en1[:4]) != string(r2.en1[:4]) || string(r1.en1) == string(r2.en1) {
		t.Fatalf("extranonce1 %x (extranonce2 %d bytes) and %x: want the channel's 4-byte prefix and distinct 2-byte slices", r1.en1, r1.en2Size, r2.en1)
	}
	r1.work()
	r2.work()
	if r1.diff == 0 || r1.diff < 2e-5*0.999 {
		t.Fatalf("raw miner difficulty %v: want the channel's 2e-5 or more", r1.diff)
	}
	for i := range 3 {
		for _, r := range []*v1raw{r1, r2} {
			if code := r.mineOne(); code != 0 && code != stratum.CodeJobNotFound {
				t.Fatalf("raw share %d: error %d", i, code)
			}
		}
	}
	// Local judgement: a duplicate, an unknown job, a low-difficulty share.
	r1.work()
	n, _ := r1.find(r1.diff)
	if code := r1.submit(r1.cur.ID, n); code != 0 && code != stratum.CodeJobNotFound {
		t.Fatalf("share: error %d", code)
	} else if code == 0 {
		if code := r1.submit(r1.cur.ID, n); code != stratum.CodeDuplicate {
			t.Fatalf("the same share again: code %d, want %d (duplicate)", code, stratum.CodeDuplicate)
		}
	}
	if code := r1.submit("nosuchjob", n); code != stratum.CodeJobNotFound {
		t.Fatalf("unknown job: code %d, want %d", code, stratum.CodeJobNotFound)
	}
	low := r1.nonce
	for {
		h := r1.cur.HeaderWithRoot(r1.cur.MerkleRoot(r1.en1, make([]byte, r1.en2Size)), r1.cur.NTime, low, rawRoll, r1.mask)
		hash := h.Hash()
		if chainmath.HashDifficulty(hash) < r1.diff/2 {
			break
		}
		low++
	}
	if code := r1.submit(r1.cur.ID, low); code != stratum.CodeLowDifficulty && code != stratum.CodeJobNotFound {
		t.Fatalf("low-difficulty share: code %d, want %d", code, stratum.CodeLowDifficulty)
	}

	actx, acancel := context.WithCancel(ctx)
	agents, wg := runAgents(t, actx, "stratum+tcp://"+addr, "rig.a", "rig.b")
	waitFor(t, 3*time.Minute, "two blocks credited to the proxy's user and shares from every agent", func() bool {
		blocks, _ := inst.store.Blocks(ctx, 1, 0)
		n := 0
		for _, b := range blocks {
			if b.Finder == "proxyuser" {
				n++
			}
		}
		for _, a := range agents {
			if a.Stats().Accepted < 3 {
				return false
			}
		}
		return n >= 2
	})
	acancel()
	wg.Wait()
	r1.conn.Close()
	r2.conn.Close()
	if len(r1.repeats)+len(r2.repeats) != 0 {
		t.Fatalf("jobs sent twice to the raw miners: %q %q", r1.repeats, r2.repeats)
	}
	// Every forwarded share answered.
	waitFor(t, 10*time.Second, "every forwarded share answered upstream", func() bool {
		s := p.Stats()
		return s.Forwarded == s.UpstreamAccepted+s.UpstreamRejected
	})
	st := p.Stats()
	// A share on its way while the pool moved to a new block is stale
	// there (the proxy could not know yet); nothing else may be refused.
	if st.UpstreamRejected != st.RejectedUpstream["stale-share"] || st.Unanswered != 0 || st.Forwarded == 0 || st.UpstreamAccepted < st.Forwarded*2/3 {
		t.Fatalf("proxy stats %+v: want every forwarded share accepted upstream but the few that went stale on the way", st)
	}
	shares, err := inst.store.Shares(ctx, "proxyuser")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(shares)) != st.UpstreamAccepted {
		t.Fatalf("coordinator ledger: %d shares of proxyuser, the proxy forwarded %d and had %d accepted", len(shares), st.Forwarded, st.UpstreamAccepted)
	}
	// The shares are the miners' distinct work: no two share a header.
	seen := map[chainmath.Hash]bool{}
	for _, s := range shares {
		if seen[s.Hash] {
			t.Fatalf("share %s recorded twice", s.Hash)
		}
		seen[s.Hash] = true
	}
	if st.Blocks < 2 {
		t.Errorf("proxy counted %d block candidates, want at least the 2 the coordinator credited", st.Blocks)
	}
	for _, w := range inst.coord.Status().Workers {
		if w.Name == "proxyuser" && w.Rejected["duplicate"] != 0 {
			t.Errorf("coordinator saw %d duplicates from the proxy", w.Rejected["duplicate"])
		}
	}
	t.Logf("proxy: forwarded %d, accepted upstream %d (stale there %d), blocks %d; local accepted %d rejected %d", st.Forwarded, st.UpstreamAccepted, st.UpstreamRejected, st.Blocks, st.Accepted, st.Rejected)
	pcancel()
	if err := <-pdone; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-inst.done; err != nil {
		t.Fatal(err)
	}
	inst.close()

}

// minerStats returns the proxy's stats of the miner whose worker is name.
func minerStats(p *proxy.Proxy, name string) (proxy.MinerStats, bool) {
	for _, m := range p.Stats().Miners {
		if m.Worker == name {
			return m, true
		}
	}
	return proxy.MinerStats{}, false
}

// TestProxyFailoverKeepsMiners: the proxy's first upstream coordinator is
// shut down; within 5 s the proxy is on the second, and its miners with
// it: an agent and a raw miner that subscribed to mining.set_extranonce
// stay connected (new extranonce1, clean jobs) and have shares accepted
// on the second coordinator; a raw miner that did not subscribe is
// closed. No share the proxy counted accepted upstream is missing from
// either coordinator's ledger, and the second one holds exactly the
// shares it accepted.
func TestProxyFailoverKeepsMiners(t *testing.T) {
	t.Run("shutdown", func(t *testing.T) { testProxyFailover(t, false) })
	t.Run("crash", func(t *testing.T) { testProxyFailover(t, true) })
}

// relay forwards connections to a pool until crash drops them all at
// once: the pool as the proxy sees it when its host dies.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, u)
			r.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(r.crash)
	return r
}

func (r *relay) crash() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, not a goodbye
		}
		c.Close()
	}
}

func testProxyFailover(t *testing.T, crash bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dirA := t.TempDir()
	start := func(dir string) (*instance, context.CancelFunc) {
		f := testFlags(dir)
		f.listen.V2 = "127.0.0.1:0"
		f.pool.banMinShares = -1
		f.blockDiff = 4e-4
		cctx, ccancel := context.WithCancel(ctx)
		inst, err := startCoordinator(cctx, f, quietLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return inst, ccancel
	}
	a, killA := start(dirA)
	b, killB := start(t.TempDir())
	urlA, urlB := a.lns.SV2URL, b.lns.SV2URL
	kill := killA
	if crash {
		_, key, err := sv2.ParseURL(urlA)
		if err != nil {
			t.Fatal(err)
		}
		r := startRelay(t, a.lns.V2.Addr().String())
		urlA, kill = sv2.URL(r.ln.Addr().String(), key), r.crash
	}
	p, addr, pdone := startProxy(t, ctx, "proxyuser", urlA, urlB)
	up := func(url string) proxy.UpstreamStats {
		for _, u := range p.Stats().Upstreams {
			if u.URL == url {
				return u
			}
		}
		t.Fatalf("no upstream %s in the stats", url)
		return proxy.UpstreamStats{}
	}

	kept := dialRaw(t, addr, "raw.kept", true)
	dropped := dialRaw(t, addr, "raw.dropped", false)
	if code := kept.mineOne(); code != 0 {
		t.Fatalf("share on the first upstream: error %d", code)
	}
	actx, acancel := context.WithCancel(ctx)
	agents, wg := runAgents(t, actx, "stratum+tcp://"+addr, "rig.a")
	ag := agents[0]
	waitFor(t, time.Minute, "shares accepted on the first upstream", func() bool {
		return up(urlA).Accepted >= 5 && ag.Stats().Accepted >= 3
	})
	oldEn1 := ag.Stats().Extranonce1

	kill()
	killed := time.Now()
	// The agent: the same session, a new extranonce1, shares accepted on B.
	agentOnB := make(chan time.Duration, 1)
	go func() {
		limit := time.Now().Add(10 * time.Second)
		for time.Now().Before(limit) {
			m, _ := minerStats(p, "rig.a")
			if st := ag.Stats(); st.Extranonce1 != oldEn1 && up(urlB).Accepted > 0 && m.UpstreamAccepted > 0 && st.Accepted > 0 {
				agentOnB <- time.Since(killed)
				return
			}
			<-time.After(10 * time.Millisecond) // polling with a deadline
		}
		agentOnB <- -1
	}()
	// The raw miner that subscribed: set_extranonce, a clean job, a share.
	for kept.setEn == 0 {
		if _, err := kept.read(); err != nil {
			t.Fatalf("the miner that subscribed to set_extranonce lost its connection: %v", err)
		}
	}
	kept.cur = nil
	kept.work()
	if !kept.cur.Clean {
		t.Fatalf("first job after the failover not clean")
	}
	before, _ := minerStats(p, "raw.kept")
	// The agent mines on B meanwhile and may find a block (the embedded
	// chain is easy): a share on the job that block made stale is
	// refused 21, and the miner goes on with the new job, as miners do.
	code := kept.mineOne()
	for tries := 1; code == stratum.CodeJobNotFound && tries < 5; tries++ {
		code = kept.mineOne()
	}
	if code != 0 {
		t.Fatalf("share after the failover: error %d", code)
	}
	waitFor(t, 5*time.Second, "the kept raw miner's share accepted on the second upstream", func() bool {
		m, _ := minerStats(p, "raw.kept")
		return m.UpstreamAccepted > before.UpstreamAccepted
	})
	elapsedKept := time.Since(killed)
	// The one that did not subscribe is closed.
	for {
		if _, err := dropped.read(); err != nil {
			break
		}
	}
	if d := <-agentOnB; d < 0 || d > 5*time.Second {
		t.Fatalf("agent on the second upstream after %v, want within 5 s", d)
	}
	if elapsedKept > 5*time.Second {
		t.Fatalf("raw miner's share accepted on the second upstream %v after the kill, want within 5 s", elapsedKept)
	}
	if st := ag.Stats(); st.Sessions != 1 {
		t.Fatalf("agent had %d sessions: want the one it started with, kept through the failover", st.Sessions)
	}
	acancel()
	wg.Wait()
	kept.conn.Close()
	waitFor(t, 10*time.Second, "every share sent to the second upstream answered", func() bool {
		u := up(urlB)
		return u.Forwarded == u.Accepted+u.Rejected
	})
	st := p.Stats()
	if st.Upstream != urlB || st.Failovers != 1 {
		t.Fatalf("proxy on %q after %d failovers, want %q after 1", st.Upstream, st.Failovers, urlB)
	}
	ua, ub := up(urlA), up(urlB)
	killA()
	if err := <-a.done; err != nil {
		t.Fatal(err)
	}
	a.close()
	stA, err := store.Open(filepath.Join(dirA, "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer stA.Close()
	sharesA, err := stA.Shares(ctx, "proxyuser")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(sharesA)) < ua.Accepted {
		t.Fatalf("first coordinator's ledger: %d shares of proxyuser, the proxy counted %d accepted there", len(sharesA), ua.Accepted)
	}
	sharesB, err := b.store.Shares(ctx, "proxyuser")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(sharesB)) != ub.Accepted || ub.Accepted == 0 {
		t.Fatalf("second coordinator's ledger: %d shares of proxyuser, the proxy counted %d accepted there", len(sharesB), ub.Accepted)
	}
	t.Logf("first upstream %+v (ledger %d), second %+v (ledger %d)", ua, len(sharesA), ub, len(sharesB))
	cancel()
	if err := <-pdone; err != nil {
		t.Fatal(err)
	}
	killB()
	<-b.done
	b.close()
}

// TestProxySuggestDifficultyNextJob: mining.suggest_difficulty is
// answered with mining.set_difficulty alone, never with the current job
// again (a miner restarting its extranonce2 on each job would find the
// same shares twice): a share at the old difficulty on the current job is
// still accepted, and the next job has a new id, announced by the pool.
func TestProxySuggestDifficultyNextJob(t *testing.T) {
	f := testFlags(t.TempDir())
	f.listen.V2 = "127.0.0.1:0"
	f.pool.banMinShares = -1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-inst.done; inst.close() }()
	_, addr, _ := startProxy(t, ctx, "proxyuser", inst.lns.SV2URL)
	r := dialRaw(t, addr, "raw.suggest", false)
	r.work()
	old, job := r.diff, r.cur.ID
	if res := r.call("mining.suggest_difficulty", []float64{old * 64}); string(res.Result) != "true" {
		t.Fatalf("suggest_difficulty answered %s", res.Result)
	}
	if m, err := r.read(); err != nil || m.Method != "mining.set_difficulty" || r.diff != old*64 {
		t.Fatalf("after suggest_difficulty: %+v (difficulty %v), %v; want mining.set_difficulty %v", m, r.diff, err, old*64)
	}
	if r.cur.ID != job {
		t.Skip("a new job came in between") // the pool moved on: nothing to check
	}
	if code := r.mineAt(old); code != 0 && code != stratum.CodeJobNotFound {
		t.Fatalf("share at the old difficulty on the job sent before the change: code %d", code)
	}
	// Mine on until the pool sends a new job: it must be a new one.
	for r.cur.ID == job {
		r.mineAt(old)
	}
	if r.diff != old*64 || len(r.repeats) != 0 {
		t.Fatalf("difficulty %v on the next job, want %v; jobs sent twice: %q", r.diff, old*64, r.repeats)
	}
}

// TestProxyOnBtcdRegtest: V1 miners behind the proxy mine real blocks
// through a coordinator on btcd regtest (every share is a block there):
// btcd's chain grows by the blocks the coordinator credits to the proxy's
// user, its tip among them, and the coordinator's ledger holds exactly
// the shares the proxy counted accepted.
func TestProxyOnBtcdRegtest(t *testing.T) {
	b := nodetest.StartBtcd(t, "regtest")
	f := testFlags(t.TempDir())
	f.node = parseNodeFlags(t, "--node", b.URL, "--node-user", b.User, "--node-pass", b.Pass,
		"--network", "regtest", "--payout-address", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
	f.listen.V2 = "127.0.0.1:0"
	f.pool.banMinShares = -1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, addr, pdone := startProxy(t, ctx, "proxyuser", inst.lns.SV2URL)
	r := dialRaw(t, addr, "raw.btcd", true)
	for range 3 {
		if code := r.mineOne(); code != 0 && code != stratum.CodeJobNotFound {
			t.Fatalf("raw share: code %d", code)
		}
	}
	actx, acancel := context.WithCancel(ctx)
	_, wg := runAgentsAt(t, actx, "stratum+tcp://"+addr, 2e5, "rig.btcd")
	waitFor(t, 2*time.Minute, "btcd at height 6", func() bool {
		n, _ := b.BlockCount(ctx)
		return n >= 6
	})
	acancel()
	wg.Wait()
	r.conn.Close()
	waitFor(t, 10*time.Second, "every forwarded share answered", func() bool {
		s := p.Stats()
		return s.Forwarded == s.UpstreamAccepted+s.UpstreamRejected
	})
	st := p.Stats()
	if st.UpstreamRejected != st.RejectedUpstream["stale-share"] || st.UpstreamAccepted == 0 {
		t.Fatalf("proxy stats %+v: want every forwarded share accepted upstream but those gone stale on the way", st)
	}
	shares, err := inst.store.Shares(ctx, "proxyuser")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(shares)) != st.UpstreamAccepted {
		t.Fatalf("ledger: %d shares of proxyuser, the proxy counted %d accepted", len(shares), st.UpstreamAccepted)
	}
	best, err := b.BestBlockHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := inst.store.Blocks(ctx, 1, 0)
	found := false
	for _, bl := range blocks {
		found = found || (bl.Hash.String() == best && bl.Finder == "proxyuser")
	}
	if !found {
		t.Fatalf("btcd's tip %s is not among the %d blocks the coordinator credited to the proxy's user", best, len(blocks))
	}
	t.Logf("btcd tip %s; proxy forwarded %d, accepted %d, stale %d", best, st.Forwarded, st.UpstreamAccepted, st.UpstreamRejected)
	cancel()
	<-pdone
	<-inst.done
	inst.close()
}

// TestProxyFlagErrors: powcoord proxy refuses each bad flag with an error
// naming it and the value.
func TestProxyFlagErrors(t *testing.T) {
	key := "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
	for _, c := range []struct{ args, want string }{
		{"--user u", "--upstream is required"},
		{"--upstream stratum2+tcp://127.0.0.1:3336/" + key, "--user is required"},
		{"--user u --upstream stratum+tcp://127.0.0.1:3333", `pool URL "stratum+tcp://127.0.0.1:3333": scheme "stratum+tcp", want stratum2+tcp`},
		{"--user u --upstream stratum2+tcp://127.0.0.1:3336/" + key + " --version-mask ffffffff", "version mask ffffffff"},
		{"--user u --upstream stratum2+tcp://127.0.0.1:3336/" + key + " --min-difficulty 2 --max-difficulty 1", "--max-difficulty 1 is below --min-difficulty 2"},
		{"--user u --upstream stratum2+tcp://127.0.0.1:3336/" + key + " --shares-per-minute 0", "--shares-per-minute 0"},
		{"--user u --upstream stratum2+tcp://127.0.0.1:3336/" + key + " --stratum 127.0.0.1:99999", `--stratum "127.0.0.1:99999"`},
	} {
		var out, errb strings.Builder
		err := run(t.Context(), append([]string{"proxy"}, strings.Fields(c.args)...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("powcoord proxy %s: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
