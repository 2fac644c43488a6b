package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// answerDropper is an HTTP proxy in front of a node's RPC that passes
// every call through but, while drop is set, hands submitblock to the
// node, waits for its answer and then closes the caller's connection
// without it: the node took the block, the caller never hears so.
type answerDropper struct {
	target  *url.URL
	proxy   *httputil.ReverseProxy
	drop    atomic.Bool
	dropped atomic.Int64 // submitblock answers the node gave and the caller lost
	srv     *httptest.Server
}

func newAnswerDropper(t *testing.T, nodeURL string) *answerDropper {
	u, err := url.Parse(nodeURL)
	if err != nil {
		t.Fatal(err)
	}
	d := &answerDropper{target: u, proxy: httputil.NewSingleHostReverseProxy(u)}
	d.proxy.ErrorLog = log.New(io.Discard, "", 0) // a long-poll cut at the end of the test
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *answerDropper) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var call struct {
		Method string `json:"method"`
	}
	json.Unmarshal(body, &call)
	if call.Method != "submitblock" || !d.drop.Load() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.proxy.ServeHTTP(w, r)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, d.target.String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err) // httptest's server always hijacks
	}
	d.dropped.Add(1)
	conn.Close()
}

// TestLostSubmitAnswerBlockAccepted is issue 20's defect 6 on btcd: a
// miner's block reaches btcd, which makes it its tip, but every
// submitblock answer is lost on the way back (the proxy closes the
// connection). The source soon follows the new tip, so the chain has
// moved past the block's height, because of the block itself. The
// coordinator must ask the chain (InBestChain) rather than abandon it:
// the block ends accepted in the ledger, counted in the status, paid
// (the finder's account shows the 50 BTC coinbase as paid) and
// announced accepted (OnBlock). The old code recorded it abandoned and
// counted it rejected.
func TestLostSubmitAnswerBlockAccepted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "simnet")
	proxy := newAnswerDropper(t, b.URL)
	key := newKey(t, 12)
	a, err := address.NewAddressWitnessPubKeyHash(address.Hash160(key.priv.PubKey().SerializeCompressed()), &chaincfg.SimNetParams)
	if err != nil {
		t.Fatal(err)
	}
	user := a.EncodeAddress()
	src := newSource(t, ctx, &nodetest.Btcd{URL: proxy.srv.URL, User: b.User, Pass: b.Pass, Network: b.Network}, "",
		func(c *node.Config) { c.PollInterval = 50 * time.Millisecond })
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events := make(chan coordinator.BlockEvent, 4)
	coord, err := coordinator.New(coordinator.Config{
		Source: src, Store: st, ShareDifficulty: 1e-9, SharesPerMinute: -1, Logger: testLogger(t),
		BlockRetryMin: 20 * time.Millisecond, BlockRetryMax: 200 * time.Millisecond,
		OnBlock: func(ev coordinator.BlockEvent) { events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()

	m := dialMiner(t, ln.Addr().String(), user)
	submit, hash := m.solveBlock(t)
	tmpl := src.Current()
	height, value := tmpl.Height, tmpl.CoinbaseValue

	proxy.drop.Store(true)
	if res := m.call(t, submit); string(res.Result) != "true" {
		t.Fatalf("block share: %s %s, want true", res.Result, res.Error)
	}
	var ev coordinator.BlockEvent
	select {
	case ev = <-events:
	case <-time.After(30 * time.Second): // failure only: the event comes within a second
		t.Fatalf("no block event for %s after 30 s; found block state: %s", hash, foundState(ctx, st, hash))
	}
	if !ev.Accepted || ev.Reason != "" || ev.Hash != hash.String() || ev.Height != height {
		t.Fatalf("block event %+v, want block %s at height %d accepted with no reason", ev, hash, height)
	}
	if n := proxy.dropped.Load(); n < 1 {
		t.Fatalf("%d submitblock answers dropped, want at least 1 (the test did not lose an answer)", n)
	}
	if at, err := b.BlockHash(ctx, height); err != nil || at != hash.String() {
		t.Fatalf("btcd's block at height %d: %s (%v), want the found block %s", height, at, err, hash)
	}
	fb, ok, err := st.FoundBlock(ctx, hash)
	if err != nil || !ok || fb.State != store.FoundAccepted {
		t.Fatalf("found block %s: %+v ok=%v err=%v, want state %q", hash, fb, ok, err, store.FoundAccepted)
	}
	if s := coord.Status(); s.BlocksFound != 1 || s.BlocksRejected != 0 {
		t.Fatalf("status: %d blocks found, %d rejected; want 1 and 0", s.BlocksFound, s.BlocksRejected)
	}
	if coord.PendingBlocks() != 0 {
		t.Fatalf("%d blocks still pending, want 0", coord.PendingBlocks())
	}
	rep, err := coord.Miner(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PaidTotal != value || value != 50e8 || len(rep.Payouts) != 1 || rep.Payouts[0].State != store.FoundAccepted {
		t.Fatalf("finder's account: paid %d sat in %+v; want the coinbase's %d sat (50 BTC) paid by one accepted block", rep.PaidTotal, rep.Payouts, value)
	}
	t.Logf("block %s at height %d: %d submitblock answers lost, settled accepted", hash, height, proxy.dropped.Load())
}

// foundState describes the ledger's record of a found block, for a
// failure message.
func foundState(ctx context.Context, st *store.Store, hash chainmath.Hash) string {
	fb, ok, err := st.FoundBlock(ctx, hash)
	if err != nil || !ok {
		return fmt.Sprintf("none (ok=%v err=%v)", ok, err)
	}
	return fmt.Sprintf("%s after %d attempts (%s)", fb.State, fb.Attempts, fb.Reason)
}

// v1Miner is a raw Stratum V1 miner for the tests of this package.
type v1Miner struct {
	conn    net.Conn
	r       *bufio.Reader
	user    string
	en1     []byte
	en2Size int
	job     *stratum.Job
	id      int
}

// dialMiner connects to a coordinator at addr, subscribes, authorizes
// user and waits for the first job.
func dialMiner(t *testing.T, addr, user string) *v1Miner {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	m := &v1Miner{conn: conn, r: bufio.NewReader(conn), user: user, id: 2}
	fmt.Fprintf(conn, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[%q,\"x\"]}\n", user)
	for m.job == nil {
		msg := m.read(t)
		switch {
		case string(msg.ID) == "1":
			var res []json.RawMessage
			json.Unmarshal(msg.Result, &res)
			var h string
			json.Unmarshal(res[1], &h)
			json.Unmarshal(res[2], &m.en2Size)
			m.en1, _ = hex.DecodeString(h)
		case msg.Method == "mining.notify":
			if m.job, err = stratum.ParseJob(msg.Params); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func (m *v1Miner) read(t *testing.T) *stratum.Message {
	t.Helper()
	line, err := m.r.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stratum.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// solveBlock solves a block on the miner's first job (simnet: about every
// other hash is one) and returns its mining.submit params and hash.
func (m *v1Miner) solveBlock(t *testing.T) ([]string, chainmath.Hash) {
	t.Helper()
	tgt, err := m.job.BlockTarget()
	if err != nil {
		t.Fatal(err)
	}
	en2 := make([]byte, m.en2Size)
	binary.BigEndian.PutUint32(en2, 1)
	for nonce := uint32(0); ; nonce++ {
		h := m.job.Header(m.en1, en2, m.job.NTime, nonce, 0, 0)
		hash := h.Hash()
		if tgt.Meets(&hash) {
			return []string{m.user, m.job.ID, hex.EncodeToString(en2), stratum.Hex32(m.job.NTime), stratum.Hex32(nonce)}, hash
		}
	}
}

// call sends mining.submit with params and returns its answer, skipping
// notifications.
func (m *v1Miner) call(t *testing.T, params []string) *stratum.Message {
	t.Helper()
	m.id++
	line, _ := stratum.AppendRequest(nil, m.id, "mining.submit", params)
	if _, err := m.conn.Write(line); err != nil {
		t.Fatal(err)
	}
	for {
		msg := m.read(t)
		if string(msg.ID) == fmt.Sprint(m.id) {
			return msg
		}
	}
}
