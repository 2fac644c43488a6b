package leader_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/jobs"
	"github.com/powcoord/powcoord/internal/cluster/leader"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func connect(t *testing.T, c *clustertest.NATSCluster, name string) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, c.URLs(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// openEmbedded is the embedded chain of a term, in the CHAIN stream.
func openEmbedded(id string) func(ctx context.Context, js jetstream.JetStream, term uint64) (work.Source, jobs.Payout, error) {
	return func(ctx context.Context, js jetstream.JetStream, term uint64) (work.Source, jobs.Payout, error) {
		cs, err := chainstore.Open(ctx, js, term, id)
		if err != nil {
			return nil, jobs.Payout{}, err
		}
		chain, err := simchain.Open(ctx, simchain.Config{Store: cs, BlockTime: time.Second, StartDifficulty: 1e-4, Logger: quiet()})
		if err != nil {
			return nil, jobs.Payout{}, err
		}
		return chain, jobs.EmbeddedPayout(), nil
	}
}

// TestActiveCoordinatorDiesStandbyTakesOver: two coordinators on a real
// 3-server JetStream cluster, a front-end and a miner extend the embedded
// chain. The active coordinator dies (its connection drops, no
// resignation); the standby takes over within 5 s, reloads the chain
// from CHAIN and goes on; the stream holds one linear chain that
// re-validates.
func TestActiveCoordinatorDiesStandbyTakesOver(t *testing.T) {
	cl := clustertest.StartNATSCluster(t, 3)
	setup := connect(t, cl, "setup")
	sjs, _ := bus.New(setup)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := bus.EnsureStreams(ctx, sjs, bus.StreamsConfig{Replicas: 3, LeaderTTL: 2 * time.Second}); err != nil {
		t.Fatalf("%v\n%s", err, cl.Logs())
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	runners := map[string]*leader.Runner{}
	conns := map[string]*nats.Conn{}
	cancels := map[string]context.CancelFunc{}
	for _, id := range []string{"coord-a", "coord-b"} {
		nc := connect(t, cl, id)
		r, err := leader.New(leader.Config{Conn: nc, ID: id, TTL: 2 * time.Second, Open: openEmbedded(id), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		runners[id], conns[id], cancels[id] = r, nc, rcancel
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(rctx) }()
		if id == "coord-a" {
			waitFor(t, 20*time.Second, "coord-a active", func() bool { return r.State().Role == "active" })
		}
	}

	// The front-end and its miner.
	front, err := jobs.NewSource(ctx, jobs.SourceConfig{Conn: connect(t, cl, "front"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	fst, err := store.Open(filepath.Join(t.TempDir(), "front.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer fst.Close()
	coord, err := coordinator.New(coordinator.Config{Source: front, Store: fst, ShareDifficulty: 1e-5, SharesPerMinute: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); coord.Run(ctx, ln) }()
	ag, err := agent.New(agent.Config{URLs: []string{ln.Addr().String()}, User: "miner.rig", Threads: 1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	go func() { defer wg.Done(); ag.Run(ctx) }()

	reader := chainstore.Reader(sjs)
	height := func() int64 {
		b, err := reader.Blocks(ctx, 0, 0)
		if err != nil || len(b) == 0 {
			return -1
		}
		return b[len(b)-1].Height
	}
	waitFor(t, 60*time.Second, "3 blocks under coord-a", func() bool { return height() >= 3 })
	if st := runners["coord-b"].State(); st.Role != "standby" {
		t.Fatalf("coord-b is %s while coord-a leads", st.Role)
	}

	// coord-a dies: its connection drops without resigning.
	died := time.Now()
	conns["coord-a"].Close()
	cancels["coord-a"]()
	waitFor(t, 10*time.Second, "coord-b active", func() bool { return runners["coord-b"].State().Role == "active" })
	took := time.Since(died)
	if took > 5*time.Second {
		t.Fatalf("standby took over %v after the active coordinator died, want within 5 s", took)
	}
	t.Logf("standby active %v after the leader died (TTL 2 s)", took.Round(time.Millisecond))
	before := height()
	waitFor(t, 60*time.Second, "2 more blocks under coord-b", func() bool { return height() >= before+2 })
	cancel()

	blocks, err := reader.Blocks(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		if b.Height != int64(i) {
			t.Fatalf("CHAIN block %d has height %d: not one linear chain", i, b.Height)
		}
	}
	if err := simchain.ValidateChain(blocks, simchain.Config{BlockTime: time.Second, StartDifficulty: 1e-4}); err != nil {
		t.Fatalf("the chain in CHAIN does not re-validate: %v", err)
	}
	if st := runners["coord-b"].State(); st.Terms != 1 {
		t.Fatalf("coord-b state %+v", st)
	}
	t.Logf("%d blocks in one chain across the takeover", len(blocks))
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}
