// Package clusterfault holds the cluster fault test of issue 10: the
// whole cluster as separate processes (the powcoord binary, nats-server,
// PostgreSQL), SIGKILLed piece by piece while miners work.
package clusterfault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/gotool"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/loadtest"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/sv2"
)

func buildPowcoord(t *testing.T) string {
	t.Helper()
	bin, err := gotool.BuildPowcoord(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one powcoord process.
type proc struct {
	name string
	args []string
	bin  string
	cmd  *exec.Cmd
	out  bytes.Buffer
	mu   sync.Mutex
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Reset()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill() // SIGKILL
		p.cmd.Wait()
		p.cmd = nil
	}
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// told is every share a miner was told true for.
type told struct {
	mu     sync.Mutex
	hashes map[chainmath.Hash]bool
}

func (l *told) add(sh loadtest.Share) {
	l.mu.Lock()
	l.hashes[sh.Hash] = true
	l.mu.Unlock()
}

func (l *told) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hashes)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	return time.Since(start)
}

func role(httpAddr string) string {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + httpAddr + "/api/cluster")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Coordinator struct {
			Role string `json:"role"`
		} `json:"coordinator"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	return st.Coordinator.Role
}

// TestClusterFaults: 3 NATS servers (R3), 2 coordinators, 3 front-ends,
// 1 ledger writer and PostgreSQL, miners on every front-end. SIGKILL in
// turn a front-end, a NATS server, the active coordinator and the ledger
// writer; at the end every share a miner was told true for is in
// PostgreSQL exactly once and the chain in CHAIN re-validates. Beside the
// honest miners a hostile one keeps trying the name "evil\x00" (issue
// 20: its shares once rode in the honest miners' messages, and the ledger
// writer dropped whole messages for it): it is refused at authorize, and
// no honest share is lost. A V2 agent mines on the front-ends' Stratum V2
// listeners (one authority key) through the same faults, and its shares
// reach PostgreSQL.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole cluster as processes")
	}
	bin := buildPowcoord(t)
	nats := clustertest.StartNATSCluster(t, 3)
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	urls := strings.Join(nats.URLs(), ",")
	dir := t.TempDir()

	var procs []*proc
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
	})
	newProc := func(name string, args ...string) *proc {
		p := &proc{name: name, bin: bin, args: args}
		procs = append(procs, p)
		p.start(t)
		return p
	}
	dump := func() string {
		var b strings.Builder
		for _, p := range procs {
			fmt.Fprintf(&b, "--- %s\n%s\n", p.name, lastLines(p.log(), 15))
		}
		return b.String()
	}
	var coords []*proc
	var coordHTTP []string
	for i := range 2 {
		h := freeAddr(t)
		coordHTTP = append(coordHTTP, h)
		coords = append(coords, newProc("coordinator"+strconv.Itoa(i+1), "coordinator", "--cluster", urls, "--http", h,
			"--block-difficulty", "1e-3", "--block-time", "1s", "--leader-ttl", "3s", "--log-level", "warn"))
		if i == 0 {
			waitFor(t, 30*time.Second, "the first coordinator active", func() bool { return role(h) == "active" })
		}
	}
	ledger := newProc("ledger", "ledger", "--cluster", urls, "--postgres", dbURL, "--http", "", "--log-level", "warn")
	// Every front-end also serves Stratum V2 with one authority key, so
	// a V2 miner can fail over between them like a V1 one.
	keyFile := filepath.Join(dir, "sv2-authority.key")
	authKey, _, err := sv2.LoadOrCreateAuthorityKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var fronts []*proc
	var stratum, v2URLs []string
	for i := range 3 {
		a, a2 := freeAddr(t), freeAddr(t)
		stratum = append(stratum, a)
		v2URLs = append(v2URLs, sv2.URL(a2, sv2.XOnly(authKey)))
		fronts = append(fronts, newProc("frontend"+strconv.Itoa(i+1), "frontend", "--cluster", urls, "--stratum", a,
			"--stratum2", a2, "--authority-key", keyFile, "--ban-min-shares", "-1",
			"--data", filepath.Join(dir, "fe"+strconv.Itoa(i+1)), "--share-difficulty", "2e-5", "--shares-per-minute", "0", "--log-level", "warn"))
	}
	for _, a := range stratum {
		waitFor(t, 30*time.Second, "front-end "+a+" listening", func() bool {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const hostileName = "evil\x00"
	for _, a := range stratum {
		m, err := loadtest.Dial(ctx, a, "", hostileName)
		if err == nil {
			m.Close()
			t.Fatalf("front-end %s authorized %q", a, hostileName)
		}
		if !strings.Contains(err.Error(), `worker name "evil\x00" has control character U+0000`) {
			t.Fatalf("front-end %s refused %q with %v, want the worker-name rule", a, hostileName, err)
		}
	}
	l := &told{hashes: map[chainmath.Hash]bool{}}
	hostile := &told{hashes: map[chainmath.Hash]bool{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); loadtest.Keep(ctx, stratum, hostileName, 5, hostile.add) }()
	for i := range 3 {
		// Each miner starts on its own front-end and knows the others.
		order := append(append([]string{}, stratum[i:]...), stratum[:i]...)
		wg.Add(1)
		go func() { defer wg.Done(); loadtest.Keep(ctx, order, "miner"+strconv.Itoa(i), 30, l.add) }()
	}
	var agentURLs []string
	for _, a := range stratum {
		agentURLs = append(agentURLs, "stratum+tcp://"+a)
	}
	ag, err := agent.New(agent.Config{URLs: agentURLs, User: "agent", Threads: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); ag.Run(ctx) }()
	v2ag, err := agent.New(agent.Config{URLs: v2URLs, User: "v2agent", Threads: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); v2ag.Run(ctx) }()

	nc, err := bus.Connect(ctx, nats.URLs(), "fault-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := bus.New(nc)
	chain := chainstore.Reader(js)
	height := func() int64 {
		b, err := chain.Blocks(ctx, 0, 0)
		if err != nil || len(b) == 0 {
			return -1
		}
		return b[len(b)-1].Height
	}
	progress := func(what string) {
		t.Helper()
		h, n := height(), l.count()
		waitFor(t, 60*time.Second, what+": more blocks and shares", func() bool { return height() >= h+2 && l.count() >= n+20 })
	}
	defer func() {
		if t.Failed() {
			t.Log(dump())
		}
	}()
	progress("start")

	// 1. A front-end: the agent on it mines again through another.
	onFirst := ag.Stats().Pool == agentURLs[0]
	fronts[0].kill()
	before := ag.Stats().Sessions
	if onFirst {
		d := waitFor(t, 30*time.Second, "the agent mining through another front-end", func() bool {
			st := ag.Stats()
			return st.Sessions > before && st.Connected && st.JobID != ""
		})
		t.Logf("front-end killed: the agent mines again through %s after %v", ag.Stats().Pool, d.Round(time.Millisecond))
	}
	progress("after a front-end died")

	// 2. A NATS server.
	nats.Servers[2].Kill()
	progress("after a NATS server died")

	// 3. The active coordinator.
	active := 0
	if role(coordHTTP[1]) == "active" {
		active = 1
	}
	coords[active].kill()
	d := waitFor(t, 30*time.Second, "the standby active", func() bool { return role(coordHTTP[1-active]) == "active" })
	t.Logf("active coordinator killed: the standby active after %v", d.Round(time.Millisecond))
	progress("after the active coordinator died")

	// 4. The ledger writer, restarted.
	ledger.kill()
	progress("while the ledger writer is down")
	ledger.start(t)

	cancel()
	wg.Wait()
	want := l.count()
	led, err := pgledger.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	// The restarted ledger writer catches up: wait until every share a
	// miner was told true for is in PostgreSQL (bounded), then check
	// each is there exactly once.
	var stored []pgledger.Share
	in := map[chainmath.Hash]int{}
	missing := func() int {
		var err error
		if stored, err = led.Shares(context.Background(), "", 0); err != nil {
			return -1
		}
		clear(in)
		for _, s := range stored {
			in[s.Hash]++
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for h := range l.hashes {
			if in[h] == 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for missing() != 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond) // polling with a deadline
	}
	l.mu.Lock()
	bad := 0
	for h := range l.hashes {
		if in[h] != 1 {
			bad++
			if bad <= 5 {
				t.Errorf("share %s told true is stored %d times", h, in[h])
			}
		}
	}
	l.mu.Unlock()
	if bad > 0 {
		t.Errorf("%d of %d shares told true are not stored exactly once (%d rows stored)", bad, want, len(stored))
	}
	v2rows := 0
	for _, s := range stored {
		if s.Worker == "v2agent" {
			v2rows++
		}
	}
	if v2rows == 0 {
		t.Errorf("no share of the V2 agent is in PostgreSQL")
	}
	t.Logf("V2 agent on the front-ends: %d shares in PostgreSQL (accepted %d over %d sessions)", v2rows, v2ag.Stats().Accepted, v2ag.Stats().Sessions)
	if n := hostile.count(); n != 0 {
		t.Errorf("the miner named %q was told true for %d shares", hostileName, n)
	}
	for _, s := range stored {
		if s.Worker == hostileName {
			t.Fatalf("share %s of %q is in PostgreSQL", s.Hash, hostileName)
		}
	}
	blocks, err := chain.Blocks(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := simchain.ValidateChain(blocks, simchain.Config{BlockTime: time.Second, StartDifficulty: 1e-3}); err != nil {
		t.Fatalf("the chain in CHAIN does not re-validate: %v", err)
	}
	t.Logf("%d shares told true, %d stored in PostgreSQL; %d blocks in one valid chain", want, len(stored), len(blocks))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
