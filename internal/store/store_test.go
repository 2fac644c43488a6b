package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "powcoord.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func testBlock(height int64) Block {
	h := chainmath.Header{Version: 0x20000000, Time: 1700000000 + uint32(height), Bits: 0x207fffff, Nonce: uint32(height) * 7}
	h.PrevBlock = chainmath.DoubleSHA256([]byte{byte(height)})
	hdr := h.Bytes()
	raw := append(append([]byte{}, hdr[:]...), 1, 0xde, 0xad, byte(height), 0x00, 0xff) // arbitrary tail, incl. zero and 0xff bytes
	return Block{
		Height:  height,
		Hash:    h.Hash(),
		Header:  hdr,
		Raw:     raw,
		Finder:  fmt.Sprintf("bcrt1finder.w%d", height),
		Time:    h.Time,
		FoundAt: time.Unix(1700000000, int64(height)*1001+123456789),
	}
}

func sameBlock(a, b Block) bool {
	return a.Height == b.Height && a.Hash == b.Hash && a.Header == b.Header && bytes.Equal(a.Raw, b.Raw) &&
		a.Finder == b.Finder && a.Time == b.Time && a.FoundAt.Equal(b.FoundAt)
}

func TestBlocksRoundTripAndReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	var want []Block
	for h := int64(0); h < 10; h++ {
		b := testBlock(h)
		want = append(want, b)
		if err := s.AddBlock(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	err := s.AddBlock(ctx, want[3])
	if err == nil || !strings.Contains(err.Error(), want[3].Hash.String()) {
		t.Fatalf("duplicate block: err %v, want an error naming %s", err, want[3].Hash)
	}
	check := func(s *Store) {
		t.Helper()
		all, err := s.Blocks(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 10 {
			t.Fatalf("Blocks: %d blocks, want 10", len(all))
		}
		for i := range all {
			if !sameBlock(all[i], want[i]) {
				t.Fatalf("block %d\n got %+v\nwant %+v", i, all[i], want[i])
			}
		}
		some, err := s.Blocks(ctx, 4, 3)
		if err != nil || len(some) != 3 || some[0].Height != 4 || some[2].Height != 6 {
			t.Fatalf("Blocks(4, 3): %d blocks %v", len(some), err)
		}
		last, err := s.LastBlocks(ctx, 3)
		if err != nil || len(last) != 3 || !sameBlock(last[0], want[7]) || !sameBlock(last[2], want[9]) {
			t.Fatalf("LastBlocks(3): %v %v", last, err)
		}
		if n, err := s.BlockCount(ctx); err != nil || n != 10 {
			t.Fatalf("BlockCount %d %v", n, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Blocks(ctx, 0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Blocks after Close: %v", err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2)
}

func testShare(worker string, i int) Share {
	return Share{
		Time:        time.Unix(1700000000, int64(i)*1000003),
		Worker:      worker,
		Extranonce1: fmt.Sprintf("%08x", i*3),
		JobID:       fmt.Sprintf("%x", i%17),
		Extranonce2: fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15),
		NTime:       0x65000000 + uint32(i),
		Nonce:       0xfffffff0 + uint32(i%16), // top bit set: must survive INTEGER storage
		Version:     0x20000000 | uint32(i%4)<<13,
		Difficulty:  0.001 * float64(i%5+1),
		Achieved:    1.0 / 3.0 * float64(i+1),
		Hash:        chainmath.DoubleSHA256([]byte(fmt.Sprint(worker, i))),
		Block:       i%50 == 0,
	}
}

func sameShare(a, b Share) bool {
	return a.Time.Equal(b.Time) && a.Worker == b.Worker && a.Extranonce1 == b.Extranonce1 && a.JobID == b.JobID &&
		a.Extranonce2 == b.Extranonce2 && a.NTime == b.NTime && a.Nonce == b.Nonce && a.Version == b.Version &&
		a.Difficulty == b.Difficulty && a.Achieved == b.Achieved && a.Hash == b.Hash && a.Block == b.Block
}

func TestSharesRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	var want []Share
	for i := range 20 {
		sh := testShare([]string{"alice.1", "bob"}[i%2], i)
		want = append(want, sh)
		if err := s.RecordShare(ctx, sh); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Shares(ctx, "")
	if err != nil || len(all) != 20 {
		t.Fatalf("Shares: %d %v", len(all), err)
	}
	for i := range all {
		if !sameShare(all[i], want[i]) {
			t.Fatalf("share %d\n got %+v\nwant %+v", i, all[i], want[i])
		}
	}
	bob, err := s.Shares(ctx, "bob")
	if err != nil || len(bob) != 10 || !sameShare(bob[0], want[1]) {
		t.Fatalf("Shares(bob): %d %v", len(bob), err)
	}
	if n, err := s.ShareCount(ctx); err != nil || n != 20 {
		t.Fatalf("ShareCount %d %v", n, err)
	}
}

// Many goroutines record shares at once; every one must be on disk after
// Close and a reopen, exactly once.
func TestConcurrentSharesDurable(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	const workers, each = 32, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.RecordShare(ctx, testShare(fmt.Sprintf("w%02d", w), i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordShare(ctx, testShare("late", 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("RecordShare after Close: %v", err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, err := s2.ShareCount(ctx); err != nil || n != workers*each {
		t.Fatalf("after reopen: %d shares (%v), want %d", n, err, workers*each)
	}
	for w := range workers {
		name := fmt.Sprintf("w%02d", w)
		got, err := s2.Shares(ctx, name)
		if err != nil || len(got) != each {
			t.Fatalf("%s: %d shares %v", name, len(got), err)
		}
		// One goroutine's shares are recorded in its own call order.
		for i := range got {
			if !sameShare(got[i], testShare(name, i)) {
				t.Fatalf("%s share %d: %+v", name, i, got[i])
			}
		}
	}
}

// Close races with many RecordShare calls: every call that returned nil is
// on disk after Close, every call that returned ErrClosed is not, and no
// call returns anything else.
func TestCloseRacesRecordShare(t *testing.T) {
	s, path := openTemp(t)
	const n = 500
	var wg sync.WaitGroup
	var ok, refused atomicCount
	release := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			switch err := s.RecordShare(context.Background(), testShare("flush", i)); {
			case err == nil:
				ok.add()
			case errors.Is(err, ErrClosed):
				refused.add()
			default:
				t.Error(err)
			}
		}()
	}
	close(release)
	// Let part of the calls complete so that Close lands mid-stream.
	deadline := time.Now().Add(10 * time.Second)
	for ok.get() < 20 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ok.get()+refused.get() != n {
		t.Fatalf("%d ok + %d refused != %d", ok.get(), refused.get(), n)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if c, _ := s2.ShareCount(context.Background()); c != int64(ok.get()) {
		t.Fatalf("%d shares on disk, %d calls reported success", c, ok.get())
	}
	t.Logf("%d recorded, %d refused by Close", ok.get(), refused.get())
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCount) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCount) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if _, ok, err := s.Meta(ctx, "k"); ok || err != nil {
		t.Fatalf("missing key: ok=%v err=%v", ok, err)
	}
	if err := s.SetMeta(ctx, "k", "one"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "k", "two"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, ok, err := s2.Meta(ctx, "k"); v != "two" || !ok || err != nil {
		t.Fatalf("Meta(k) = %q %v %v, want two", v, ok, err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, bad := range []string{"", "a?b.db", "file:x.db"} {
		if s, err := Open(bad); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	missingDir := filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")
	if s, err := Open(missingDir); err == nil {
		s.Close()
		t.Errorf("Open(%q) succeeded", missingDir)
	}
}

func TestCanceledRecordShare(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// With a canceled context the call may still hand the share over (the
	// queue has room), but it must return the context's error or nil, and
	// never hang.
	if err := s.RecordShare(ctx, testShare("c", 1)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("RecordShare with canceled ctx: %v", err)
	}
}

// BenchmarkRecordShare measures ledger throughput with many concurrent
// callers (b.SetParallelism(64) × GOMAXPROCS goroutines); see shares/s.
func BenchmarkRecordShare(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("callers=%dxP", par), func(b *testing.B) {
			s, _ := openTemp(b)
			ctx := context.Background()
			var mu sync.Mutex
			next := 0
			b.SetParallelism(par)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				id := next
				next++
				mu.Unlock()
				i := 0
				for pb.Next() {
					if err := s.RecordShare(ctx, testShare(fmt.Sprintf("b%d", id), i)); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "shares/s")
		})
	}
}
