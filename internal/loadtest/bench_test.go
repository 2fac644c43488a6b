package loadtest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
)

// startPool runs a coordinator on the embedded chain with a real SQLite
// ledger in dir, on 127.0.0.1:0.
func startPool(tb testing.TB, shareDiff, blockDiff float64) (addr string, st *store.Store, coord *coordinator.Coordinator) {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(tb.TempDir(), "powcoord.db"))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	chain, err := simchain.Open(ctx, simchain.Config{Store: st, StartDifficulty: blockDiff, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	coord, err = coordinator.New(coordinator.Config{Source: chain, Store: st, ShareDifficulty: shareDiff, SharesPerMinute: -1, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- coord.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return ln.Addr().String(), st, coord
}

// shareWindow is how many shares a BenchmarkShares session keeps
// unanswered, as a miner that sends on without waiting does.
const shareWindow = 16

// BenchmarkShares measures valid shares validated and durably recorded
// per second over loopback TCP: 512 sessions, each keeping up to
// shareWindow shares unanswered. The sessions' answers are read as
// `powcoord loadtest` reads them: by its epoll loops (readers=epoll, the
// load generator's default on Linux, where it costs least), or one
// goroutine per session (readers=goroutines, every other system).
func BenchmarkShares(b *testing.B) {
	for _, mode := range []string{"epoll", "goroutines"} {
		b.Run("readers="+mode, func(b *testing.B) { benchShares(b, mode) })
	}
}

func benchShares(b *testing.B, readers string) {
	const sessions = 512
	addr, st, _ := startPool(b, 1e-9, 1e3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	miners := make([]*Miner, sessions)
	windows := make([]chan struct{}, sessions)
	var rejected atomic.Int64
	for i := range miners {
		m, err := Dial(ctx, addr, "", "bench"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		windows[i] = make(chan struct{}, shareWindow)
		m.OnAnswer = func(ok bool) {
			if !ok {
				rejected.Add(1)
			}
			<-windows[i]
		}
		miners[i] = m
	}
	stop, used := startReaders(ctx, miners, readers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer stop()
	if used != readers {
		b.Skipf("readers %s unavailable here (%s used)", readers, used)
	}
	for _, m := range miners {
		if err := m.WaitWork(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, m := range miners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				windows[i] <- struct{}{}
				sh, ok := m.Solve(false, 1<<20)
				if !ok {
					b.Error("no share found")
					return
				}
				if err := m.Submit(sh); err != nil {
					b.Error(err)
					return
				}
			}
			for range shareWindow { // every answer in
				windows[i] <- struct{}{}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "shares/s")
	if n := rejected.Load(); n > 0 {
		b.Fatalf("%d shares rejected", n)
	}
	n, err := st.ShareCount(context.Background())
	if err != nil || n < int64(b.N) {
		b.Fatalf("ledger has %d shares, want at least %d (%v)", n, b.N, err)
	}
}
