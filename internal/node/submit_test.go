package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/work"
)

// fakeNode is a JSON-RPC server on loopback that answers like a mainnet
// Bitcoin Core node at height 820000: getblockchaininfo, getblocktemplate
// (without longpollid, so that the source only polls), getbestblockhash,
// and submitblock with the answer set in submit.
type fakeNode struct {
	t   *testing.T
	srv *httptest.Server
	gbt json.RawMessage

	// hold, when not nil, keeps submitblock waiting until it is closed;
	// arrived then receives a value when the call has come in.
	hold, arrived chan struct{}

	mu        sync.Mutex
	submit    string            // the JSON-RPC response body for submitblock, %d for the id
	extra     map[string]string // response bodies of other methods
	best      string            // getbestblockhash
	submitted []string
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	tx := witnessTx()
	commit := chainmath.WitnessCommitment([]chainmath.Hash{chainmath.Hash(tx.WitnessHash())})
	var m map[string]any
	if err := json.Unmarshal(coreTemplate(t, tx, "6a24aa21a9ed"+hex.EncodeToString(commit[:])), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "longpollid")
	gbt, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{t: t, gbt: gbt, best: m["previousblockhash"].(string), submit: `{"result":null,"error":null,"id":%d}`}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     uint64            `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	result := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, `{"result":%s,"error":null,"id":%d}`, b, req.ID)
	}
	switch req.Method {
	case "getblockchaininfo":
		result(map[string]any{"chain": "main", "blocks": 819999})
	case "getblocktemplate":
		fmt.Fprintf(w, `{"result":%s,"error":null,"id":%d}`, n.gbt, req.ID)
	case "getbestblockhash":
		n.mu.Lock()
		best := n.best
		n.mu.Unlock()
		result(best)
	case "submitblock":
		var blk string
		if len(req.Params) == 1 {
			json.Unmarshal(req.Params[0], &blk)
		}
		n.mu.Lock()
		n.submitted = append(n.submitted, blk)
		body := n.submit
		n.mu.Unlock()
		if n.hold != nil {
			n.arrived <- struct{}{}
			<-n.hold
		}
		if strings.HasPrefix(body, "HTTP 500 ") {
			http.Error(w, strings.TrimPrefix(body, "HTTP 500 "), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, body, req.ID)
	default:
		n.mu.Lock()
		body, ok := n.extra[req.Method]
		n.mu.Unlock()
		if !ok {
			body = `{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":%d}`
		}
		fmt.Fprintf(w, body, req.ID)
	}
}

// endpoint is the node's host:port.
func (n *fakeNode) endpoint() string { return strings.TrimPrefix(n.srv.URL, "http://") }

func (n *fakeNode) setSubmit(body string) {
	n.mu.Lock()
	n.submit = body
	n.mu.Unlock()
}

func (n *fakeNode) submissions() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.submitted...)
}

// newFakeSource starts a Source on the fake nodes, with polling and
// refresh slowed down so that only the test's calls reach them.
func newFakeSource(t *testing.T, nodes ...*fakeNode) *Source {
	t.Helper()
	cfg := Config{Network: "mainnet", PollInterval: time.Hour, RefreshInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, n := range nodes {
		cfg.URLs = append(cfg.URLs, n.srv.URL)
	}
	src, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New on fake nodes: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// fakeBlock is a block at the fake nodes' height (the nodes do not check
// it) and its serialization in hex.
func fakeBlock(t *testing.T, tmpl *work.Template) (*wire.MsgBlock, string) {
	t.Helper()
	cb := wire.NewMsgTx(1)
	// BIP 34 height 820000 = 0x0c8320, pushed as 3 little-endian bytes.
	cb.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: 0xffffffff}, []byte{0x03, 0x20, 0x83, 0x0c, 0x01}, nil))
	cb.AddTxOut(wire.NewTxOut(tmpl.CoinbaseValue, []byte{0x51}))
	blk := &wire.MsgBlock{Header: wire.BlockHeader{Version: int32(tmpl.Version), Bits: tmpl.Bits, Timestamp: time.Unix(int64(tmpl.CurTime), 0)}}
	blk.Header.PrevBlock = [32]byte(tmpl.PrevHash)
	blk.AddTransaction(cb)
	var buf bytes.Buffer
	if err := blk.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return blk, hex.EncodeToString(buf.Bytes())
}

// TestSubmitAnswers gives each answer a node may make to submitblock
// (Bitcoin Core's and btcd's) and checks what Submit makes of it.
func TestSubmitAnswers(t *testing.T) {
	res := func(v string) string { return `{"result":` + v + `,"error":null,"id":%d}` }
	rpcErr := func(code int, msg string) string {
		return fmt.Sprintf(`{"result":null,"error":{"code":%d,"message":%q},"id":%%d}`, code, msg)
	}
	// btcd's answers to getblockheader and getchaintips for a block it
	// has on its best chain, on a side chain, and as invalid.
	notMain := rpcErr(-32603, "Internal error: block HASH is not in the main chain")
	btcdBest := map[string]string{"getblockheader": res(`{"hash":"HASH","confirmations":2,"height":820000}`)}
	btcdFork := map[string]string{"getblockheader": notMain,
		"getchaintips": res(`[{"height":820001,"hash":"00ff","branchlen":0,"status":"active"},{"height":820000,"hash":"HASH","branchlen":1,"status":"valid-fork"}]`)}
	btcdInvalid := map[string]string{"getblockheader": notMain,
		"getchaintips": res(`[{"height":820000,"hash":"HASH","branchlen":1,"status":"invalid"},{"height":820001,"hash":"00ff","branchlen":0,"status":"active"}]`)}
	const (
		taken = iota
		rejected
		retry
	)
	cases := []struct {
		name     string
		body     string // HASH stands for the block's hash
		extra    map[string]string
		want     int
		reason   string // RejectedError.Reason, or a part of the retryable error
		accepted int64  // Counts after the call
	}{
		{"null", res(`null`), nil, taken, "", 1},
		{"core duplicate", res(`"duplicate"`), nil, taken, "", 0},
		{"core inconclusive", res(`"inconclusive"`), nil, taken, "", 1},
		{"core duplicate-inconclusive", res(`"duplicate-inconclusive"`), nil, taken, "", 0},
		{"btcd duplicate", res(`"rejected: already have block HASH"`), btcdBest, taken, "", 0},
		{"btcd duplicate on a side chain", res(`"rejected: already have block HASH"`), btcdFork, taken, "", 0},
		{"btcd duplicate invalid", res(`"rejected: already have block HASH"`), btcdInvalid, rejected,
			"rejected: already have block HASH, which it holds as invalid", 0},
		{"btcd duplicate, node cannot tell", res(`"rejected: already have block HASH"`), nil, retry, "getchaintips: Method not found (code -32601)", 0},
		{"btcd duplicate orphan", res(`"rejected: already have block (orphan) HASH"`), nil, taken, "", 0},
		{"core duplicate-invalid", res(`"duplicate-invalid"`), nil, rejected, "duplicate-invalid", 0},
		{"core high-hash", res(`"high-hash"`), nil, rejected, "high-hash", 0},
		{"core bad-txnmrklroot", res(`"bad-txnmrklroot"`), nil, rejected, "bad-txnmrklroot", 0},
		{"core rejected", res(`"rejected"`), nil, rejected, "rejected", 0},
		{"empty reason", res(`""`), nil, rejected, "rejected (the node gave no reason)", 0},
		{"btcd another block known", res(`"rejected: already have block 00000000000000000000ffffffffffffffffffffffffffffffffffffffffffff"`), nil, rejected,
			"rejected: already have block 00000000000000000000ffffffffffffffffffffffffffffffffffffffffffff", 0},
		{"btcd rule", res(`"rejected: block timestamp of 1700000600 is not after expected 1700000700"`), nil, rejected,
			"rejected: block timestamp of 1700000600 is not after expected 1700000700", 0},
		{"decode failed", rpcErr(-22, "Block decode failed"), nil, rejected, "Block decode failed", 0},
		{"core warming up", rpcErr(-28, "Loading block index…"), nil, retry, "submitblock: Loading block index… (code -28)", 0},
		{"core own failure", rpcErr(-25, "System error while flushing: disk full"), nil, retry, "disk full (code -25)", 0},
		{"not a reason", res(`{"accepted":true}`), nil, retry, `submitblock: submitblock answered {"accepted":true}, neither null nor a reason string`, 0},
		{"HTTP 500 text", "HTTP 500 internal", nil, retry, `HTTP 500 Internal Server Error, not a JSON-RPC answer: "internal\n"`, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newFakeNode(t)
			src := newFakeSource(t, n)
			blk, hexBlock := fakeBlock(t, src.Current())
			hash := blk.BlockHash().String()
			n.setSubmit(strings.ReplaceAll(c.body, "HASH", hash))
			extra := map[string]string{}
			for m, b := range c.extra {
				extra[m] = strings.ReplaceAll(b, "HASH", hash)
			}
			n.mu.Lock()
			n.extra = extra
			n.mu.Unlock()
			c.reason = strings.ReplaceAll(c.reason, "HASH", hash)
			err := src.Submit(t.Context(), blk, "alice")
			if got := n.submissions(); len(got) != 1 || got[0] != hexBlock {
				t.Fatalf("node received %d submissions %.80q, want the block once", len(got), got)
			}
			var rej *work.RejectedError
			switch c.want {
			case taken:
				if err != nil {
					t.Fatalf("Submit: %v, want nil", err)
				}
			case rejected:
				if !errors.As(err, &rej) || rej.Reason != c.reason || rej.Hash.String() != hash {
					t.Fatalf("Submit: %v, want a rejection of %s with reason %q", err, hash, c.reason)
				}
			case retry:
				var nerr *NoAnswerError
				if !errors.As(err, &nerr) || work.IsRejected(err) || len(nerr.Errs) != 1 || nerr.Hash.String() != hash {
					t.Fatalf("Submit: %#v, want a NoAnswerError with one node's error", err)
				}
				want := "block " + hash + " not submitted: no node answered: node " + n.endpoint() + ": "
				if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, c.reason) {
					t.Fatalf("Submit error %q, want it to start %q and contain %q", msg, want, c.reason)
				}
			}
			wantRejected := int64(0)
			if c.want == rejected {
				wantRejected = 1
			}
			if acc, rej := src.Counts(); acc != c.accepted || rej != wantRejected {
				t.Fatalf("counts %d accepted, %d rejected; want %d, %d", acc, rej, c.accepted, wantRejected)
			}
		})
	}
}

// TestSubmitToEveryNode checks that a block goes to every configured node
// and how their answers combine.
func TestSubmitToEveryNode(t *testing.T) {
	t.Run("one down, the other accepts", func(t *testing.T) {
		a, b := newFakeNode(t), newFakeNode(t)
		src := newFakeSource(t, a, b)
		a.srv.Close()
		blk, hexBlock := fakeBlock(t, src.Current())
		if err := src.Submit(t.Context(), blk, "alice"); err != nil {
			t.Fatalf("Submit with the first node down: %v, want nil", err)
		}
		if got := b.submissions(); len(got) != 1 || got[0] != hexBlock {
			t.Fatalf("second node received %d submissions, want the block once", len(got))
		}
	})
	t.Run("both down", func(t *testing.T) {
		a, b := newFakeNode(t), newFakeNode(t)
		src := newFakeSource(t, a, b)
		a.srv.Close()
		b.srv.Close()
		blk, _ := fakeBlock(t, src.Current())
		err := src.Submit(t.Context(), blk, "alice")
		var nerr *NoAnswerError
		if !errors.As(err, &nerr) || work.IsRejected(err) || len(nerr.Errs) != 2 {
			t.Fatalf("Submit with both nodes down: %#v, want a NoAnswerError with two errors", err)
		}
		for i, n := range []*fakeNode{a, b} {
			var terr *TransportError
			if !errors.As(nerr.Errs[i], &terr) || terr.Endpoint != n.endpoint() || terr.Method != "submitblock" {
				t.Errorf("error %d: %v, want a submitblock TransportError of %s", i, nerr.Errs[i], n.endpoint())
			}
			if !strings.Contains(err.Error(), "node "+n.endpoint()+": submitblock: ") {
				t.Errorf("error %q does not name node %s", err, n.endpoint())
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q spans lines", err)
		}
		if st := src.Status(); st.Healthy {
			t.Errorf("status %+v after no node answered, want unhealthy", st)
		}
	})
	t.Run("one rejects, the other is down", func(t *testing.T) {
		a, b := newFakeNode(t), newFakeNode(t)
		src := newFakeSource(t, a, b)
		a.srv.Close()
		b.setSubmit(`{"result":"high-hash","error":null,"id":%d}`)
		blk, _ := fakeBlock(t, src.Current())
		var rej *work.RejectedError
		if err := src.Submit(t.Context(), blk, "alice"); !errors.As(err, &rej) || rej.Reason != "high-hash" {
			t.Fatalf("Submit: %v, want a rejection for high-hash", err)
		}
	})
	t.Run("two reasons", func(t *testing.T) {
		a, b := newFakeNode(t), newFakeNode(t)
		src := newFakeSource(t, a, b)
		a.setSubmit(`{"result":"bad-prevblk","error":null,"id":%d}`)
		b.setSubmit(`{"result":"high-hash","error":null,"id":%d}`)
		blk, _ := fakeBlock(t, src.Current())
		var rej *work.RejectedError
		want := "bad-prevblk; node " + b.endpoint() + ": high-hash"
		if err := src.Submit(t.Context(), blk, "alice"); !errors.As(err, &rej) || rej.Reason != want {
			t.Fatalf("Submit: %v, want a rejection for %q", err, want)
		}
	})
	t.Run("one rejects, the other accepts", func(t *testing.T) {
		a, b := newFakeNode(t), newFakeNode(t)
		src := newFakeSource(t, a, b)
		a.setSubmit(`{"result":"bad-prevblk","error":null,"id":%d}`)
		blk, _ := fakeBlock(t, src.Current())
		if err := src.Submit(t.Context(), blk, "alice"); err != nil {
			t.Fatalf("Submit: %v, want nil (a node took the block)", err)
		}
		if acc, rej := src.Counts(); acc != 1 || rej != 0 {
			t.Fatalf("counts %d, %d; want 1 accepted", acc, rej)
		}
	})
	t.Run("a slow node does not hold up the answer", func(t *testing.T) {
		a, b := newFakeNode(t), newFakeNode(t)
		a.hold, a.arrived = make(chan struct{}), make(chan struct{}, 1)
		src := newFakeSource(t, a, b)
		blk, hexBlock := fakeBlock(t, src.Current())
		if err := src.Submit(t.Context(), blk, "alice"); err != nil {
			t.Fatalf("Submit: %v, want nil from the second node", err)
		}
		// The first node holds its call: it got the block and answers
		// only after Submit returned.
		<-a.arrived
		if got := a.submissions(); len(got) != 1 || got[0] != hexBlock {
			t.Fatalf("held node received %d submissions, want the block once", len(got))
		}
		close(a.hold)
		src.Close() // waits for the held call
		if err := src.Submit(t.Context(), blk, "alice"); err == nil || !strings.Contains(err.Error(), "the node source is closed") || work.IsRejected(err) {
			t.Fatalf("Submit after Close: %v, want a retryable error saying the source is closed", err)
		}
	})
}
