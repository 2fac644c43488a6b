package ledgerd

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/prometheus/client_golang/prometheus"
)

func testShare(set, i int) ledger.Share {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], uint64(set))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return ledger.Share{
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

// streamMessages is the number of messages on SHARES.
func streamMessages(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(t.Context(), bus.StreamShares)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
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

// gatherCounter reads the counter name from w's collector.
func gatherCounter(t *testing.T, w *Writer, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(w.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s metric", name)
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
		// A batch that decodes but holds a share the ledger refuses (NaN
		// difficulty): quarantined too, not retried for ever.
		poison := testShare(99, 1)
		poison.Difficulty = math.NaN()
		if _, err := bus.Publish(ctx, js, "powcoord.shares.broken", sharelog.AppendBatch(nil, [][]byte{sharelog.AppendShare(nil, poison)}), "broken-2"); err != nil {
			t.Fatal(err)
		}
		w := newWriter(t, js, led, Config{Batch: 4})
		msgs := streamMessages(t, js)
		if msgs < 3 || msgs > n/50 {
			t.Fatalf("%d messages on SHARES for %d shares and two bad messages: shares are not batched", msgs, n)
		}
		if lag := gatherLag(t, w); lag != float64(msgs) {
			t.Fatalf("lag before the writer runs: %v, want %d", lag, msgs)
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
		if s := w.Stats(); s.Messages != msgs || s.Shares != n || s.Stored != n || s.Bad != 1 || s.Quarantined != 2 {
			t.Fatalf("stats %+v, want %d messages, %d shares stored, 1 bad, 2 quarantined", s, msgs, n)
		}
		q, err := led.QuarantinedEntries(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) != 2 || q[0].Subject != "powcoord.shares.broken" || q[1].Subject != "powcoord.shares.broken" {
			t.Fatalf("quarantine %+v, want the two broken messages", q)
		}
		if lag := gatherLag(t, w); lag != 0 {
			t.Fatalf("lag after the writer ran: %v", lag)
		}
	})

	// A share the ledger refuses (a worker name with a NUL, one that is
	// not UTF-8) rides in one message with honest shares: the honest ones
	// are stored, each once; only the bad ones are quarantined, byte for
	// byte, and the message is not redelivered.
	t.Run("QuarantinesOnlyTheBadShare", func(t *testing.T) {
		led := openLedger(t, pg)
		var recs [][]byte
		want := map[chainmath.Hash]bool{}
		badWorkers := map[chainmath.Hash]string{}
		for i := range 7 {
			sh := testShare(3, i)
			switch i {
			case 2:
				sh.Worker = "evil\x00"
				badWorkers[sh.Hash] = sh.Worker
			case 5:
				sh.Worker = "w\xff.rig"
				badWorkers[sh.Hash] = sh.Worker
			default:
				want[sh.Hash] = true
			}
			recs = append(recs, sharelog.AppendShare(nil, sh))
		}
		if _, err := bus.Publish(ctx, js, "powcoord.shares.fe-hostile", sharelog.AppendBatch(nil, recs), "hostile-1"); err != nil {
			t.Fatal(err)
		}
		w := newWriter(t, js, led, Config{Batch: 4})
		wctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		waitDrained(t, w)
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		checkLedger(t, led, want)
		if s := w.Stats(); s.Messages != 1 || s.Shares != 5 || s.Stored != 5 || s.Bad != 0 || s.Quarantined != 2 {
			t.Fatalf("stats %+v, want 1 message, 5 shares stored, 2 quarantined", s)
		}
		q, err := led.QuarantinedEntries(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) != 2 {
			t.Fatalf("quarantine holds %d entries, want 2: %+v", len(q), q)
		}
		for _, e := range q {
			name, ok := badWorkers[e.Key]
			sh, derr := sharelog.DecodeShare(e.Data)
			if !ok || string(e.Worker) != name || derr != nil || sh.Hash != e.Key || sh.Worker != name || e.Subject != "powcoord.shares.fe-hostile" ||
				!strings.Contains(e.Reason, "of 7 (hash "+e.Key.String()+"): worker name ") {
				t.Fatalf("quarantined %x worker %q subject %q reason %q (decoded %v), want worker %q", e.Key, e.Worker, e.Subject, e.Reason, derr, name)
			}
		}
		if got := gatherCounter(t, w, "powcoord_ledger_quarantined_total"); got != 2 {
			t.Fatalf("powcoord_ledger_quarantined_total = %v, want 2", got)
		}
	})

	t.Run("CrashBeforeAckThenAnotherWriter", func(t *testing.T) {
		led := openLedger(t, pg)
		want := publish(t, js, 2, n)
		const batch, crashAfter = 2, 3
		w1 := newWriter(t, js, led, Config{Batch: batch, Transactions: 1, AckWait: time.Second})
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
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		committed, err := led.ShareCount(cctx)
		if err != nil {
			t.Fatal(err)
		}
		// Two batches acknowledged, the third committed but not.
		if s1.Batches != crashAfter-1 || s1.Stored != s1.Shares || committed <= int64(s1.Shares) || committed >= n {
			t.Fatalf("crashed writer's stats %+v with %d shares committed of %d", s1, committed, n)
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
		if s2 := w2.Stats(); s2.Shares != n-s1.Shares || s2.Stored != uint64(n-committed) {
			t.Fatalf("second writer's stats %+v, want %d shares, %d stored", s2, n-s1.Shares, n-committed)
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

// BenchmarkDrain measures the writer alone: b.N shares are put on SHARES
// first (through a sharelog.Log, as front-ends do), then the writer is
// timed while it stores them all in PostgreSQL and acknowledges them.
//
//	go test -run XX -bench BenchmarkDrain -benchtime 50000x -count 3 ./internal/cluster/ledgerd
func BenchmarkDrain(b *testing.B) {
	// Shares per message: 20 is what a front-end's 2 ms batches hold at
	// 10,000 shares/s; 512 is a full batch.
	for _, per := range []int{20, 512} {
		b.Run(fmt.Sprintf("per-message=%d", per), func(b *testing.B) { benchDrain(b, per) })
	}
}

// benchBatch is the writer's Batch in BenchmarkDrain (0: the default).
var benchBatch = 0

func benchDrain(b *testing.B, per int) {
	c := clustertest.StartNATSCluster(b, 3)
	pg := clustertest.StartPostgres(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nc, err := bus.Connect(ctx, c.URLs(), "ledgerd-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 3, SharesMaxBytes: 1 << 30}); err != nil {
		b.Fatalf("%v\n%s", err, c.Logs())
	}
	led, err := pgledger.Open(ctx, pg.CreateDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer led.Close()
	l, err := sharelog.New(js, sharelog.Config{Frontend: "fe-bench", MaxBatch: per, Publishers: 16})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2048)
	for i := range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := l.RecordShare(ctx, testShare(9, i)); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	l.Close()
	w, err := New(ctx, js, led, Config{Batch: benchBatch})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for w.Stats().Shares < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if n, err := led.ShareCount(ctx); err != nil || n != int64(b.N) {
		b.Fatalf("ledger holds %d shares (%v), want %d", n, err, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "shares/s")
	b.ReportMetric(float64(w.Stats().Batches), "batches")
	b.ReportMetric(float64(w.Stats().Messages), "messages")
}
