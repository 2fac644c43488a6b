// Package crashtest kills a real powcoord coordinator process with
// SIGKILL at random moments while miners are submitting shares, and checks
// that what it acknowledged survived: the stored chain re-validates from
// its bytes, every share a miner was told "true" for is in the ledger,
// and the worker history agrees with the ledger's shares.
package crashtest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/gotool"
	"github.com/powcoord/powcoord/internal/loadtest"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// buildPowcoord builds the powcoord binary into a temporary directory.
func buildPowcoord(t *testing.T) string {
	t.Helper()
	bin, err := gotool.BuildPowcoord(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// freePort returns a loopback address that was free a moment ago; the
// coordinator is restarted on the same address each time.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type coordProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func startCoord(t *testing.T, bin, addr, dir string) *coordProc {
	t.Helper()
	p := &coordProc{}
	p.cmd = exec.Command(bin, "coordinator", "--stratum", addr, "--http", "", "--data", dir,
		"--share-difficulty", "2e-5", "--block-difficulty", "1e-4", "--block-time", "1s",
		"--shares-per-minute", "0", "--log-level", "warn")
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A test that fails before kill must not leave it running.
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	// Poll until it accepts connections.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			p.cmd.Wait()
			t.Fatalf("coordinator did not listen on %s: %v\n%s", addr, err, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

func (p *coordProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	p.cmd.Wait()
}

// ledger collects every share a pool answered true.
type ledger struct {
	mu       sync.Mutex
	accepted []loadtest.Share
	firstOK  chan struct{} // closed at the first acceptance after reset
}

func (l *ledger) add(sh loadtest.Share) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted = append(l.accepted, sh)
	if l.firstOK != nil {
		close(l.firstOK)
		l.firstOK = nil
	}
}

func (l *ledger) armFirst() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.firstOK = make(chan struct{})
	return l.firstOK
}

// checkHistory: the worker history of a store killed again and again
// (written in the transaction of the shares) equals, worker by worker
// and minute by minute, the accepted shares, their work and the newest
// one's time counted from the share rows: none of its rows was lost or
// written without its shares. Refused shares are counted only in
// memory until the next commit, so their counts are not compared.
func checkHistory(t *testing.T, st *store.Store, stored []store.Share) {
	t.Helper()
	type key struct {
		worker string
		minute int64
	}
	type row struct {
		acc  int64
		work float64
		last time.Time
	}
	want := map[key]row{}
	for _, sh := range stored {
		k := key{sh.Worker, sh.Time.Unix() / 60}
		r := want[k]
		r.acc++
		r.work += sh.Difficulty
		if sh.Time.After(r.last) {
			r.last = sh.Time
		}
		want[k] = r
	}
	hist, err := st.WorkerMinutes(context.Background(), "", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range hist {
		if m.Accepted == 0 {
			continue // a minute of refused shares only
		}
		n++
		k := key{m.Worker, m.Minute.Unix() / 60}
		w := want[k]
		if m.Accepted != w.acc || math.Abs(m.Work-w.work) > 1e-9*w.work || !m.Last.Equal(w.last) {
			t.Errorf("history of %s at %s: %d shares, work %g, last %s; the share rows: %d, %g, %s",
				m.Worker, m.Minute.Format("15:04"), m.Accepted, m.Work, m.Last, w.acc, w.work, w.last)
		}
	}
	if n != len(want) {
		t.Errorf("history has %d worker minutes with shares, the share rows %d", n, len(want))
	}
	t.Logf("worker history: %d worker minutes, equal to the share rows", n)
}

func TestSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the powcoord binary")
	}
	bin := buildPowcoord(t)
	dir := t.TempDir()
	addr := freePort(t)

	ctx, cancel := context.WithCancel(context.Background())
	var l ledger
	var wg sync.WaitGroup
	p := startCoord(t, bin, addr, dir)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loadtest.Keep(ctx, []string{addr}, "miner"+strconv.Itoa(i), 40, l.add)
		}()
	}
	// A real agent too: it must be mining again within 2 s of every
	// restart, and the ledger must hold at least every share it saw
	// accepted.
	ag, err := agent.New(agent.Config{URLs: []string{"stratum+tcp://" + addr}, User: "realagent", Threads: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	agDone := make(chan error, 1)
	go func() { agDone <- ag.Run(ctx) }()
	const kills = 5
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for k := range kills {
		// Wait for shares to flow, then a random extra moment.
		first := l.armFirst()
		select {
		case <-first:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no share accepted within 30 s\n%s", k, p.stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond) // the random kill moment
		p.kill(t)
		if k < kills-1 {
			before := ag.Stats().Sessions
			p = startCoord(t, bin, addr, dir)
			back := time.Now()
			for {
				st := ag.Stats()
				if st.Sessions > before && st.Connected && st.JobID != "" {
					break
				}
				// A liveness bound only: how fast the agent is back is
				// logged below, not asserted (the machines are shared).
				if time.Since(back) > 30*time.Second {
					t.Fatalf("restart %d: agent not mining 30 s after the coordinator came back (%+v)", k+1, st)
				}
				time.Sleep(5 * time.Millisecond) // polling with a deadline
			}
			t.Logf("restart %d: agent mining again %v after the coordinator came back", k+1, time.Since(back).Round(time.Millisecond))
		}
	}
	cancel()
	wg.Wait()
	<-agDone
	agentAccepted := ag.Stats().Accepted

	st, err := store.Open(filepath.Join(dir, "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bg := context.Background()
	blocks, err := st.Blocks(bg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := simchain.ValidateChain(blocks, simchain.Config{BlockTime: time.Second}); err != nil {
		t.Fatalf("chain of %d blocks does not re-validate: %v", len(blocks), err)
	}
	if len(blocks) < 2 {
		t.Fatalf("chain has %d blocks: nothing was mined", len(blocks))
	}
	stored, err := st.Shares(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, st, stored)
	inLedger := make(map[chainmath.Hash]bool, len(stored))
	for _, sh := range stored {
		inLedger[sh.Hash] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	missing := 0
	for _, sh := range l.accepted {
		if !inLedger[sh.Hash] {
			missing++
			if missing <= 5 {
				t.Errorf("share %s (worker %s, job %s, en1 %s en2 %s nonce %08x) was answered true but is not in the ledger",
					sh.Hash, sh.Worker, sh.JobID, sh.Extranonce1, sh.Extranonce2, sh.Nonce)
			}
		}
	}
	agentStored := 0
	for _, sh := range stored {
		if sh.Worker == "realagent" {
			agentStored++
		}
	}
	if uint64(agentStored) < agentAccepted {
		t.Errorf("the agent saw %d shares accepted, the ledger holds %d of its shares", agentAccepted, agentStored)
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged shares missing from the ledger", missing, len(l.accepted))
	}
	if len(l.accepted) < kills {
		t.Fatalf("only %d shares acknowledged over %d rounds", len(l.accepted), kills)
	}
	t.Logf("agent: %d shares accepted, %d in the ledger", agentAccepted, agentStored)
	t.Logf("%d kills; %d blocks re-validated; %d acknowledged shares all in the ledger of %d", kills, len(blocks), len(l.accepted), len(stored))
}
