package sharelog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/store"
)

var _ coordinator.Ledger = (*Log)(nil)

func hashOf(i int) chainmath.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// TestShare returns a distinct valid share for i.
func testShare(i int) ledger.Share {
	return ledger.Share{
		Time:        time.Unix(1700000000, int64(i)).UTC(),
		Worker:      fmt.Sprintf("bc1qworker%d.rig%d", i%7, i%3),
		Extranonce1: "0a0b0c0d",
		JobID:       fmt.Sprintf("%x", i/100),
		Extranonce2: fmt.Sprintf("%08x", i),
		NTime:       0x65000000 + uint32(i),
		Nonce:       uint32(i) * 2654435761,
		Version:     0x20000000,
		Difficulty:  0.001,
		Achieved:    0.001 + float64(i)/1e6,
		Hash:        hashOf(i),
		Block:       i%500 == 0,
	}
}

func TestShareCodecRoundTrip(t *testing.T) {
	for _, i := range []int{0, 1, 12345} {
		sh := testShare(i)
		enc := AppendShare(nil, sh)
		got, err := DecodeShare(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, sh) {
			t.Fatalf("share %d: decoded %+v, want %+v", i, got, sh)
		}
	}
	sh := testShare(7)
	sh.Time = time.Time{}
	if got, err := DecodeShare(AppendShare(nil, sh)); err != nil || !got.Time.IsZero() {
		t.Fatalf("zero time: got %v, %v", got.Time, err)
	}
	enc := AppendShare(nil, testShare(3))
	js, _ := json.Marshal(testShare(3))
	t.Logf("share: %d bytes binary, %d bytes JSON", len(enc), len(js))
	if len(enc) != shareFixed+1+len("bc1qworker3.rig0")+1+8+1+1+1+8 {
		t.Fatalf("encoded share is %d bytes", len(enc))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", enc[:10], "share message of 10 bytes: want at least 70"},
		{"version", append([]byte{9}, enc[1:]...), "format version 9: want 1"},
		{"trailing", append(append([]byte{}, enc...), 0), "1 bytes after the last field"},
		{"truncated", enc[:len(enc)-1], "extranonce2 at offset"},
		{"flags", func() []byte { b := append([]byte{}, enc...); b[69] = 4; return b }(), "unknown flags 0x4"},
	} {
		if _, err := DecodeShare(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func testBlock(i int) ledger.Block {
	b := ledger.Block{Height: int64(100 + i), Hash: hashOf(-i - 1), Finder: "bc1qfinder.rig", Time: 0x65000000, FoundAt: time.Unix(1700000100, int64(i)).UTC()}
	for j := range b.Header {
		b.Header[j] = byte(j + i)
	}
	b.Raw = append(append([]byte{}, b.Header[:]...), 1, 2, 3, byte(i))
	return b
}

func TestBlockCodecRoundTrip(t *testing.T) {
	b := testBlock(3)
	enc := AppendBlock(nil, b)
	got, err := DecodeBlock(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("decoded %+v, want %+v", got, b)
	}
	if _, err := DecodeBlock(enc[:len(enc)-1]); err == nil || !strings.Contains(err.Error(), "raw block length") {
		t.Fatalf("truncated block: error %v", err)
	}
	if _, err := DecodeBlock(enc[:50]); err == nil || !strings.Contains(err.Error(), "block message of 50 bytes") {
		t.Fatalf("short block: error %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, `front-end id "": empty`},
		{Config{Frontend: "a.b"}, `front-end id "a.b": character '.'`},
		{Config{Frontend: "f1", MaxBatch: -1}, "max batch -1"},
		{Config{Frontend: "f1", Publishers: 100}, "100 publishers"},
		{Config{Frontend: "f1", FlushInterval: -time.Second}, "flush interval -1s is negative"},
	} {
		// A JetStream handle without a connection is enough: New fails
		// before using it.
		if _, err := New(fakeJS{}, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(nil, Config{Frontend: "f"}); err == nil {
		t.Error("nil JetStream accepted")
	}
}

// fakeJS only satisfies the type for TestNewRejectsBadConfig; calling any
// method panics.
type fakeJS struct{ jetstream.JetStream }

func connect(t testing.TB, c *clustertest.NATSCluster) jetstream.JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, c.URLs(), "sharelog-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func ensure(t testing.TB, c *clustertest.NATSCluster, js jetstream.JetStream) *bus.Streams {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 3, SharesMaxBytes: 256 << 20})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Logs())
	}
	return s
}

// TestCluster runs the tests that need a 3-server cluster on one; the
// one that kills the servers runs last.
func TestCluster(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	js := connect(t, c)
	s := ensure(t, c, js)
	t.Run("ConcurrentSharesAckedAndDeduplicated", func(t *testing.T) { testConcurrentShares(t, js, s) })
	t.Run("BatchFitsMaxPayload", func(t *testing.T) { testBatchFitsMaxPayload(t, js, s) })
	t.Run("RecordShareBatch", func(t *testing.T) { testRecordShareBatch(t, js, s) })
	t.Run("FoundBlock", func(t *testing.T) { testFoundBlock(t, js, s) })
	t.Run("ErrorWhenAllServersGone", func(t *testing.T) { testAllServersGone(t, c, js) })
}

func streamMsgs(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func testConcurrentShares(t *testing.T, js jetstream.JetStream, s *bus.Streams) {
	l, err := New(js, Config{Frontend: "fe-1"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	send := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				if err := l.RecordShare(ctx, testShare(i)); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	send()
	st := l.Stats()
	if st.Shares != n || st.FailedShares != 0 || st.Batches == 0 || st.Batches > n/4 {
		t.Fatalf("stats %+v: want %d shares in at most %d batches", st, n, n/4)
	}
	t.Logf("%d shares in %d batches", st.Shares, st.Batches)
	// One message per batch, on the front-end's subject, with an id of
	// the log's own; together they hold every share once.
	count := func(wantMsgs uint64) map[chainmath.Hash]int {
		t.Helper()
		if got := streamMsgs(t, s.Shares); got != wantMsgs {
			t.Fatalf("SHARES holds %d messages, want %d (one per batch)", got, wantMsgs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		seen := map[chainmath.Hash]int{}
		ids := map[string]bool{}
		for seq := uint64(1); seq <= wantMsgs; seq++ {
			m, err := s.Shares.GetMsg(ctx, seq)
			if err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			shares, err := DecodeShares(m.Data)
			if err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			id := m.Header.Get(jetstream.MsgIDHeader)
			if m.Subject != "powcoord.shares.fe-1" || !strings.HasPrefix(id, "fe-1-") || ids[id] {
				t.Fatalf("message %d: subject %s, id %q (seen before: %v)", seq, m.Subject, id, ids[id])
			}
			ids[id] = true
			for _, sh := range shares {
				if i := int(sh.NTime - 0x65000000); !reflect.DeepEqual(sh, testShare(i)) {
					t.Fatalf("message %d: share %+v, want %+v", seq, sh, testShare(i))
				}
				seen[sh.Hash]++
			}
		}
		return seen
	}
	if seen := count(st.Batches); len(seen) != n {
		t.Fatalf("%d distinct shares in the stream, want %d", len(seen), n)
	}
	// The same shares again, through another log (a front-end whose
	// batch failed and whose miners sent their shares again): a new
	// batch id, so the stream holds each share twice; the ledger writers
	// store each once (internal/cluster/ledgerd).
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordShare(context.Background(), testShare(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("RecordShare after Close: %v", err)
	}
	l, err = New(js, Config{Frontend: "fe-1", MaxBatch: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	send()
	st2 := l.Stats()
	if st2.Batches < n/100 {
		t.Fatalf("%d batches of at most 100 for %d shares", st2.Batches, n)
	}
	for h, k := range count(st.Batches + st2.Batches) {
		if k != 2 {
			t.Fatalf("share %s %d times in the stream after the resend, want 2", h, k)
		}
	}
}

// A batch is cut where its message would pass the servers' max_payload
// (1 MiB here), however large MaxBatch is.
func testBatchFitsMaxPayload(t *testing.T, js jetstream.JetStream, s *bus.Streams) {
	if err := s.Shares.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	l, err := New(js, Config{Frontend: "fe-big", MaxBatch: 65536, FlushInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 1500
	long := strings.Repeat("w", 1000) // about 1.1 KB a share: 1.6 MB in all
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sh := testShare(i)
			sh.Worker = long
			if err := l.RecordShare(t.Context(), sh); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	limit := js.Conn().MaxPayload()
	info, err := s.Shares.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	msgs := info.State.Msgs
	if msgs < 2 {
		t.Fatalf("%d shares of 1.1 KB in %d message(s) under a max_payload of %d", n, msgs, limit)
	}
	total := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.Shares.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(m.Data)) > limit {
			t.Fatalf("message %d: %d bytes, over max_payload %d", seq, len(m.Data), limit)
		}
		shares, err := DecodeShares(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		total += len(shares)
	}
	if total != n {
		t.Fatalf("%d shares in %d messages, want %d", total, msgs, n)
	}
}

// RecordShareBatch publishes what it is given at once: 1,100 shares with
// MaxBatch 500 are 3 messages (500, 500, 100), every share once, 1.1 KB
// shares are cut under max_payload, a share with a zero hash fails the
// call before anything is published, and a closed log refuses.
func testRecordShareBatch(t *testing.T, js jetstream.JetStream, s *bus.Streams) {
	if err := s.Shares.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	l, err := New(js, Config{Frontend: "fe-batch", MaxBatch: 500})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1100
	shares := make([]ledger.Share, n)
	for i := range shares {
		shares[i] = testShare(i)
	}
	bad := append(append([]ledger.Share{}, shares[:3]...), ledger.Share{Worker: "w"})
	if err := l.RecordShareBatch(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "share 3 of 4 has an all-zero hash") {
		t.Fatalf("a batch with a zero hash: %v", err)
	}
	if got := streamMsgs(t, s.Shares); got != 0 {
		t.Fatalf("the refused batch left %d messages", got)
	}
	if err := l.RecordShareBatch(t.Context(), shares); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Shares != n || st.Batches != 3 || st.FailedShares != 0 {
		t.Fatalf("stats %+v, want %d shares in 3 batches", st, n)
	}
	info, err := s.Shares.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	seen := map[chainmath.Hash]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.Shares.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeShares(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(got))
		for _, sh := range got {
			if i := int(sh.NTime - 0x65000000); !reflect.DeepEqual(sh, testShare(i)) {
				t.Fatalf("message %d: share %+v, want %+v", seq, sh, testShare(i))
			}
			seen[sh.Hash]++
		}
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{100, 500, 500}) || len(seen) != n {
		t.Fatalf("messages of %v shares holding %d distinct, want [100 500 500] and %d", sizes, len(seen), n)
	}
	// Large shares: cut by max_payload, not only by MaxBatch.
	long := strings.Repeat("w", 1000)
	for i := range shares[:1000] {
		shares[i].Worker = long
	}
	before := info.State.LastSeq
	if err := l.RecordShareBatch(t.Context(), shares[:1000]); err != nil {
		t.Fatal(err)
	}
	if info, err = s.Shares.Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	limit := js.Conn().MaxPayload()
	total := 0
	for seq := before + 1; seq <= info.State.LastSeq; seq++ {
		m, err := s.Shares.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(m.Data)) > limit {
			t.Fatalf("message %d: %d bytes, over max_payload %d", seq, len(m.Data), limit)
		}
		got, _ := DecodeShares(m.Data)
		total += len(got)
	}
	if total != 1000 || info.State.LastSeq-before < 2 {
		t.Fatalf("1000 shares of 1.1 KB: %d stored in %d messages", total, info.State.LastSeq-before)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordShareBatch(t.Context(), shares[:1]); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func testFoundBlock(t *testing.T, js jetstream.JetStream, s *bus.Streams) {
	l, err := New(js, Config{Frontend: "fe-2"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b1, b2 := testBlock(1), testBlock(2)
	b2.FoundAt = b1.FoundAt.Add(time.Second)
	for _, b := range []ledger.Block{b1, b2, b1} {
		if err := l.AddFoundBlock(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, s.Blocks); got != 2 {
		t.Fatalf("BLOCKS holds %d messages, want 2", got)
	}
	m, err := s.Blocks.GetLastMsgForSubject(ctx, "powcoord.blocks.fe-2")
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBlock(m.Data)
	if err != nil || !reflect.DeepEqual(got, b2) || m.Header.Get(jetstream.MsgIDHeader) != bus.ShareMsgID(b2.Hash) {
		t.Fatalf("last block %+v (%v), id %s; want %+v", got, err, m.Header.Get(jetstream.MsgIDHeader), b2)
	}
	at := time.Unix(1700000200, 0)
	if err := l.SetFoundBlockState(ctx, b1.Hash, store.FoundAccepted, "", at); err != nil {
		t.Fatal(err)
	}
	if err := l.SetFoundBlockState(ctx, b1.Hash, "lost", "", at); err == nil || !strings.Contains(err.Error(), `unknown state "lost"`) {
		t.Fatalf("unknown state: %v", err)
	}
	if err := l.SetFoundBlockState(ctx, hashOf(99), store.FoundAccepted, "", at); err == nil || !strings.Contains(err.Error(), "not recorded") {
		t.Fatalf("unknown block: %v", err)
	}
	all, _ := l.FoundBlocks(ctx, "")
	pending, _ := l.FoundBlocks(ctx, store.FoundPending)
	if len(all) != 2 || all[0].Hash != b1.Hash || all[0].State != store.FoundAccepted || all[0].Attempts != 1 || !all[0].UpdatedAt.Equal(at) ||
		len(pending) != 1 || pending[0].Hash != b2.Hash {
		t.Fatalf("found blocks %+v, pending %+v", all, pending)
	}
}

func testAllServersGone(t *testing.T, c *clustertest.NATSCluster, js jetstream.JetStream) {
	const timeout = 500 * time.Millisecond
	l, err := New(js, Config{Frontend: "fe-3", PublishTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.RecordShare(context.Background(), testShare(5000)); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		s.Kill()
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { errs[i] = l.RecordShare(context.Background(), testShare(6000+i)) })
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "on powcoord.shares.fe-3 via ") || !strings.Contains(err.Error(), "not acknowledged") {
			t.Fatalf("share %d with every server gone: error %v", i, err)
		}
	}
	t.Logf("with every server gone RecordShare failed after %v: %v", took, errs[0])
	// Bounded: the publish timeout, the flush interval and scheduling.
	if took > 10*timeout {
		t.Fatalf("RecordShare took %v to fail, want about %v", took, timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.AddFoundBlock(ctx, testBlock(9)); err == nil || !strings.Contains(err.Error(), "on powcoord.blocks.fe-3 via ") {
		t.Fatalf("AddFoundBlock with every server gone: %v", err)
	}
	if st := l.Stats(); st.Shares != 1 || st.FailedShares != 10 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkRecordShare measures shares/s acknowledged through a Log on a
// 3-server loopback cluster (R3), with 1,000 concurrent callers.
func BenchmarkRecordShare(b *testing.B) {
	c := clustertest.StartNATSCluster(b, 3)
	js := connect(b, c)
	ensure(b, c, js)
	l, err := New(js, Config{Frontend: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const callers = 1000
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range callers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= b.N {
					return
				}
				if err := l.RecordShare(context.Background(), testShare(1_000_000+i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "shares/s")
	st := l.Stats()
	if st.Batches > 0 {
		b.ReportMetric(float64(st.Shares)/float64(st.Batches), "shares/batch")
	}
}
