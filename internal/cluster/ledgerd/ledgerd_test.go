package ledgerd

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

func testShare(set, i int) store.Share {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], uint64(set))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return store.Share{
		Time:        time.Unix(1700000000, int64(i)).UTC(),
		Worker:      fmt.Sprintf("w%d.rig", i%5),
		Extranonce1: "01020304",
		JobID:       "1f",
		Extranonce2: fmt.Sprintf("%08x", i),
		NTime:       0x65000000,
		Nonce:       uint32(i),
		Version:     0x20000000,
		Difficulty:  0.5,
		Achieved:    0.75,
		Hash:        sha256.Sum256(b[:]),
	}
}

// publish records n shares of set through a sharelog.Log.
func publish(t *testing.T, js jetstream.JetStream, set, n int) map[chainmath.Hash]bool {
	t.Helper()
	l, err := sharelog.New(js, sharelog.Config{Frontend: fmt.Sprintf("fe-%d", set)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	want := map[chainmath.Hash]bool{}
	for i := range n {
		want[testShare(set, i).Hash] = true
		wg.Go(func() {
			if err := l.RecordShare(ctx, testShare(set, i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return want
}

func openLedger(t *testing.T, pg *clustertest.Postgres) *pgledger.Ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	led, err := pgledger.Open(ctx, pg.CreateDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(led.Close)
	return led
}

func newWriter(t *testing.T, js jetstream.JetStream, led *pgledger.Ledger, cfg Config) *Writer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := New(ctx, js, led, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// waitDrained waits until the consumer has nothing pending.
func waitDrained(t *testing.T, w *Writer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := w.Lag(ctx)
		cancel()
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer still has %d messages pending (%v); stats %+v", lag, err, w.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkLedger(t *testing.T, led *pgledger.Ledger, want map[chainmath.Hash]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := led.ShareCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(want)) {
		t.Fatalf("ledger holds %d shares, want %d", n, len(want))
	}
	got, err := led.Shares(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[chainmath.Hash]bool{}
	for _, sh := range got {
		if !want[sh.Hash] || seen[sh.Hash] {
			t.Fatalf("share %s in the ledger: expected %v, seen before %v", sh.Hash, want[sh.Hash], seen[sh.Hash])
		}
		seen[sh.Hash] = true
	}
}

func gatherLag(t *testing.T, w *Writer) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(w.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "powcoord_ledger_lag_messages" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no powcoord_ledger_lag_messages metric")
	return 0
}

func TestWriter(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	pg := clustertest.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, c.URLs(), "ledgerd-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 3, SharesMaxBytes: 256 << 20}); err != nil {
		t.Fatalf("%v\n%s", err, c.Logs())
	}
	const n = 5000

	t.Run("StoresEveryShareOnce", func(t *testing.T) {
		led := openLedger(t, pg)
		want := publish(t, js, 1, n)
		if _, err := bus.Publish(ctx, js, "powcoord.shares.broken", []byte("not a share"), "broken-1"); err != nil {
			t.Fatal(err)
		}
		w := newWriter(t, js, led, Config{Batch: 1000})
		if lag := gatherLag(t, w); lag != n+1 {
			t.Fatalf("lag before the writer runs: %v, want %d", lag, n+1)
		}
		wctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		waitDrained(t, w)
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		checkLedger(t, led, want)
		if s := w.Stats(); s.Messages != n || s.Stored != n || s.Bad != 1 {
			t.Fatalf("stats %+v, want %d messages and shares stored, 1 bad", s, n)
		}
		if lag := gatherLag(t, w); lag != 0 {
			t.Fatalf("lag after the writer ran: %v", lag)
		}
	})

	t.Run("CrashBeforeAckThenAnotherWriter", func(t *testing.T) {
		led := openLedger(t, pg)
		want := publish(t, js, 2, n)
		const batch, crashAfter = 500, 3
		w1 := newWriter(t, js, led, Config{Batch: batch, AckWait: time.Second})
		wctx, crash := context.WithCancel(context.Background())
		commits := 0
		w1.afterCommit = func() bool {
			commits++
			if commits == crashAfter {
				crash() // dies after its third commit, before acknowledging it
				return false
			}
			return true
		}
		if err := w1.Run(wctx); err != nil {
			t.Fatal(err)
		}
		s1 := w1.Stats()
		if s1.Messages != (crashAfter-1)*batch || s1.Stored != crashAfter*batch-batch {
			t.Fatalf("crashed writer's stats %+v", s1)
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if got, err := led.ShareCount(cctx); err != nil || got != crashAfter*batch {
			t.Fatalf("after the crash the ledger holds %d shares (%v), want %d", got, err, crashAfter*batch)
		}
		w2 := newWriter(t, js, led, Config{Batch: batch, AckWait: time.Second})
		wctx2, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w2.Run(wctx2) }()
		waitDrained(t, w2)
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		checkLedger(t, led, want)
		// The unacknowledged batch came again and was stored once.
		rest := uint64(n - (crashAfter-1)*batch)
		if s2 := w2.Stats(); s2.Messages != rest || s2.Stored != uint64(n-crashAfter*batch) {
			t.Fatalf("second writer's stats %+v, want %d messages, %d stored", s2, rest, n-crashAfter*batch)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Batch: -1}, "batch -1"},
		{Config{Batch: pgledger.MaxBatch + 1}, "batch 65537"},
		{Config{AckWait: time.Millisecond}, "ack wait 1ms"},
		{Config{FetchWait: time.Microsecond}, "fetch wait 1µs"},
	} {
		if _, err := New(context.Background(), nil, nil, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
