package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// laggard is a Stratum miner that finds blocks on the jobs it was sent
// one and two blocks ago: late blocks, as a slow or far-away rig sends
// them. It counts the pool's answers by result.
type laggard struct {
	conn    net.Conn
	r       *bufio.Reader
	en1     []byte
	en2Size int
	gens    [][]*stratum.Job // jobs by generation (clean notify), oldest first
	ids     map[*stratum.Job]string
	nextID  int
	en2     uint32
	answers map[string]int // "true", "stale", "job not found", other messages
	sent    int
}

func dialLaggard(t *testing.T, addr, user string) *laggard {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	l := &laggard{conn: conn, r: bufio.NewReader(conn), ids: map[*stratum.Job]string{}, answers: map[string]int{}}
	l.write(t, "mining.subscribe", []string{"laggard/1"})
	l.write(t, "mining.authorize", []string{user, "x"})
	return l
}

func (l *laggard) write(t *testing.T, method string, params any) {
	t.Helper()
	l.nextID++
	b, _ := stratum.AppendRequest(nil, l.nextID, method, params)
	l.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := l.conn.Write(b); err != nil {
		t.Fatalf("laggard: %s: %v", method, err)
	}
}

// solveOn submits a block solved on job j (regtest: about every other
// nonce wins).
func (l *laggard) solveOn(t *testing.T, j *stratum.Job) {
	t.Helper()
	l.en2++
	en2 := make([]byte, l.en2Size)
	binary.BigEndian.PutUint32(en2[l.en2Size-4:], l.en2)
	tgt, err := j.BlockTarget()
	if err != nil {
		t.Fatal(err)
	}
	for nonce := uint32(0); ; nonce++ {
		h := j.Header(l.en1, en2, j.NTime, nonce, 0, 0)
		raw := h.Bytes()
		hash := chainmath.DoubleSHA256(raw[:])
		if tgt.Meets(&hash) {
			l.write(t, "mining.submit", []string{"late", l.ids[j], hex.EncodeToString(en2), stratum.Hex32(j.NTime), stratum.Hex32(nonce)})
			l.sent++
			return
		}
	}
}

// step reads one line and acts on it: on every clean job, a block on the
// last job of the previous generation (stale: a block that lost the
// race) and one on the generation before (a job the pool has dropped).
func (l *laggard) step(t *testing.T) error {
	l.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := l.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	m, err := stratum.Parse(line)
	if err != nil {
		return err
	}
	switch {
	case m.Method == "mining.notify":
		j, err := stratum.ParseJob(m.Params)
		if err != nil {
			return err
		}
		n, _ := stratum.ParseNotify(m.Params)
		l.ids[j] = n.JobID
		if n.Clean || len(l.gens) == 0 {
			l.gens = append(l.gens, nil)
			if g := len(l.gens); g >= 3 {
				prev, older := l.gens[g-2], l.gens[g-3]
				l.solveOn(t, prev[len(prev)-1])
				l.solveOn(t, older[len(older)-1])
			}
		}
		l.gens[len(l.gens)-1] = append(l.gens[len(l.gens)-1], j)
	case m.Method != "":
	case string(m.ID) == "1": // subscribe
		var res []json.RawMessage
		if err := json.Unmarshal(m.Result, &res); err != nil || len(res) != 3 {
			return fmt.Errorf("subscribe result %s", m.Result)
		}
		var en1 string
		json.Unmarshal(res[1], &en1)
		json.Unmarshal(res[2], &l.en2Size)
		l.en1, _ = hex.DecodeString(en1)
	case string(m.ID) == "2": // authorize
		if string(m.Result) != "true" {
			return fmt.Errorf("authorize: %s", m.Result)
		}
	default:
		if e := m.ResponseError(); e != nil {
			switch {
			case strings.Contains(e.Message, "stale"):
				l.answers["stale"]++
			case strings.Contains(e.Message, "not found"):
				l.answers["job not found"]++
			default:
				l.answers[e.Message]++
			}
		} else {
			l.answers[string(m.Result)]++
		}
	}
	return nil
}

// TestBlockFloodBansNobody floods a regtest btcd with blocks through the
// coordinator: two agents whose every share is a block, and a laggard
// whose every share is a block on a job one or two blocks old (stale
// blocks that land on side chains, and shares on jobs the pool dropped).
// With a reject rule that would close and ban at its first trip (4
// shares, half rejected, one connection bans), nobody is closed or
// banned, and every block btcd took, side chains included, carries the
// coinbase tag.
func TestBlockFloodBansNobody(t *testing.T) {
	const tag = "/regtest flood/"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 9)
	src := newSource(t, ctx, b, key.addr, nil)
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	var accepted []coordinator.BlockEvent
	coord, err := coordinator.New(coordinator.Config{
		// Every share is a block on regtest; 2e-4 (about 860,000
		// hashes) keeps the flood to what btcd takes in.
		Source: src, Store: st, ShareDifficulty: 2e-4, SharesPerMinute: -1,
		CoinbaseTag:  tag,
		BanMinShares: 4, BanRejectRatio: 0.5, BanIPAfter: 1,
		Logger: testLogger(t),
		OnBlock: func(ev coordinator.BlockEvent) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Accepted {
				accepted = append(accepted, ev)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := coord.Serve(ctx, ln); err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	for i := range 1 {
		ag, err := agent.New(agent.Config{URLs: []string{ln.Addr().String()}, User: fmt.Sprintf("rig%d", i), Pass: "x", Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ag.Run(ctx) })
	}
	lag := dialLaggard(t, ln.Addr().String(), "late")
	deadline := time.Now().Add(2 * time.Minute)
	for lag.answers["stale"] < 5 || lag.answers["job not found"] < 5 {
		if err := lag.step(t); err != nil {
			t.Fatalf("laggard after %v: %v (answers %v)", time.Until(deadline), err, lag.answers)
		}
		if time.Now().After(deadline) {
			t.Fatalf("laggard answers %v after 2 minutes, want 5 stale and 5 job not found", lag.answers)
		}
	}
	// The laggard is still served: a request after all of that is
	// answered (its last shares' answers may come first).
	lag.write(t, "mining.extranonce.subscribe", []any{})
	for want := lag.nextID; ; {
		lag.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := lag.r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("laggard closed after %v: %v", lag.answers, err)
		}
		if m, _ := stratum.Parse(line); m != nil && string(m.ID) == fmt.Sprint(want) {
			break
		}
	}
	if bans := coord.Bans(); len(bans) != 0 || coord.Banned("127.0.0.1") {
		t.Fatalf("bans after the flood: %+v", bans)
	}
	for _, w := range coord.Status().Workers {
		if w.RejectCloses != 0 {
			t.Fatalf("worker %s closed %d times by the reject rule (rejects %v)", w.Name, w.RejectCloses, w.Rejected)
		}
	}
	cancel()

	var tips []struct {
		Height int64  `json:"height"`
		Hash   string `json:"hash"`
		Status string `json:"status"`
	}
	if err := b.Call(t.Context(), "getchaintips", nil, &tips); err != nil {
		t.Fatal(err)
	}
	side := 0
	for _, tp := range tips {
		if tp.Status != "active" {
			side++
		}
	}
	if side < 4 {
		t.Fatalf("%d side-chain tips in btcd, want many (the laggard's stale blocks): %+v", side, tips)
	}
	push, _ := txscript.NewScriptBuilder().AddData([]byte(tag)).Script()
	mu.Lock()
	events := append([]coordinator.BlockEvent(nil), accepted...)
	mu.Unlock()
	for _, ev := range events {
		raw, err := b.RawBlock(t.Context(), ev.Hash)
		if err != nil {
			t.Fatal(err)
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		if sig := blk.Transactions[0].TxIn[0].SignatureScript; !bytes.HasSuffix(sig, push) {
			t.Fatalf("block %s at %d (finder %s): scriptSig %x lacks the tag %q", ev.Hash, ev.Height, ev.Finder, sig, tag)
		}
	}
	t.Logf("%d blocks accepted, %d side-chain tips; laggard answers %v", len(events), side, lag.answers)
}
