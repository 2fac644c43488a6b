package coordinator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// fuzzCoordinator is one coordinator on the embedded chain shared by the
// iterations of a fuzz target (a new chain per input would dominate the
// run time). Share difficulty 1e-9 accepts about one nonce in four, so
// fuzzed submissions do reach the accept path; bans are off because
// every fuzz session comes from the same pipe "address".
func fuzzCoordinator(tb testing.TB) *Coordinator {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(tb.TempDir(), "powcoord.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	chain, err := simchain.Open(context.Background(), simchain.Config{Store: st, StartDifficulty: 1e6, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := New(Config{Source: chain, Store: st, ShareDifficulty: 1e-9, SharesPerMinute: -1, BanMinShares: -1,
		HandshakeTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// runSession feeds input to one session over net.Pipe and returns every
// line the session wrote, once the session has ended.
func runSession(tb testing.TB, c *Coordinator, input []byte) [][]byte {
	tb.Helper()
	server, client := net.Pipe()
	s, reason := c.newSession(server, nil)
	if s == nil {
		tb.Fatalf("session refused: %s", reason)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve(context.Background())
	}()
	var out [][]byte
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := bufio.NewReader(client)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				out = append(out, line)
			}
			if err != nil {
				return
			}
		}
	}()
	client.Write(input) // fails once the session closed the pipe; that is fine
	client.Close()
	<-done
	<-readDone
	return out
}

// checkOutput asserts what every line a session writes must satisfy: valid
// JSON, a known shape, and a result key on every response.
func checkOutput(t *testing.T, out [][]byte) {
	t.Helper()
	for _, line := range out {
		if !bytes.HasSuffix(line, []byte("\n")) {
			t.Fatalf("line without newline: %q", line)
		}
		m, err := stratum.Parse(line)
		if err != nil {
			t.Fatalf("session wrote invalid JSON %q: %v", line, err)
		}
		if m.Method == "" && !bytes.Contains(line, []byte(`"result":`)) {
			t.Fatalf("response without a result key: %q", line)
		}
		if m.Method != "" && m.Method != "mining.notify" && m.Method != "mining.set_difficulty" {
			t.Fatalf("unexpected notification %q", line)
		}
	}
}

// FuzzSession drives the session state machine with any sequence of
// lines: it must never panic, write only well-formed Stratum, and leave
// no session behind.
func FuzzSession(f *testing.F) {
	f.Add([]byte("{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"x/1\"]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"alice\",\"x\"]}\n{\"id\":3,\"method\":\"mining.submit\",\"params\":[\"alice\",\"1\",\"00000000\",\"00000000\",\"00000000\"]}\n"))
	f.Add([]byte("{\"id\":1,\"method\":\"mining.configure\",\"params\":[[\"version-rolling\"],{\"version-rolling.mask\":\"ffffffff\"}]}\n{\"id\":2,\"method\":\"mining.suggest_difficulty\",\"params\":[0.5]}\n"))
	f.Add([]byte("{\"id\":4,\"method\":\"mining.submit\",\"params\":[]}\n{\"id\":null,\"method\":\"mining.authorize\",\"params\":null}\n"))
	f.Add([]byte("not json\n"))
	c := fuzzCoordinator(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		out := runSession(t, c, input)
		checkOutput(t, out)
		if n := c.SessionCount(); n != 0 {
			t.Fatalf("%d sessions left after the connection closed", n)
		}
	})
}

// FuzzShare feeds arbitrary mining.submit fields to an authorized session
// with one job. A share it accepts must really meet the share target when
// rebuilt independently from the notify fields, and is a duplicate the
// second time.
func FuzzShare(f *testing.F) {
	f.Add("alice", "1", "00000000", "", "00000000", "")
	f.Add("alice", "1", "0000000z", "", "7fffffff", "00004000")
	f.Add("alice", "2", "000000000000", "00000000", "ffffffff", "ffffffff")
	f.Add("bob", "1", "00000001", "", "12345678", "")
	c := fuzzCoordinator(f)
	f.Fuzz(func(t *testing.T, worker, jobID, en2, ntime, nonce, vbits string) {
		server, client := net.Pipe()
		defer client.Close()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, client) }()
		s, _ := c.newSession(server, nil)
		defer func() {
			server.Close()
			wg.Wait()
			c.dropSession(s)
		}()
		script, _ := c.cfg.Source.PayoutScript("alice")
		s.subscribed, s.user, s.payout, s.mask = true, "alice", script, c.cfg.VersionMask
		s.sendWork(c.jobs.current(), false)
		j := s.findJob("1")
		if j == nil {
			t.Fatal("no job 1")
		}
		if ntime == "" {
			ntime = j.ep.ntimeHex // a plausible ntime, so other fields get exercised
		}
		p := &stratum.Submit{Worker: worker, JobID: jobID, Extranonce2: en2, NTime: ntime, Nonce: nonce, VersionBits: vbits}
		now := time.Now()
		j2, facts, _ := s.shareFacts(p, now)
		v, _ := validateV1(j2, &facts, p)
		if v.err != nil {
			if v.reason == "" {
				t.Fatalf("rejected share without a reason: %v", v.err)
			}
			return
		}
		// Accepted: rebuild and check independently.
		n := j.notify(false)
		cb, _ := hex.DecodeString(n.Coinb1 + s.en1Hex + strings.ToLower(en2) + n.Coinb2)
		prev, _ := chainmath.ParseStratumPrevHash(n.PrevHash)
		nt, _ := stratum.ParseHex32("ntime", ntime)
		nn, _ := stratum.ParseHex32("nonce", nonce)
		ver, _ := stratum.ParseHex32("version", n.Version)
		if vbits != "" {
			vb, _ := stratum.ParseHex32("vbits", vbits)
			ver = ver&^c.cfg.VersionMask | vb
		}
		var branch []chainmath.Hash
		for _, b := range n.Branch {
			var bh chainmath.Hash
			hex.Decode(bh[:], []byte(b))
			branch = append(branch, bh)
		}
		h := chainmath.Header{Version: ver, PrevBlock: prev, MerkleRoot: chainmath.RootFromBranch(chainmath.DoubleSHA256(cb), branch), Time: nt, Bits: j.ep.tmpl.Bits, Nonce: nn}
		hash := h.Hash()
		if hash != v.hash {
			t.Fatalf("accepted share hash %s, rebuilt %s", v.hash, hash)
		}
		tgt, _ := chainmath.TargetForDifficulty(j.diff)
		if !tgt.Meets(&hash) {
			t.Fatalf("accepted share %s does not meet difficulty %v", hash, j.diff)
		}
		if worker != "alice" || jobID != "1" || len(en2) != 8 {
			t.Fatalf("accepted share with worker %q job %q extranonce2 %q", worker, jobID, en2)
		}
		if s.isDuplicate(&s.shareLane, j2, v.hash) {
			t.Fatal("a share not yet durable counts as a duplicate")
		}
		s.mu.Lock()
		s.remember(v.hash)
		s.mu.Unlock()
		if !s.isDuplicate(&s.shareLane, j2, v.hash) {
			t.Fatal("the same share after it was made durable is not a duplicate")
		}
	})
}
