package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"go.uber.org/goleak"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/hasher"
	"github.com/powcoord/powcoord/internal/stratum"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testKernel is the reference kernel: tests check the agent, not a kernel
// that is being optimised elsewhere.
func testKernel(t testing.TB) hasher.Kernel {
	k, err := hasher.ByName("stdlib")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startAgent runs an agent until the test ends and waits for Run to return.
func startAgent(t testing.TB, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancel")
		}
	})
}

func newTestAgent(t testing.TB, threads int, urls ...string) *Agent {
	t.Helper()
	a, err := New(Config{URLs: urls, User: "tester", Pass: "secret", Threads: threads, Kernel: testKernel(t)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(5 * time.Millisecond) // polling with a deadline
	}
}

func TestNewValidates(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string // a substring naming the bad value
	}{
		{Config{}, "no pool URL"},
		{Config{URLs: []string{""}}, `""`},
		{Config{URLs: []string{"localhost"}}, `"localhost"`},
		{Config{URLs: []string{"http://pool:3333"}}, `"http"`},
		{Config{URLs: []string{"http://pool:3333"}}, `"http"`},
		{Config{URLs: []string{"pool:99999"}}, `"99999"`},
		{Config{URLs: []string{"pool:0"}}, `"0"`},
		{Config{URLs: []string{":3333"}}, `":3333"`},
		{Config{URLs: []string{"127.0.0.1:3333", "stratum+tcp://x"}}, `"stratum+tcp://x"`},
		{Config{URLs: []string{"127.0.0.1:3333"}, Threads: -2}, "threads -2"},
		{Config{URLs: []string{"127.0.0.1:3333"}, StatsInterval: -time.Second}, "-1s"},
	}
	for _, c := range cases {
		_, err := New(c.cfg)
		if err == nil {
			t.Errorf("New(%+v): no error", c.cfg)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): error %q does not name %s", c.cfg, err, c.want)
		}
	}
	a, err := New(Config{URLs: []string{"stratum+tcp://127.0.0.1:3333", "pool.example:3334"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.pools[0].addr != "127.0.0.1:3333" || a.pools[1].addr != "pool.example:3334" {
		t.Errorf("pools %+v", a.pools)
	}
	if a.cfg.Threads < 1 || a.cfg.Kernel == nil || a.cfg.StatsInterval != 10*time.Second || !strings.HasPrefix(a.cfg.UserAgent, "powcoord/") {
		t.Errorf("defaults not applied: %+v", a.cfg)
	}
}

// TestHeaderGenesis rebuilds the mainnet genesis header from Stratum
// fields: the real coinbase split around an extranonce slot taken from its
// own scriptSig, the prevhash (all zeros) word-swapped.
func TestHeaderGenesis(t *testing.T) {
	g := chaincfg.MainNetParams.GenesisBlock
	var raw strings.Builder
	if err := g.Transactions[0].SerializeNoWitness(hexWriter{&raw}); err != nil {
		t.Fatal(err)
	}
	cb, _ := hex.DecodeString(raw.String())
	// Bytes 42..49 lie inside the scriptSig; call 4 of them extranonce1 and
	// 4 extranonce2.
	n := &stratum.Notify{
		JobID:    "genesis",
		PrevHash: chainmath.StratumPrevHash(chainmath.Hash(g.Header.PrevBlock)),
		Coinb1:   hex.EncodeToString(cb[:42]),
		Coinb2:   hex.EncodeToString(cb[50:]),
		Version:  stratum.Hex32(uint32(g.Header.Version)),
		NBits:    stratum.Hex32(g.Header.Bits),
		NTime:    stratum.Hex32(uint32(g.Header.Timestamp.Unix())),
	}
	j, err := newJob(n, cb[42:46], 4, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdr := j.header(cb[46:50], 2083236893)
	h := chainmath.DoubleSHA256(hdr[:])
	if got, want := h.String(), "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"; got != want {
		t.Fatalf("genesis hash %s, want %s", got, want)
	}
	if _, ok := j.check(cb[46:50], 2083236893); !ok {
		t.Error("genesis nonce does not meet difficulty 1")
	}
	if _, ok := j.check(cb[46:50], 2083236894); ok {
		t.Error("nonce+1 meets difficulty 1")
	}
}

type hexWriter struct{ b *strings.Builder }

func (w hexWriter) Write(p []byte) (int, error) {
	w.b.WriteString(hex.EncodeToString(p))
	return len(p), nil
}

func TestUnits(t *testing.T) {
	n := makeNotify(t, "u", true, 8)
	cases := []struct {
		en2Size    int
		span       uint64
		u          uint64
		en2        string
		start      uint32
		count      uint64
		totalUnits uint64
	}{
		{4, 0, 0, "00000000", 0, 1 << 32, 1 << 32},
		{4, 0, 258, "00000102", 0, 1 << 32, 1 << 32},
		{8, 0, 7, "0000000000000007", 0, 1 << 32, 1 << 62},
		{1, 0, 257, "01", 1 << 24, 1 << 24, 1 << 16},
		{0, 0, 3, "", 3 << 24, 1 << 24, 256},
		{2, 4096, 258, "0102", 0, 4096, 1 << 16},
	}
	for _, c := range cases {
		j, err := newJob(n, []byte{1, 2, 3, 4}, c.en2Size, 1, c.span)
		if err != nil {
			t.Fatal(err)
		}
		en2, start, count := j.unit(c.u)
		if hex.EncodeToString(en2) != c.en2 || start != c.start || count != c.count || j.units != c.totalUnits {
			t.Errorf("size %d span %d unit %d: en2 %x start %d count %d units %d; want %s %d %d %d",
				c.en2Size, c.span, c.u, en2, start, count, j.units, c.en2, c.start, c.count, c.totalUnits)
		}
	}
}

// TestHandshakeAndShares: the handshake comes in order, every share is
// valid for the pool's own rebuild of the header, three threads hash three
// distinct extranonce2 values, and accepted/rejected counts match what the
// pool answered.
func TestHandshakeAndShares(t *testing.T) {
	p := newFakePool(t, "", withDiff(1.0/(1<<18)), func(p *fakePool) { p.rejectEvery = 4 })
	a := newTestAgent(t, 3, p.url())
	startAgent(t, a)
	c := p.nextSession(t)

	en2s := map[string]int{}
	for range 60 {
		r := p.nextSubmit(t)
		if r.s.JobID != "j1" {
			t.Fatalf("share for job %q", r.s.JobID)
		}
		en2s[r.s.Extranonce2]++
	}
	want := []string{"00000000", "00000001", "00000002"}
	if got := slices.Sorted(mapsKeys(en2s)); !slices.Equal(got, want) {
		t.Errorf("extranonce2 values %v (counts %v), want one per thread %v", got, en2s, want)
	}
	log := c.methodLog()
	wantLog := []string{"mining.configure", "mining.subscribe", "mining.authorize", "mining.extranonce.subscribe"}
	if len(log) < 4 || !slices.Equal(log[:4], wantLog) {
		t.Errorf("handshake %v, want %v", log, wantLog)
	}
	for _, m := range log[4:] {
		if m != "mining.submit" {
			t.Errorf("after the handshake the agent sent %s", m)
		}
	}

	// Stop the shares (an impossible difficulty), then compare counts.
	c.setDifficulty(1e12)
	c.notify("j2", true)
	waitFor(t, "the agent to hash job j2", func() bool { return a.Stats().JobID == "j2" })
	waitFor(t, "answers to reach the agent", func() bool {
		s := a.Stats()
		return s.Accepted+s.Rejected == p.replies.Load()
	})
	for len(p.submits) > 0 {
		p.nextSubmit(t)
	}
	s := a.Stats()
	rej := p.rejects.Load()
	if s.Rejected != rej || s.Accepted != p.replies.Load()-rej || rej == 0 {
		t.Errorf("agent counts accepted %d rejected %d; pool answered %d with %d rejections", s.Accepted, s.Rejected, p.replies.Load(), rej)
	}
	if s.RejectedByCode[stratum.CodeLowDifficulty] != rej || len(s.RejectedByCode) != 1 {
		t.Errorf("rejected by code %v, want {23: %d}", s.RejectedByCode, rej)
	}
	if !s.Connected || s.Extranonce1 != hex.EncodeToString(c.en1) || s.Pool != p.url() || s.Difficulty != 1e12 {
		t.Errorf("stats %+v", s)
	}
	if s.Hashes == 0 || s.Hashrate <= 0 {
		t.Errorf("hashes %d hashrate %g", s.Hashes, s.Hashrate)
	}
}

func mapsKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestRollsExtranonce2: with small work units a thread that spends its
// nonce range moves on to a new one; all shares stay valid and distinct.
func TestRollsExtranonce2(t *testing.T) {
	p := newFakePool(t, "", withDiff(1.0/(1<<20)))
	a := newTestAgent(t, 2, p.url())
	a.span = 4096 // roll extranonce2 every 4096 nonces
	startAgent(t, a)
	p.nextSession(t)
	en2s := map[string]bool{}
	for range 80 {
		r := p.nextSubmit(t)
		en2s[r.s.Extranonce2] = true
		nonce, _ := stratum.ParseHex32("nonce", r.s.Nonce)
		if nonce >= 4096 {
			t.Fatalf("nonce %08x beyond the 4096-nonce space", nonce)
		}
	}
	if len(en2s) < 20 {
		t.Errorf("only %d extranonce2 values in 80 shares: the agent did not roll", len(en2s))
	}
}

// TestSetDifficultyNextJob: mining.set_difficulty changes nothing for the
// job being hashed and governs the next notify.
func TestSetDifficultyNextJob(t *testing.T) {
	const d1, d2 = 1.0 / (1 << 18), 1.0 / (1 << 14)
	p := newFakePool(t, "", withDiff(d1))
	a := newTestAgent(t, 2, p.url())
	startAgent(t, a)
	c := p.nextSession(t)
	for range 5 {
		p.nextSubmit(t)
	}
	c.setDifficulty(d2)
	// Still job j1 at d1: shares below d2 keep coming (15 in 16 are).
	easy := 0
	for easy < 15 {
		r := p.nextSubmit(t)
		if r.s.JobID != "j1" {
			t.Fatalf("share for %q before any new job", r.s.JobID)
		}
		if r.diff < d2 {
			easy++
		}
	}
	if s := a.Stats(); s.Difficulty != d1 {
		t.Errorf("difficulty %g before the next notify, want %g", s.Difficulty, d1)
	}
	c.notify("j2", true)
	got := 0
	for got < 4 {
		r := p.nextSubmit(t) // the pool rejects any j2 share below d2
		if r.s.JobID == "j2" {
			got++
			if r.diff < d2 {
				t.Fatalf("j2 share of difficulty %g < %g", r.diff, d2)
			}
		}
	}
	if s := a.Stats(); s.Difficulty != d2 {
		t.Errorf("difficulty %g, want %g", s.Difficulty, d2)
	}
}

// TestSetExtranonce: a new extranonce1 applies from the next job; the
// pool checks the shares with it.
func TestSetExtranonce(t *testing.T) {
	p := newFakePool(t, "", withDiff(1.0/(1<<18)))
	a := newTestAgent(t, 1, p.url())
	startAgent(t, a)
	c := p.nextSession(t)
	p.nextSubmit(t)
	c.setExtranonce([]byte{0xca, 0xfe, 0xba, 0xbe, 0x01})
	c.notify("j2", true)
	for {
		if r := p.nextSubmit(t); r.s.JobID == "j2" {
			break
		}
	}
	if s := a.Stats(); s.Extranonce1 != "cafebabe01" {
		t.Errorf("extranonce1 %q", s.Extranonce1)
	}
}

// cleanJobRounds runs rounds clean jobs against an agent with threads
// hashing threads and returns, per thread and round, the time from the new
// job's publication to the thread leaving the old job, and the shares of a
// cleaned job that reached the pool more than 10 ms after the clean
// notify. It fails tb when a thread does not leave a cleaned job within
// 10 s or a share names a job never sent.
func cleanJobRounds(tb testing.TB, threads, rounds int) (lat, late []time.Duration) {
	p := newFakePool(tb, "", withDiff(1.0/(1<<20)))
	a := newTestAgent(tb, threads, p.url())
	var mu sync.Mutex
	published := map[string]struct {
		gen uint64
		at  time.Time
	}{}
	abandoned := map[uint64][]time.Time{}
	a.hookJob = func(j *job, at time.Time) {
		mu.Lock()
		published[j.ID] = struct {
			gen uint64
			at  time.Time
		}{j.gen, at}
		mu.Unlock()
	}
	a.hookAbandon = func(gen uint64, at time.Time) {
		mu.Lock()
		abandoned[gen] = append(abandoned[gen], at)
		mu.Unlock()
	}
	startAgent(tb, a)
	c := p.nextSession(tb)
	old := "j1"
	for round := range rounds {
		for n := 0; n < 20; {
			if p.nextSubmit(tb).s.JobID == old {
				n++
			}
		}
		next := fmt.Sprintf("k%d", round+1)
		sent := c.notify(next, true)
		for n := 0; n < 10; {
			r := p.nextSubmit(tb)
			switch r.s.JobID {
			case next:
				n++
			case old:
				if d := r.at.Sub(sent); d > 10*time.Millisecond {
					late = append(late, d)
				}
			default:
				tb.Errorf("share for job %s", r.s.JobID)
			}
		}
		// Every thread leaves the cleaned job (a loaded machine may
		// take a moment to schedule the last one: wait, bounded).
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			o, nw := published[old], published[next]
			ab := slices.Clone(abandoned[o.gen])
			mu.Unlock()
			if len(ab) == threads {
				for _, at := range ab {
					lat = append(lat, at.Sub(nw.at))
				}
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%d threads left job %s within 10 s, want %d", len(ab), old, threads)
			}
			time.Sleep(time.Millisecond) // polling with a deadline
		}
		old = next
	}
	return lat, late
}

// TestCleanJobStopsOldWork: on a clean job every hashing thread leaves
// the old job, round after round, and the agent goes on with the new one.
// How fast is measured by BenchmarkCleanJob, not asserted here.
func TestCleanJobStopsOldWork(t *testing.T) {
	lat, late := cleanJobRounds(t, 2, 5)
	if len(lat) != 10 {
		t.Fatalf("%d thread exits measured, want 10", len(lat))
	}
	slices.Sort(lat)
	t.Logf("clean job → thread stopped old work: median %v, max %v; %d late shares", lat[len(lat)/2], lat[len(lat)-1], len(late))
}

// BenchmarkCleanJob reports how long hashing threads keep working on a
// cleaned job: the median and the largest time from the new job's
// publication to a thread leaving the old one, per clean job (b.N rounds
// of two threads), and the late shares per round.
func BenchmarkCleanJob(b *testing.B) {
	lat, late := cleanJobRounds(b, 2, b.N)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(late))/float64(b.N), "late-shares/op")
}

// TestReconnect: the pool drops the connection; the agent reconnects,
// gets a new extranonce1 and mines valid shares with it.
func TestReconnect(t *testing.T) {
	p := newFakePool(t, "", withDiff(1.0/(1<<18)))
	a := newTestAgent(t, 2, p.url())
	startAgent(t, a)
	c1 := p.nextSession(t)
	p.nextSubmit(t)
	closed := time.Now()
	c1.c.Close()
	c2 := p.nextSession(t)
	for {
		if r := p.nextSubmit(t); r.conn == c2 {
			break
		}
	}
	back := time.Since(closed)
	t.Logf("mining again %v after the pool closed the connection", back)
	if back > 2*time.Second {
		t.Errorf("took %v to mine again after a disconnect, want < 2 s", back)
	}
	if string(c1.en1) == string(c2.en1) {
		t.Fatal("fake pool reused extranonce1")
	}
	waitFor(t, "stats to show the new session", func() bool {
		s := a.Stats()
		return s.Sessions == 2 && s.Extranonce1 == hex.EncodeToString(c2.en1) && s.Connected
	})
}

// TestFailover: with the primary down the agent mines on the backup; when
// the primary answers again the agent moves back and leaves the backup.
func TestFailover(t *testing.T) {
	// Reserve an address for the primary and leave it closed.
	primary := newFakePool(t, "", withDiff(1.0/(1<<18)))
	addr := primary.addr
	primary.close()
	backup := newFakePool(t, "", withDiff(1.0/(1<<18)))

	a, err := New(Config{URLs: []string{"stratum+tcp://" + addr, backup.url()}, User: "tester", Threads: 2,
		Kernel: testKernel(t), PrimaryRetry: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a)
	cb := backup.nextSession(t)
	backup.nextSubmit(t)
	if s := a.Stats(); s.Pool != backup.url() {
		t.Errorf("pool %q, want the backup %q", s.Pool, backup.url())
	}

	primary = newFakePool(t, addr, withDiff(1.0/(1<<18)))
	start := time.Now()
	cp := primary.nextSession(t)
	primary.nextSubmit(t)
	t.Logf("back on the primary %v after it came back", time.Since(start))
	cb.waitClosed(t)
	if s := a.Stats(); s.Pool != "stratum+tcp://"+addr || !s.Connected {
		t.Errorf("stats %+v, want connected to the primary", s)
	}
	_ = cp
}

// TestClientReconnect: client.reconnect to another port of the same host
// moves the agent there.
func TestClientReconnect(t *testing.T) {
	p1 := newFakePool(t, "", withDiff(1.0/(1<<18)))
	p2 := newFakePool(t, "", withDiff(1.0/(1<<18)))
	a := newTestAgent(t, 1, p1.url())
	startAgent(t, a)
	c1 := p1.nextSession(t)
	p1.nextSubmit(t)
	_, port, _ := strings.Cut(p2.addr, ":")
	c1.call("client.reconnect", []any{"127.0.0.1", port, 0})
	p2.nextSession(t)
	p2.nextSubmit(t)
	c1.waitClosed(t)
}

// TestClientReconnectFailedStaysOnPool: client.reconnect names a port
// where nothing listens; the agent goes back to the same pool (its own
// address) rather than failing over to the backup.
func TestClientReconnectFailedStaysOnPool(t *testing.T) {
	p1 := newFakePool(t, "", withDiff(1.0/(1<<18)))
	p2 := newFakePool(t, "", withDiff(1.0/(1<<18)))
	a := newTestAgent(t, 1, p1.url(), p2.url())
	startAgent(t, a)
	c1 := p1.nextSession(t)
	p1.nextSubmit(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, nobody, _ := strings.Cut(ln.Addr().String(), ":")
	ln.Close()
	c1.call("client.reconnect", []any{"127.0.0.1", nobody, 0})
	c1.waitClosed(t)
	p1.nextSession(t)
	select {
	case <-p2.sessions:
		t.Fatal("the agent failed over to the backup pool after a failed reconnect address")
	default:
	}
}

// recorder is a slog handler that passes records to a channel.
type recorder struct{ ch chan slog.Record }

func (r recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r recorder) Handle(_ context.Context, rec slog.Record) error {
	select {
	case r.ch <- rec.Clone():
	default:
	}
	return nil
}
func (r recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r recorder) WithGroup(string) slog.Handler      { return r }

// TestStatsLog: the periodic log line carries hashrate, share counts,
// difficulty and pool as attributes under a constant message.
func TestStatsLog(t *testing.T) {
	p := newFakePool(t, "", withDiff(1.0/(1<<18)))
	rec := recorder{make(chan slog.Record, 1024)}
	a, err := New(Config{URLs: []string{p.url()}, User: "tester", Threads: 1, Kernel: testKernel(t),
		Logger: slog.New(rec), StatsInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a)
	p.nextSession(t)
	p.nextSubmit(t)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-rec.ch:
			if r.Level >= slog.LevelError {
				t.Errorf("error-level log %q", r.Message)
			}
			if r.Message != "agent stats" {
				continue
			}
			attrs := map[string]slog.Value{}
			r.Attrs(func(at slog.Attr) bool { attrs[at.Key] = at.Value; return true })
			for _, k := range []string{"hashrate", "accepted", "rejected", "difficulty", "pool"} {
				if _, ok := attrs[k]; !ok {
					t.Fatalf("stats log lacks %q: %v", k, attrs)
				}
			}
			if attrs["accepted"].Uint64() >= 1 && attrs["hashrate"].Float64() > 0 {
				if got := attrs["pool"].String(); got != p.url() {
					t.Errorf("pool %q", got)
				}
				if got := attrs["difficulty"].Float64(); got != 1.0/(1<<18) {
					t.Errorf("difficulty %g", got)
				}
				return
			}
		case <-deadline:
			t.Fatal("no stats log with an accepted share within 10 s")
		}
	}
}

// TestEveryKernel mines a few shares with each kernel this CPU runs; the
// pool checks them, so a kernel that returns wrong nonces fails here.
func TestEveryKernel(t *testing.T) {
	for _, k := range hasher.Available() {
		t.Run(k.Name(), func(t *testing.T) {
			p := newFakePool(t, "", withDiff(1.0/(1<<16)))
			a, err := New(Config{URLs: []string{p.url()}, User: "tester", Threads: 1, Kernel: k})
			if err != nil {
				t.Fatal(err)
			}
			startAgent(t, a)
			p.nextSession(t)
			for range 5 {
				p.nextSubmit(t)
			}
		})
	}
}

// TestReconnectReadAfterFailedWrite: the pool sends client.reconnect and
// closes; a share written after that fails (the pool's end is gone)
// while the client.reconnect line still waits unread in the agent's
// socket. The reader must still read it and follow it: a failed write
// must not close the connection under the reader (it did, and about one
// run in ten of TestAgentFollowsReconnectOverIPv6 in cmd/powcoord lost
// the redirect to a share found in that window).
func TestReconnectReadAfterFailedWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, 1, "stratum+tcp://"+ln.Addr().String())
	s := &session{a: a, pool: a.pools[0], addr: ln.Addr().String(), conn: conn, diff: 1}
	// A share the pool never reads, so that its close is a reset.
	if err := s.send("mining.submit", []string{"tester", "1", "00000000", "00000000", "00000000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Write([]byte(`{"id":null,"method":"client.reconnect","params":["127.0.0.1",4444,0]}` + "\n")); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	// Shares go on being found: send until one fails.
	waitFor(t, "a write to the closed pool to fail", func() bool {
		return s.send("mining.submit", []string{"tester", "1", "00000000", "00000000", "00000000"}) != nil
	})
	r := s.readLoop()
	if r.redirect != "127.0.0.1:4444" {
		t.Fatalf("session ended with redirect %q, err %v; want redirect to 127.0.0.1:4444", r.redirect, r.err)
	}
}

// TestFailedWriteEndsSession: after a write has failed, a pool that goes
// on sending (but reads nothing) cannot keep the session alive: the
// reader ends within writeFailedDrain and reports the write's error.
func TestFailedWriteEndsSession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond): // a pool chatting on
			}
			if _, err := pc.Write([]byte(`{"id":null,"method":"client.show_message","params":["hello"]}` + "\n")); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	a := newTestAgent(t, 1, "stratum+tcp://"+ln.Addr().String())
	s := &session{a: a, pool: a.pools[0], addr: ln.Addr().String(), conn: conn, diff: 1}
	werr := errors.New("sending mining.submit: write timed out")
	s.writeFailed(werr)
	r := s.readLoop()
	if !errors.Is(r.err, werr) {
		t.Fatalf("session ended with %v, want the write's error %v", r.err, werr)
	}
}
