package web_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// pool is a real coordinator on the embedded chain, its Stratum address
// and its HTTP side (web.Server with /metrics on a private registry) on
// real loopback TCP.
type pool struct {
	coord   *coordinator.Coordinator
	store   *store.Store
	web     *web.Server
	http    *httptest.Server
	stratum string
}

func startPool(t *testing.T, blockDiff, shareDiff float64, sample time.Duration, mod ...func(*coordinator.Config)) *pool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(filepath.Join(t.TempDir(), "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, BlockTime: 2 * time.Second, StartDifficulty: blockDiff, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := coordinator.Config{
		Source: chain, Store: st, ShareDifficulty: shareDiff, SharesPerMinute: -1,
		Logger: quietLogger(), Registerer: reg,
	}
	for _, m := range mod {
		m(&cfg)
	}
	coord, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); coord.Serve(ctx, ln) }()
	ws := web.New(coord, st, quietLogger())
	ws.SetBlockTime(2 * time.Second)
	ws.SetSampleInterval(sample)
	ws.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ran := make(chan struct{})
	go func() { defer close(ran); ws.Run(ctx) }()
	hs := httptest.NewServer(ws)
	t.Cleanup(func() {
		cancel()
		<-ran // ends the event streams, so Close does not wait on them
		hs.Close()
		<-served
		st.Close()
	})
	return &pool{coord: coord, store: st, web: ws, http: hs, stratum: ln.Addr().String()}
}

// rawMiner is a Stratum client written out by hand, so a test controls
// exactly which shares go in.
type rawMiner struct {
	t       *testing.T
	conn    net.Conn
	r       *bufio.Reader
	id      int
	en1     []byte
	en2Size int
	diff    float64
	job     *stratum.Notify
	seen    []*stratum.Notify // every job received, in order
}

func dialMiner(t *testing.T, addr, user string) *rawMiner {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	m := &rawMiner{t: t, conn: c, r: bufio.NewReader(c)}
	res := m.call("mining.subscribe", []any{"rawminer/1"})
	var sub []json.RawMessage
	if err := json.Unmarshal(res, &sub); err != nil || len(sub) < 3 {
		t.Fatalf("subscribe result %s: %v", res, err)
	}
	var en1 string
	json.Unmarshal(sub[1], &en1)
	json.Unmarshal(sub[2], &m.en2Size)
	if m.en1, err = hex.DecodeString(en1); err != nil {
		t.Fatalf("extranonce1 %q: %v", en1, err)
	}
	if res := m.call("mining.authorize", []any{user, "x"}); string(res) != "true" {
		t.Fatalf("authorize: %s", res)
	}
	for m.job == nil || m.diff == 0 {
		m.handle(m.read())
	}
	return m
}

func (m *rawMiner) read() *stratum.Message {
	m.t.Helper()
	line, err := m.r.ReadBytes('\n')
	if err != nil {
		m.t.Fatalf("reading from the pool: %v", err)
	}
	msg, err := stratum.Parse(line)
	if err != nil {
		m.t.Fatal(err)
	}
	return msg
}

// handle applies a notification; it reports whether msg was one.
func (m *rawMiner) handle(msg *stratum.Message) bool {
	if !msg.IsNotification() {
		return false
	}
	switch msg.Method {
	case "mining.notify":
		n, err := stratum.ParseNotify(msg.Params)
		if err != nil {
			m.t.Fatal(err)
		}
		m.job = n
		m.seen = append(m.seen, n)
	case "mining.set_difficulty":
		var p []float64
		if err := json.Unmarshal(msg.Params, &p); err != nil || len(p) != 1 {
			m.t.Fatalf("set_difficulty %s: %v", msg.Params, err)
		}
		m.diff = p[0]
	}
	return true
}

// call sends a request and returns its result, applying notifications
// that arrive first; a Stratum error comes back as a *stratum.Error result
// via callErr.
func (m *rawMiner) call(method string, params any) json.RawMessage {
	m.t.Helper()
	res, e := m.callErr(method, params)
	if e != nil {
		m.t.Fatalf("%s: %v", method, e)
	}
	return res
}

func (m *rawMiner) callErr(method string, params any) (json.RawMessage, *stratum.Error) {
	m.t.Helper()
	m.id++
	b, err := stratum.AppendRequest(nil, m.id, method, params)
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := m.conn.Write(b); err != nil {
		m.t.Fatal(err)
	}
	for {
		msg := m.read()
		if m.handle(msg) {
			continue
		}
		return msg.Result, msg.ResponseError()
	}
}

// header builds the header of the current job for extranonce2 en2 and
// nonce.
func (m *rawMiner) header(en2 []byte, nonce uint32) chainmath.Header {
	m.t.Helper()
	j, err := stratum.DecodeNotify(m.job)
	if err != nil {
		m.t.Fatal(err)
	}
	return j.Header(m.en1, en2, j.NTime, nonce, 0, 0)
}

// share is one submission the miner prepared.
type share struct {
	en2   []byte
	nonce uint32
}

func (m *rawMiner) params(user string, sh share) []string {
	return []string{user, m.job.JobID, hex.EncodeToString(sh.en2), m.job.NTime, stratum.Hex32(sh.nonce)}
}

// find searches nonces from start for one whose hash meets (want true)
// or misses (want false) the share target; en2 is the extranonce2.
func (m *rawMiner) find(en2 []byte, start uint32, want bool) share {
	m.t.Helper()
	tgt, err := chainmath.TargetForDifficulty(m.diff)
	if err != nil {
		m.t.Fatal(err)
	}
	for n := start; n < start+1<<26; n++ {
		h := m.header(en2, n)
		hash := h.Hash()
		if tgt.Meets(&hash) == want {
			return share{en2: en2, nonce: n}
		}
	}
	m.t.Fatalf("no nonce with meets=%v from %d at difficulty %v", want, start, m.diff)
	return share{}
}

func en2(m *rawMiner, v byte) []byte {
	b := make([]byte, m.en2Size)
	b[len(b)-1] = v
	return b
}

func mustf(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf(format+": %v", append(args, err)...)
	}
}
