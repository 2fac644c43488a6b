package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
)

// logMessages is a slog handler that keeps the messages it sees.
type logMessages struct {
	mu   *sync.Mutex
	msgs *[]string
}

func (l logMessages) Enabled(context.Context, slog.Level) bool { return true }
func (l logMessages) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	*l.msgs = append(*l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l logMessages) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logMessages) WithGroup(string) slog.Handler      { return l }

func (l logMessages) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range *l.msgs {
		if m == msg {
			return true
		}
	}
	return false
}

// TestAgentFollowsReconnectOverIPv6: a coordinator listening on [::1]
// stops gracefully and sends client.reconnect; the agent (connected with
// a bracketed IPv6 URL) follows it and mines on the coordinator restarted
// on the same port.
func TestAgentFollowsReconnectOverIPv6(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	addr := probe.Addr().String()
	probe.Close()
	dir := filepath.Join(t.TempDir(), "data")
	f := testFlags(dir)
	f.listen.V1, f.http = addr, ""
	f.shareDiff, f.blockDiff = 1e-6, 1e3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := logMessages{mu: new(sync.Mutex), msgs: new([]string)}
	a, err := agent.New(agent.Config{URLs: []string{"stratum+tcp://" + addr}, User: "ipv6", Pass: "x", Threads: 1, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(actx) })
	defer func() { stopAgent(); wg.Wait() }()
	waitAccepted := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for a.Stats().Accepted < n {
			if time.Now().After(deadline) {
				t.Fatalf("agent has %d shares accepted, want %d", a.Stats().Accepted, n)
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline: real hashing
		}
	}
	waitAccepted(3)
	cancel()
	if err := inst.wait(); err != nil {
		t.Fatal(err)
	}
	before := a.Stats().Accepted
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	inst2, err := startCoordinator(ctx2, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAccepted(before + 3)
	if !logs.has("pool asked to reconnect") {
		t.Fatal("the agent did not follow client.reconnect")
	}
	if st := a.Stats(); st.Pool != "stratum+tcp://"+addr || !st.Connected {
		t.Fatalf("agent stats %+v, want connected to %s", st, addr)
	}
	cancel2()
	inst2.wait()
}
