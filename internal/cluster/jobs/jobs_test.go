package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/simchain"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/work"
)

func quiet() *slog.Logger {
	if os.Getenv("JOBS_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fixedSource is a work.Source whose template the test sets, recording
// the blocks submitted to it.
type fixedSource struct {
	mu      sync.Mutex
	tmpl    *work.Template
	updates chan struct{}
	fail    map[chainmath.Hash]int // submissions of a hash that fail transiently
	got     []chainmath.Hash
	calls   chan chainmath.Hash
}

func newFixedSource(t *work.Template) *fixedSource {
	return &fixedSource{tmpl: t, updates: make(chan struct{}, 1), fail: map[chainmath.Hash]int{}, calls: make(chan chainmath.Hash, 100)}
}

func (f *fixedSource) set(t *work.Template) {
	f.mu.Lock()
	f.tmpl = t
	f.mu.Unlock()
	select {
	case f.updates <- struct{}{}:
	default:
	}
}
func (f *fixedSource) Current() *work.Template  { f.mu.Lock(); defer f.mu.Unlock(); return f.tmpl }
func (f *fixedSource) Updates() <-chan struct{} { return f.updates }
func (f *fixedSource) PayoutScript(user string) ([]byte, error) {
	return simchain.PayoutScript(user)
}
func (f *fixedSource) Submit(_ context.Context, blk *wire.MsgBlock, _ string) error {
	h := chainmath.Hash(blk.BlockHash())
	f.mu.Lock()
	f.got = append(f.got, h)
	n := f.fail[h]
	if n > 0 {
		f.fail[h] = n - 1
	}
	f.mu.Unlock()
	f.calls <- h
	if n > 0 {
		return errors.New("node unreachable")
	}
	return nil
}
func (f *fixedSource) Status() work.Status { return work.Status{Kind: "fixed"} }
func (f *fixedSource) Close() error        { return nil }

func richTemplate(height int64) *work.Template {
	var prev chainmath.Hash
	for i := range prev {
		prev[i] = byte(i) + byte(height)
	}
	return &work.Template{
		Height: height, PrevHash: prev, Version: 0x20000000, Bits: 0x1d00ffff,
		CurTime: 1_700_000_000, MinTime: 1_699_999_000, MaxTime: 1_700_007_200,
		CoinbaseValue: 312_500_000 + height,
		Txs: []work.Tx{
			{TxID: chainmath.Hash{1, 2, 3}, WTxID: chainmath.Hash{4, 5, 6}, Raw: []byte{0x02, 0, 0, 0, 0xde, 0xad}},
			{TxID: chainmath.Hash{7}, WTxID: chainmath.Hash{8}, Raw: bytes.Repeat([]byte{0xab}, 300)},
		},
		WitnessCommitment: bytes.Repeat([]byte{0x6a, 0x24}, 19),
		Created:           time.Unix(1_700_000_000, 123_456_789+height),
	}
}

// sameTemplate fails unless got equals want in every field.
func sameTemplate(t *testing.T, who string, got, want *work.Template) {
	t.Helper()
	if !got.Created.Equal(want.Created) {
		t.Errorf("%s: Created %v, want %v", who, got.Created, want.Created)
	}
	g, w := *got, *want
	g.Created, w.Created = time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: template\n got %+v\nwant %+v", who, g, w)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, tmpl := range []*work.Template{
		richTemplate(5),
		{Height: 1, Bits: 0x207fffff}, // no txs, no commitment, no times
		{Height: 2, Bits: 0x207fffff, WitnessCommitment: []byte{}}, // empty but present
	} {
		for _, p := range []Payout{EmbeddedPayout(), {Kind: PayoutNode, Network: "regtest", Fallback: []byte{0x51}}} {
			data, err := EncodeJob(&Job{Leader: "l1", Term: 9, Published: time.Unix(5, 6), Template: tmpl, Payout: p})
			if err != nil {
				t.Fatal(err)
			}
			j, err := DecodeJob(data)
			if err != nil {
				t.Fatal(err)
			}
			sameTemplate(t, "decoded", j.Template, tmpl)
			if j.Leader != "l1" || j.Term != 9 || !j.Published.Equal(time.Unix(5, 6)) || !reflect.DeepEqual(j.Payout, p) {
				t.Errorf("decoded job %+v", j)
			}
		}
	}
}

func TestEncodeDecodeCoinbaseOutputs(t *testing.T) {
	tmpl := richTemplate(3)
	tmpl.CoinbaseOutputs = []*wire.TxOut{wire.NewTxOut(tmpl.CoinbaseValue-1000, []byte{0x51}), wire.NewTxOut(1000, []byte{0x6a, 0x01, 0x07})}
	pp := &JobPPLNS{Cutoff: 77, Window: "123456"}
	data, err := EncodeJob(&Job{Leader: "l1", Term: 2, Template: tmpl, Payout: EmbeddedPayout(), PPLNS: pp})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"coinbase_outputs":[{"value":`)) || !bytes.Contains(data, []byte(`"pplns":{"cutoff":77,"window":"123456"}`)) {
		t.Fatalf("encoded job: %s", data)
	}
	j, err := DecodeJob(data)
	if err != nil {
		t.Fatal(err)
	}
	sameTemplate(t, "decoded", j.Template, tmpl)
	if !reflect.DeepEqual(j.PPLNS, pp) {
		t.Errorf("decoded pplns %+v, want %+v", j.PPLNS, pp)
	}
	// Outputs that do not sum to the coinbase value are refused both ways.
	bad := *tmpl
	bad.CoinbaseOutputs = []*wire.TxOut{wire.NewTxOut(tmpl.CoinbaseValue-1, []byte{0x51})}
	if _, err := EncodeJob(&Job{Template: &bad, Payout: EmbeddedPayout()}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("coinbase outputs sum to %d, the coinbase value is %d", tmpl.CoinbaseValue-1, tmpl.CoinbaseValue)) {
		t.Errorf("EncodeJob of outputs short by 1: %v", err)
	}
	base := `{"v":1,"payout":{"kind":"embedded"},"template":{"bits":545259519,"coinbase_value":100},"coinbase_outputs":`
	for in, want := range map[string]string{
		`[{"value":60,"script":"UQ=="},{"value":41,"script":"UQ=="}]`: "coinbase outputs sum to 101, the coinbase value is 100",
		`[{"value":100,"script":""}]`:                                 "coinbase output 0: script of 0 bytes",
		`[{"value":0,"script":"UQ=="},{"value":100,"script":"UQ=="}]`: "coinbase output 0: value 0 out of 1..100",
		`[{"value":-5,"script":"UQ=="}]`:                              "coinbase output 0: value -5",
		`[]`:                                                          "coinbase outputs sum to 0",
	} {
		if _, err := DecodeJob([]byte(base + in + "}")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeJob(outputs %s) = %v, want an error saying %s", in, err, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for in, want := range map[string]string{
		`{`:                             "unexpected end",
		`{"v":2}`:                       "encoding version 2",
		`{"v":1,"payout":{"kind":"x"}}`: `payout rule kind "x"`,
		`{"v":1,"payout":{"kind":"node","network":"moon"}}`:                  `network "moon": unknown`,
		`{"v":1,"payout":{"kind":"embedded"},"template":{"prev_hash":"ab"}}`: `hash "ab": want 64 hex digits`,
	} {
		if _, err := DecodeJob([]byte(in)); err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("DecodeJob(%s) = %v, want an error saying %s", in, err, want)
		}
	}
}

func TestPayoutRules(t *testing.T) {
	const addr = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
	want, err := simchain.PayoutScript(addr + ".rig1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := EmbeddedPayout().Script(addr + ".rig1"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("embedded payout = %x, %v; want %x", got, err, want)
	}
	np, err := NodePayout("regtest", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := np.Script(addr + ".rig1"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("node payout = %x, %v; want %x", got, err, want)
	}
	if _, err := np.Script("alice"); err == nil {
		t.Fatal("node payout without fallback accepted a worker that is no address")
	}
	npf, err := NodePayout("regtest", addr)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := npf.Script("alice"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("node payout fallback = %x, %v; want %x", got, err, want)
	}
	if _, err := NodePayout("regtest", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"); err == nil {
		t.Fatal("NodePayout accepted a mainnet payout address on regtest")
	}
}

func TestCluster(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	nc := connect(t, c)
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 3, LeaderTTL: 2 * time.Second, SharesMaxBytes: 64 << 20}); err != nil {
		t.Fatalf("%v\n%s", err, c.Logs())
	}
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *clustertest.NATSCluster)
	}{
		{"TemplateReachesFrontEnds", testTemplateReachesFrontEnds},
		{"BlocksSubmittedOnce", testBlocksSubmittedOnce},
		{"PayoutRecordFollowsSubmit", testPayoutRecordFollowsSubmit},
		{"PayoutRecordOfItsOwnJob", testPayoutRecordOfItsOwnJob},
		{"EmbeddedChainEndToEnd", testEmbeddedChainEndToEnd},
		{"FoundBlocksSideBySide", testFoundBlocksSideBySide},
		{"LargeTemplateAndBlock", testLargeTemplateAndBlock},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.f(t, c) }) {
			return
		}
	}
}

func connect(t *testing.T, c *clustertest.NATSCluster) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, c.URLs(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runPublisher runs a publisher until the test ends.
func runPublisher(t *testing.T, cfg PublisherConfig) {
	t.Helper()
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("publisher: %v", err)
		}
	})
}

func newSource(t *testing.T, cfg SourceConfig) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	s, err := NewSource(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitUpdate(t *testing.T, s *Source, height int64) time.Time {
	t.Helper()
	return waitUpdateFor(t, s, height, 10*time.Second)
}

// waitUpdateFor is waitUpdate with a deadline of its own.
func waitUpdateFor(t *testing.T, s *Source, height int64, within time.Duration) time.Time {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case <-s.Updates():
			if s.Current().Height == height {
				return time.Now()
			}
		case <-deadline:
			t.Fatalf("no template at height %d within %v (at %d)", height, within, s.Current().Height)
		}
	}
}

func testTemplateReachesFrontEnds(t *testing.T, c *clustertest.NATSCluster) {
	subject := bus.SubjectJobs + ".t1"
	src := newFixedSource(richTemplate(100))
	payout := Payout{Kind: PayoutNode, Network: "regtest", Fallback: []byte{0x00, 0x14, 9, 9}}
	runPublisher(t, PublisherConfig{Source: src, Conn: connect(t, c), Payout: payout, Leader: "leader-a", Term: 7,
		JobSubject: subject, BlockSubject: bus.SubjectBlocks + ".t1", Consumer: "t1", Logger: quiet()})
	fronts := []*Source{
		newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: subject, Logger: quiet()}),
		newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: subject, Logger: quiet()}),
	}
	for i, f := range fronts {
		waitUpdate(t, f, 100)
		sameTemplate(t, "front-end "+string(rune('A'+i)), f.Current(), src.Current())
		j := f.Job()
		if j.Leader != "leader-a" || j.Term != 7 || !reflect.DeepEqual(j.Payout, payout) {
			t.Errorf("front-end %d: job leader %q term %d payout %+v", i, j.Leader, j.Term, j.Payout)
		}
		st := f.Status()
		if st.Kind != "cluster" || !st.Healthy || st.Stale || st.TipHeight != 99 || st.TipHash != src.Current().PrevHash.String() || st.Network != "regtest" {
			t.Errorf("front-end %d: status %+v", i, st)
		}
	}
	// New templates: both front-ends are told, and the latency from the
	// source's signal to each front-end's Updates is logged.
	var lat []time.Duration
	for h := int64(101); h <= 110; h++ {
		sent := time.Now()
		src.set(richTemplate(h))
		for i, f := range fronts {
			got := waitUpdate(t, f, h)
			lat = append(lat, got.Sub(sent))
			sameTemplate(t, "front-end "+string(rune('A'+i)), f.Current(), src.Current())
		}
	}
	slices.Sort(lat)
	t.Logf("template → front-end latency over %d deliveries: median %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])

	// A job from an older term (a deposed leader) is ignored.
	old, err := EncodeJob(&Job{Leader: "leader-old", Term: 6, Template: richTemplate(50), Payout: payout})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := bus.New(connect(t, c))
	if _, err := bus.Publish(t.Context(), js, subject, old, ""); err != nil {
		t.Fatal(err)
	}
	src.set(richTemplate(111)) // a marker after it, from the real leader
	for _, f := range fronts {
		waitUpdate(t, f, 111)
		if j := f.Job(); j.Term != 7 {
			t.Errorf("front-end took job of term %d", j.Term)
		}
	}
}

func testBlock(nonce uint32) *wire.MsgBlock {
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: ^uint32(0)}, SignatureScript: []byte{1, 2}})
	cb.AddTxOut(&wire.TxOut{Value: 50, PkScript: []byte{0x51}})
	blk := &wire.MsgBlock{Header: wire.BlockHeader{Version: 1, Bits: 0x207fffff, Nonce: nonce, Timestamp: time.Unix(1_700_000_000, 0)}}
	blk.AddTransaction(cb)
	return blk
}

func testBlocksSubmittedOnce(t *testing.T, c *clustertest.NATSCluster) {
	jobSubject, blockSubject := bus.SubjectJobs+".t2", bus.SubjectBlocks+".t2"
	src := newFixedSource(richTemplate(200))
	b1, b2, b3 := testBlock(1), testBlock(2), testBlock(3)
	src.fail[chainmath.Hash(b2.BlockHash())] = 1 // the first submission of b2 cannot reach the chain
	runPublisher(t, PublisherConfig{Source: src, Conn: connect(t, c), Payout: EmbeddedPayout(), Term: 1,
		JobSubject: jobSubject, BlockSubject: blockSubject, Consumer: "t2", RetryDelay: 50 * time.Millisecond, Logger: quiet()})
	fronts := []*Source{
		newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()}),
		newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()}),
	}
	// b1 twice through one front-end and once through the other; then b2
	// and b3. The stream stores b1 once (its Nats-Msg-Id), checked below
	// on the stream itself: the leader handles blocks side by side, so
	// the order of the submissions proves nothing.
	for _, f := range []*Source{fronts[0], fronts[0], fronts[1]} {
		if err := f.Submit(t.Context(), b1, "w1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []*wire.MsgBlock{b2, b3} {
		if err := fronts[1].Submit(t.Context(), b, "w2"); err != nil {
			t.Fatal(err)
		}
	}
	want := []chainmath.Hash{chainmath.Hash(b1.BlockHash()), chainmath.Hash(b2.BlockHash()), chainmath.Hash(b2.BlockHash()), chainmath.Hash(b3.BlockHash())}
	timeout := time.After(30 * time.Second) // generous: a loaded machine runs several NATS clusters at once
	for range 4 {
		select {
		case <-src.calls:
		case <-timeout:
			src.mu.Lock()
			t.Fatalf("submissions %v, want %v", src.got, want)
		}
	}
	src.mu.Lock()
	got := slices.Clone(src.got)
	src.mu.Unlock()
	// Handled side by side, b2 redelivered after its failure: any order.
	slices.SortFunc(got, func(a, b chainmath.Hash) int { return bytes.Compare(a[:], b[:]) })
	slices.SortFunc(want, func(a, b chainmath.Hash) int { return bytes.Compare(a[:], b[:]) })
	js, err := bus.New(connect(t, c))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), bus.StreamBlocks)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(blockSubject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[blockSubject]; n != 3 {
		t.Fatalf("%d messages on %s, want 3 (b1 stored once)", n, blockSubject)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("submissions\n got %v\nwant %v (b1 once, b2 twice: failed then redelivered, b3 once)", got, want)
	}

	// From a front-end's Submit (durable in BLOCKS) to the leader's
	// source: the latency a found block takes, for the log.
	var lat []time.Duration
	for i := range 10 {
		b := testBlock(uint32(100 + i))
		sent := time.Now()
		if err := fronts[i%2].Submit(t.Context(), b, "w3"); err != nil {
			t.Fatal(err)
		}
		durable := time.Since(sent)
		select {
		case h := <-src.calls:
			if h != chainmath.Hash(b.BlockHash()) {
				t.Fatalf("source got %v, want %v", h, b.BlockHash())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("block not submitted within 30s")
		}
		lat = append(lat, time.Since(sent))
		if i == 0 {
			t.Logf("first block: durable in BLOCKS after %v", durable)
		}
	}
	slices.Sort(lat)
	t.Logf("found block → leader's source over %d blocks: median %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])
}

// testPayoutRecordFollowsSubmit (issue 20, defect 8): while the payout
// ledger cannot be written (RecordPayout fails), found blocks still go to
// the source at once, each once; the record, not the submission, is
// retried, and once it succeeds the block's message is acknowledged.
func testPayoutRecordFollowsSubmit(t *testing.T, c *clustertest.NATSCluster) {
	jobSubject, blockSubject := bus.SubjectJobs+".t5", bus.SubjectBlocks+".t5"
	src := newFixedSource(richTemplate(300))
	var mu sync.Mutex
	down := true
	tries := map[chainmath.Hash]int{}
	recorded := make(chan chainmath.Hash, 10)
	record := func(_ context.Context, blk *wire.MsgBlock, _ string, _ *ledger.PayoutRecord) error {
		h := chainmath.Hash(blk.BlockHash())
		mu.Lock()
		defer mu.Unlock()
		tries[h]++
		if down {
			return errors.New("ledger down")
		}
		recorded <- h
		return nil
	}
	runPublisher(t, PublisherConfig{Source: src, Conn: connect(t, c), Payout: EmbeddedPayout(), Term: 1,
		JobSubject: jobSubject, BlockSubject: blockSubject, Consumer: "t5", RetryDelay: 50 * time.Millisecond, Logger: quiet(),
		RecordPayout: record})
	front := newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()})
	b1, b2 := testBlock(501), testBlock(502)
	want := []chainmath.Hash{chainmath.Hash(b1.BlockHash()), chainmath.Hash(b2.BlockHash())}
	for _, b := range []*wire.MsgBlock{b1, b2} {
		if err := front.Submit(t.Context(), b, "w5"); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.After(30 * time.Second)
	for range 2 {
		select {
		case <-src.calls:
		case <-timeout:
			src.mu.Lock()
			t.Fatalf("submissions with the ledger down: %v, want %v", src.got, want)
		}
	}
	// Each record tried and failed 3 times (redelivered every 50 ms).
	for {
		mu.Lock()
		n1, n2 := tries[want[0]], tries[want[1]]
		if n1 >= 3 && n2 >= 3 {
			down = false
		}
		mu.Unlock()
		if n1 >= 3 && n2 >= 3 {
			break
		}
		select {
		case <-timeout:
			t.Fatalf("record attempts %d and %d, want 3 of each while the ledger is down", n1, n2)
		case <-time.After(20 * time.Millisecond):
		}
	}
	got := map[chainmath.Hash]bool{}
	for range 2 {
		select {
		case h := <-recorded:
			got[h] = true
		case <-timeout:
			t.Fatalf("records once the ledger is back: %v, want %v", got, want)
		}
	}
	if !got[want[0]] || !got[want[1]] {
		t.Fatalf("records %v, want %v", got, want)
	}
	js, err := bus.New(connect(t, c))
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := func() (*jetstream.ConsumerInfo, error) {
			cons, err := js.Consumer(t.Context(), bus.StreamBlocks, "t5")
			if err != nil {
				return nil, err
			}
			return cons.Info(t.Context())
		}()
		if err == nil && info.NumAckPending == 0 && info.NumPending == 0 {
			break
		}
		select {
		case <-timeout:
			t.Fatalf("found-block messages not acknowledged after their records: %+v %v", info, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	src.mu.Lock()
	subs := slices.Clone(src.got)
	src.mu.Unlock()
	slices.SortFunc(subs, func(a, b chainmath.Hash) int { return bytes.Compare(a[:], b[:]) })
	slices.SortFunc(want, func(a, b chainmath.Hash) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(subs, want) {
		t.Fatalf("submissions %v, want %v: each block once, however often its record failed", subs, want)
	}
}

// testPayoutRecordOfItsOwnJob: jobs at heights 300 and 301 split the
// same window the same way (as after a block found while the ledger
// could not be written); a block on the first, recorded after the second
// was published, gets the first's record (height 300, cutoff 3000), not
// the second's.
func testPayoutRecordOfItsOwnJob(t *testing.T, c *clustertest.NATSCluster) {
	jobSubject, blockSubject := bus.SubjectJobs+".t6", bus.SubjectBlocks+".t6"
	script, err := simchain.PayoutScript("alice")
	if err != nil {
		t.Fatal(err)
	}
	t300, t301 := richTemplate(300), richTemplate(301)
	t301.CoinbaseValue = t300.CoinbaseValue
	outs := []*wire.TxOut{wire.NewTxOut(t300.CoinbaseValue, script)}
	src := newFixedSource(t300)
	got := make(chan *ledger.PayoutRecord, 4)
	runPublisher(t, PublisherConfig{Source: src, Conn: connect(t, c), Payout: EmbeddedPayout(), Term: 1,
		JobSubject: jobSubject, BlockSubject: blockSubject, Consumer: "t6", RetryDelay: 50 * time.Millisecond, Logger: quiet(),
		PPLNS: func(_ context.Context, tm *work.Template) ([]*wire.TxOut, *ledger.PayoutRecord, error) {
			return outs, &ledger.PayoutRecord{Height: tm.Height, Mode: coordinator.PayoutPPLNS, Cutoff: tm.Height * 10, Value: tm.CoinbaseValue}, nil
		},
		RecordPayout: func(_ context.Context, _ *wire.MsgBlock, _ string, rec *ledger.PayoutRecord) error {
			got <- rec
			return nil
		}})
	front := newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()})
	if front.Current().Height != 300 {
		waitUpdate(t, front, 300)
	}
	src.set(t301)
	waitUpdate(t, front, 301)
	blk := testBlock(601)
	copy(blk.Header.PrevBlock[:], t300.PrevHash[:])
	blk.Transactions[0].TxOut = outs
	if err := front.Submit(t.Context(), blk, "alice.w"); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-got:
		if rec == nil || rec.Height != 300 || rec.Cutoff != 3000 || rec.Hash != chainmath.Hash(blk.BlockHash()) {
			t.Fatalf("record of a block on the job at height 300: %+v; want height 300, cutoff 3000, hash %s", rec, blk.BlockHash())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no payout record within 30s")
	}
}

func testEmbeddedChainEndToEnd(t *testing.T, c *clustertest.NATSCluster) {
	jobSubject, blockSubject := bus.SubjectJobs+".t3", bus.SubjectBlocks+".t3"
	// The leader: the embedded chain on its own store.
	leaderStore, err := store.Open(filepath.Join(t.TempDir(), "leader.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leaderStore.Close() })
	chain, err := simchain.Open(t.Context(), simchain.Config{Store: leaderStore, BlockTime: time.Second, StartDifficulty: 1e-4, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, PublisherConfig{Source: chain, Conn: connect(t, c), Payout: EmbeddedPayout(), Term: 1,
		JobSubject: jobSubject, BlockSubject: blockSubject, Consumer: "t3", Logger: quiet()})

	// The front-end: a coordinator on the jobs Source with its own store.
	front := newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()})
	frontStore, err := store.Open(filepath.Join(t.TempDir(), "front.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { frontStore.Close() })
	coord, err := coordinator.New(coordinator.Config{Source: front, Store: frontStore, ShareDifficulty: 1e-5, SharesPerMinute: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := coord.Serve(ctx, ln); err != nil {
			t.Errorf("coordinator: %v", err)
		}
	}()
	const user = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080.rig"
	ag, err := agent.New(agent.Config{URLs: []string{ln.Addr().String()}, User: user, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	go func() { defer wg.Done(); ag.Run(ctx) }()

	const want = 5
	deadline := time.Now().Add(60 * time.Second)
	for chain.Status().TipHeight < want {
		if time.Now().After(deadline) {
			t.Fatalf("chain at height %d after 60s, want %d", chain.Status().TipHeight, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Every block the leader's chain took pays the miner, and the chain
	// re-validates from its store.
	script, _ := simchain.PayoutScript(user)
	blocks, err := leaderStore.Blocks(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < want+1 {
		t.Fatalf("%d blocks stored, want at least %d", len(blocks), want+1)
	}
	for _, b := range blocks[1:] {
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(b.Raw)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(blk.Transactions[0].TxOut[0].PkScript, script) {
			t.Errorf("block %d pays %x, want %x", b.Height, blk.Transactions[0].TxOut[0].PkScript, script)
		}
	}
	if err := simchain.ValidateChain(blocks, simchain.Config{Store: leaderStore, BlockTime: time.Second, StartDifficulty: 1e-4}); err != nil {
		t.Fatalf("stored chain does not re-validate: %v", err)
	}
	// The front-end's own ledger recorded the blocks it found.
	found, err := frontStore.FoundBlocks(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chain at height %d; front-end recorded %d found blocks", chain.Status().TipHeight, len(found))
	if len(found) < want {
		t.Errorf("front-end recorded %d found blocks, want at least %d", len(found), want)
	}
}

// A mainnet-sized template (3 MiB of transactions, three times the
// servers' 1 MiB max_payload) reaches a front-end whole through the
// object store, and a 2.5 MiB block found through the front-end reaches
// the leader's source; neither message on its stream carries the body.
func testLargeTemplateAndBlock(t *testing.T, c *clustertest.NATSCluster) {
	jobSubject, blockSubject := bus.SubjectJobs+".t4", bus.SubjectBlocks+".t4"
	nc := connect(t, c)
	big := richTemplate(300)
	for i := range 24 {
		raw := bytes.Repeat([]byte{byte(i), 0x5a, byte(i >> 8)}, 128<<10/3)
		big.Txs = append(big.Txs, work.Tx{TxID: sha256.Sum256(raw), WTxID: sha256.Sum256(append(raw, 1)), Raw: raw})
	}
	data, err := EncodeJob(&Job{Template: big, Payout: EmbeddedPayout()})
	if err != nil {
		t.Fatal(err)
	}
	if bus.Fits(nc, len(data)) {
		t.Fatalf("a job of %d bytes fits the servers' max_payload %d: the test would prove nothing", len(data), nc.MaxPayload())
	}
	t.Logf("job message %d bytes, max_payload %d", len(data), nc.MaxPayload())
	src := newFixedSource(big)
	runPublisher(t, PublisherConfig{Source: src, Conn: connect(t, c), Payout: EmbeddedPayout(), Term: 1,
		JobSubject: jobSubject, BlockSubject: blockSubject, Consumer: "t4", Logger: quiet()})
	front := newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()})
	waitUpdateFor(t, front, 300, 90*time.Second) // 4 MB through the object store: slow when the suite shares two cores
	sameTemplate(t, "front-end", front.Current(), big)

	// The next template, as large, replaces it.
	next := richTemplate(301)
	next.Txs = append(next.Txs, big.Txs...)
	src.set(next)
	waitUpdateFor(t, front, 301, 90*time.Second)
	sameTemplate(t, "front-end", front.Current(), next)

	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	last, err := js.Stream(t.Context(), bus.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := last.GetLastMsgForSubject(t.Context(), jobSubject)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Data) != 0 || len(raw.Header.Get(bus.HeaderObject)) != 64 {
		t.Errorf("job message on JOBS: %d bytes of body, %s %q; want none and an object name", len(raw.Data), bus.HeaderObject, raw.Header.Get(bus.HeaderObject))
	}

	blk := testBlock(9)
	for i := range 10 {
		tx := wire.NewMsgTx(2)
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: uint32(i)}, SignatureScript: []byte{byte(i)}})
		tx.AddTxOut(&wire.TxOut{Value: 1, PkScript: bytes.Repeat([]byte{0x6a, byte(i)}, 128<<10)})
		blk.AddTransaction(tx)
	}
	if size := blk.SerializeSize(); bus.Fits(nc, size) {
		t.Fatalf("a block of %d bytes fits max_payload %d", size, nc.MaxPayload())
	} else {
		t.Logf("found block %d bytes", size)
	}
	if err := front.Submit(t.Context(), blk, "w-big"); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-src.calls:
		if h != chainmath.Hash(blk.BlockHash()) {
			t.Fatalf("source got block %v, want %v", h, blk.BlockHash())
		}
	case <-time.After(90 * time.Second): // generous: the whole suite may share two cores
		t.Fatal("the large block did not reach the leader's source within 90s")
	}
	// Submitted again (a resent share): stored once, not submitted twice.
	if err := front.Submit(t.Context(), blk, "w-big"); err != nil {
		t.Fatal(err)
	}
	marker := testBlock(10)
	if err := front.Submit(t.Context(), marker, "w"); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-src.calls:
		if h != chainmath.Hash(marker.BlockHash()) {
			t.Fatalf("after the resent large block the source got %v, want the marker %v", h, marker.BlockHash())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the marker block did not reach the leader's source within 30s")
	}
}

// gatedSource holds every Submit until its gate opens, telling started of
// each.
type gatedSource struct {
	*fixedSource
	started chan chainmath.Hash
	gate    chan struct{}
}

func (g *gatedSource) Submit(ctx context.Context, blk *wire.MsgBlock, finder string) error {
	g.started <- chainmath.Hash(blk.BlockHash())
	<-g.gate
	return g.fixedSource.Submit(ctx, blk, finder)
}

// testFoundBlocksSideBySide: the active coordinator handles found blocks
// side by side. One at a time, a flood of stale blocks (every share a
// block on an easy chain, a backlog left while the consumer's first pull
// went unanswered) was worked through slower than the front-end found
// new ones, and the block extending the chain waited behind them: the
// embedded chain end-to-end test stalled at height 2-4 (chain at height
// 2 after 60 s, 1,545 stale blocks rejected meanwhile). Here the first
// submission does not return until the second has started.
func testFoundBlocksSideBySide(t *testing.T, c *clustertest.NATSCluster) {
	jobSubject, blockSubject := bus.SubjectJobs+".t7", bus.SubjectBlocks+".t7"
	src := &gatedSource{fixedSource: newFixedSource(richTemplate(300)), started: make(chan chainmath.Hash, 8), gate: make(chan struct{})}
	var once sync.Once
	open := func() { once.Do(func() { close(src.gate) }) }
	t.Cleanup(open) // a safety net: every path below opens it before returning
	runPublisher(t, PublisherConfig{Source: src, Conn: connect(t, c), Payout: EmbeddedPayout(), Term: 1,
		JobSubject: jobSubject, BlockSubject: blockSubject, Consumer: "t7", Logger: quiet()})
	front := newSource(t, SourceConfig{Conn: connect(t, c), JobSubject: jobSubject, BlockSubject: blockSubject, Logger: quiet()})
	b1, b2 := testBlock(701), testBlock(702)
	for _, b := range []*wire.MsgBlock{b1, b2} {
		if err := front.Submit(t.Context(), b, "w"); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[chainmath.Hash]bool{}
	timeout := time.After(30 * time.Second) // a failure bound only: passing, both start at once
	for len(seen) < 2 {
		select {
		case h := <-src.started:
			seen[h] = true
		case <-timeout:
			open()
			t.Fatalf("after 30 s %d of 2 submissions started while the first is held: found blocks are handled one at a time", len(seen))
		}
	}
	open()
	for range 2 {
		<-src.calls
	}
}
