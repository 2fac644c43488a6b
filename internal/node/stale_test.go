package node_test

import (
	"bufio"
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/node"
	"github.com/powcoord/powcoord/internal/node/nodetest"
	"github.com/powcoord/powcoord/internal/store"
)

// TestCoordinatorSendsMinersAwayWhileNodeIsStale: with the node gone for
// longer than MaxStale, the coordinator disconnects its miners and refuses
// new ones (so they fail over to a backup pool); once the node is back,
// miners get work again.
func TestCoordinatorSendsMinersAwayWhileNodeIsStale(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := nodetest.StartBtcd(t, "regtest")
	key := newKey(t, 9)
	reg := prometheus.NewRegistry()
	src := newSource(t, ctx, b, key.addr, func(c *node.Config) { c.MaxStale = time.Second; c.Registerer = reg })
	st, err := store.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	coord, err := coordinator.New(coordinator.Config{Source: src, Store: st, ShareDifficulty: 1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	// handshake dials, subscribes and authorizes; it returns the
	// connection and the first lines the coordinator sent back.
	handshake := func() (net.Conn, *bufio.Reader, string) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte(`{"id":1,"method":"mining.subscribe","params":[]}` + "\n" +
			`{"id":2,"method":"mining.authorize","params":["` + key.addr + `","x"]}` + "\n"))
		r := bufio.NewReader(conn)
		line, _ := r.ReadString('\n')
		return conn, r, line
	}

	conn, r, first := handshake()
	defer conn.Close()
	if !strings.Contains(first, `"mining.notify"`) && !strings.Contains(first, `"result":[[`) {
		t.Fatalf("first line %q", first)
	}
	b.Kill()
	// The session is closed once the work is stale: reads end.
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			break
		}
	}
	if !src.Status().Stale || !coord.Status().Source.Stale {
		t.Fatalf("status does not say stale: %+v", coord.Status().Source)
	}
	// The RPC metrics saw the calls, and the failures as transport errors.
	if n := metricSum(t, reg, "powcoord_node_rpc_seconds", "getblocktemplate"); n < 1 {
		t.Fatalf("powcoord_node_rpc_seconds counted %v getblocktemplate calls", n)
	}
	if n := metricSum(t, reg, "powcoord_node_rpc_errors_total", "transport"); n < 1 {
		t.Fatalf("powcoord_node_rpc_errors_total counted %v transport errors with the node down", n)
	}
	// A new miner is refused with the reason.
	c2, _, line := handshake()
	c2.Close()
	if !strings.Contains(line, "stale") {
		t.Fatalf("a miner connecting while the node is down got %q", line)
	}
	// The node comes back: miners are admitted again.
	b.Start()
	waitFor(t, 30*time.Second, "miners admitted again", func() bool {
		c, _, line := handshake()
		c.Close()
		return strings.Contains(line, `"result":[[`)
	})
}

// metricSum adds up a counter, or a histogram's sample count, over the
// series of family name that have a label with value label.
func metricSum(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() != label {
					continue
				}
				if h := m.GetHistogram(); h != nil {
					sum += float64(h.GetSampleCount())
				} else {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
