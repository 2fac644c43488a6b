package coordinator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// submitWindow is how many shares a benchmark client keeps unanswered.
const submitWindow = 16

// BenchmarkSubmitInProcess measures valid shares validated and durably
// recorded per second without TCP: 256 real sessions of a real
// coordinator (embedded chain, SQLite ledger with WAL and
// synchronous=FULL) served over net.Pipe, each client keeping up to
// submitWindow mining.submit requests unanswered. The shares are
// solved before the timer starts, so the measurement is the
// coordinator's: parse, validate, group commit, reply. One op is one
// accepted share.
func BenchmarkSubmitInProcess(b *testing.B) {
	const sessions = 256
	c := fuzzCoordinator(b)
	ctx, cancel := context.WithCancel(context.Background())
	var served sync.WaitGroup
	defer func() { cancel(); served.Wait() }()
	per := (b.N + sessions - 1) / sessions
	type client struct {
		conn  net.Conn
		r     *bufio.Reader
		lines [][]byte
	}
	clients := make([]*client, sessions)
	shareTgt, _ := chainmath.TargetForDifficulty(c.cfg.ShareDifficulty)
	for i := range clients {
		server, conn := net.Pipe()
		s, reason := c.newSession(server, nil)
		if s == nil {
			b.Fatalf("session refused: %s", reason)
		}
		served.Add(1)
		go func() { defer served.Done(); s.serve(ctx) }()
		defer conn.Close()
		cl := &client{conn: conn, r: bufio.NewReader(conn)}
		user := fmt.Sprintf("bench%d", i)
		go fmt.Fprintf(conn, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[%q,\"x\"]}\n", user)
		var n *stratum.Notify
		var en1 []byte
		for n == nil {
			line, err := cl.r.ReadBytes('\n')
			if err != nil {
				b.Fatal(err)
			}
			m, err := stratum.Parse(line)
			if err != nil {
				b.Fatal(err)
			}
			switch {
			case bytes.Equal(m.ID, []byte("1")):
				var res []json.RawMessage
				var h string
				if json.Unmarshal(m.Result, &res) != nil || len(res) != 3 || json.Unmarshal(res[1], &h) != nil {
					b.Fatalf("subscribe result %s", m.Result)
				}
				en1, _ = hex.DecodeString(h)
			case m.Method == "mining.notify":
				if n, err = stratum.ParseNotify(m.Params); err != nil {
					b.Fatal(err)
				}
			}
		}
		version, _ := stratum.ParseHex32("version", n.Version)
		ntime, _ := stratum.ParseHex32("ntime", n.NTime)
		en2 := make([]byte, c.cfg.Extranonce2Size)
		for k := 0; len(cl.lines) < per; k++ {
			binary.BigEndian.PutUint32(en2, uint32(k))
			hdr := benchHeader(b, n, en1, en2, ntime, version)
			for nonce := uint32(0); ; nonce++ {
				binary.LittleEndian.PutUint32(hdr[76:], nonce)
				h := chainmath.DoubleSHA256(hdr[:])
				if shareTgt.Meets(&h) {
					cl.lines = append(cl.lines, fmt.Appendf(nil, "{\"id\":4,\"method\":\"mining.submit\",\"params\":[%q,%q,%q,%q,%q]}\n",
						user, n.JobID, hex.EncodeToString(en2), n.NTime, stratum.Hex32(nonce)))
					break
				}
			}
		}
		clients[i] = cl
	}
	before, err := c.cfg.Store.(*store.Store).ShareCount(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	left := b.N
	var rejected atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for _, cl := range clients {
		// Each client keeps up to submitWindow shares unanswered, as
		// a miner does (it does not wait for an answer before sending
		// the next share it finds). A server that answers one share
		// at a time serves it one at a time.
		n := min(len(cl.lines), left)
		left -= n
		if n == 0 {
			continue
		}
		window := make(chan struct{}, submitWindow)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, line := range cl.lines[:n] {
				window <- struct{}{}
				if _, err := cl.conn.Write(line); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range n {
				reply, err := cl.r.ReadSlice('\n')
				if err != nil {
					b.Error(err)
					return
				}
				if !bytes.Contains(reply, []byte(`"result":true`)) {
					rejected.Add(1)
				}
				<-window
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "shares/s")
	if n := rejected.Load(); n > 0 {
		b.Fatalf("%d of %d shares rejected", n, b.N)
	}
	after, err := c.cfg.Store.(*store.Store).ShareCount(context.Background())
	if err != nil || after-before != int64(b.N) {
		b.Fatalf("ledger grew by %d shares, want %d (%v)", after-before, b.N, err)
	}
}

// benchHeader rebuilds a share's header from the notify fields, as a miner
// does (docs/stratum-v1.md), with nonce 0.
func benchHeader(tb testing.TB, n *stratum.Notify, en1, en2 []byte, ntime, version uint32) [80]byte {
	tb.Helper()
	cb, err := hex.DecodeString(n.Coinb1 + hex.EncodeToString(en1) + hex.EncodeToString(en2) + n.Coinb2)
	if err != nil {
		tb.Fatal(err)
	}
	var branch []chainmath.Hash
	for _, x := range n.Branch {
		var h chainmath.Hash
		if _, err := hex.Decode(h[:], []byte(x)); err != nil {
			tb.Fatal(err)
		}
		branch = append(branch, h)
	}
	prev, err := chainmath.ParseStratumPrevHash(n.PrevHash)
	if err != nil {
		tb.Fatal(err)
	}
	nbits, _ := stratum.ParseHex32("nbits", n.NBits)
	h := chainmath.Header{Version: version, PrevBlock: prev, MerkleRoot: chainmath.RootFromBranch(chainmath.DoubleSHA256(cb), branch), Time: ntime, Bits: nbits}
	return h.Bytes()
}
