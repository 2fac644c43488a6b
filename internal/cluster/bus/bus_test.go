package bus

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// testTTL is the leader TTL of the tests: short, since they wait for real
// expiries on a real cluster.
const testTTL = 2 * time.Second

// TestCluster runs the tests that need a NATS cluster on one 3-server
// cluster (starting one takes seconds); each uses its own keys and
// subjects, and the one that kills a server runs last.
func TestCluster(t *testing.T) {
	start := time.Now()
	c := clustertest.StartNATSCluster(t, 3)
	t.Logf("3-server cluster healthy after %v", time.Since(start))
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *clustertest.NATSCluster)
	}{
		{"EnsureStreamsIdempotent", testEnsureStreamsIdempotent},
		{"ElectRejectsBadArguments", testElectRejectsBadArguments},
		{"ElectOneLeaderAndTakeover", testElectOneLeaderAndTakeover},
		{"DeposedLeaderIsFenced", testDeposedLeaderIsFenced},
		{"LargeReadAfterWrite", testLargeReadAfterWrite},
		{"PublishSurvivesServerKill", testPublishSurvivesServerKill},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.f(t, c) }) {
			return
		}
	}
}

func connect(t *testing.T, urls []string, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := Connect(ctx, urls, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func ensure(t *testing.T, c *clustertest.NATSCluster, js jetstream.JetStream) *Streams {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := EnsureStreams(ctx, js, StreamsConfig{Replicas: 3, LeaderTTL: testTTL, SharesMaxBytes: 64 << 20})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Logs())
	}
	return s
}

func hashOf(i int) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func TestParseURLs(t *testing.T) {
	got, err := ParseURLs(" nats://h1:4222, tls://h2:4223,,")
	if err != nil || len(got) != 2 || got[0] != "nats://h1:4222" || got[1] != "tls://h2:4223" {
		t.Fatalf("ParseURLs = %q, %v", got, err)
	}
	for in, want := range map[string]string{
		"":                  `no NATS server URL in ""`,
		"http://h:1":        `scheme "http"`,
		"nats://h":          `"nats://h": want host:port`,
		"nats://h:1,nats:/": `"nats:/": want host:port`,
	} {
		if _, err := ParseURLs(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURLs(%q) error = %v, want it to say %s", in, err, want)
		}
	}
}

func TestConnectNoneAnswers(t *testing.T) {
	// Two loopback ports with nothing listening.
	urls := []string{"nats://127.0.0.1:1", "nats://127.0.0.1:2"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Connect(ctx, urls, "test")
	if err == nil {
		t.Fatal("Connect to dead ports succeeded")
	}
	if !strings.Contains(err.Error(), "nats://127.0.0.1:1, nats://127.0.0.1:2: none answered") {
		t.Fatalf("error %q does not name both URLs", err)
	}
}

func testEnsureStreamsIdempotent(t *testing.T, c *clustertest.NATSCluster) {
	_, js := connect(t, c.URLs(), "ensure")
	s := ensure(t, c, js)
	again := ensure(t, c, js) // a second process starting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, st := range []jetstream.Stream{s.Jobs, s.Shares, s.Blocks, s.Chain, again.Chain} {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream %s: %d replicas configured, cluster info %+v; want 3", info.Config.Name, info.Config.Replicas, info.Cluster)
		}
	}
	if info, _ := s.Jobs.Info(ctx); info.Config.MaxMsgsPerSubject != 1 {
		t.Fatalf("JOBS keeps %d messages per subject, want 1", info.Config.MaxMsgsPerSubject)
	}
	if info, _ := s.Shares.Info(ctx); info.Config.Retention != jetstream.WorkQueuePolicy || info.Config.Duplicates != 2*time.Minute {
		t.Fatalf("SHARES retention %v duplicates %v", info.Config.Retention, info.Config.Duplicates)
	}
	st, err := s.Leader.Status(ctx)
	if err != nil || st.TTL() != testTTL {
		t.Fatalf("leader bucket TTL %v, %v; want %v", st.TTL(), err, testTTL)
	}
	// The same stream with an unchangeable setting changed is refused.
	if _, err := EnsureStreams(ctx, js, StreamsConfig{Replicas: 7}); err == nil || !strings.Contains(err.Error(), "7 replicas: want 1 to 5") {
		t.Fatalf("7 replicas: err = %v", err)
	}
}

// streamLeader returns the index of the server leading stream.
func streamLeader(t *testing.T, c *clustertest.NATSCluster, s jetstream.Stream) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, srv := range c.Servers {
		if srv.Name == info.Cluster.Leader {
			return i
		}
	}
	t.Fatalf("stream leader %q is none of the servers", info.Cluster.Leader)
	return -1
}

func testPublishSurvivesServerKill(t *testing.T, c *clustertest.NATSCluster) {
	_, js := connect(t, c.URLs(), "publisher")
	s := ensure(t, c, js)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 300
	publish := func(from, to int) {
		t.Helper()
		var msgs []*nats.Msg
		for i := from; i < to; i++ {
			msgs = append(msgs, NewMsg(SubjectShares+".fe1", fmt.Appendf(nil, "share %d", i), ShareMsgID(hashOf(i))))
		}
		acks, err := PublishAll(ctx, js, msgs)
		if err != nil {
			t.Fatalf("PublishAll %d..%d: %v", from, to, err)
		}
		for i, a := range acks {
			if a == nil || a.Stream != StreamShares {
				t.Fatalf("share %d: ack %+v", from+i, a)
			}
		}
	}
	publish(0, 100)
	// Kill the stream's leader: the cluster elects another, and every
	// publish still gets its acknowledgement.
	victim := streamLeader(t, c, s.Shares)
	c.Servers[victim].Kill()
	killed := time.Now()
	for i := 100; i < 200; i++ {
		ack, err := Publish(ctx, js, SubjectShares+".fe1", fmt.Appendf(nil, "share %d", i), ShareMsgID(hashOf(i)))
		if err != nil {
			t.Fatalf("Publish %d with server %s killed: %v", i, c.Servers[victim].Name, err)
		}
		if ack.Duplicate {
			t.Fatalf("Publish %d: first publish acknowledged as a duplicate", i)
		}
	}
	t.Logf("100 publishes with the stream leader %s killed took %v", c.Servers[victim].Name, time.Since(killed))
	publish(200, n)
	c.Servers[victim].Start()

	// Redelivering everything stores nothing new.
	for i := 0; i < n; i += 37 {
		ack, err := Publish(ctx, js, SubjectShares+".fe1", fmt.Appendf(nil, "share %d", i), ShareMsgID(hashOf(i)))
		if err != nil || !ack.Duplicate {
			t.Fatalf("republish %d: ack %+v, err %v; want a duplicate", i, ack, err)
		}
	}
	info, err := s.Shares.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("SHARES holds %d messages, want %d", info.State.Msgs, n)
	}
	// Every message is readable, once, in order, through the restarted
	// server too.
	_, js2 := connect(t, []string{c.Servers[victim].URL()}, "reader")
	st, err := js2.Stream(ctx, StreamShares)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= n; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if want := fmt.Sprintf("share %d", seq-1); string(m.Data) != want || m.Header.Get(jetstream.MsgIDHeader) != ShareMsgID(hashOf(int(seq-1))) {
			t.Fatalf("message %d = %q (id %s), want %q", seq, m.Data, m.Header.Get(jetstream.MsgIDHeader), want)
		}
	}
}

type elected struct {
	l   *Leader
	err error
	at  time.Time
}

func campaign(ctx context.Context, kv jetstream.KeyValue, key, id string) <-chan elected {
	ch := make(chan elected, 1)
	go func() {
		l, err := Elect(ctx, kv, key, id, testTTL)
		ch <- elected{l, err, time.Now()}
	}()
	return ch
}

func testElectOneLeaderAndTakeover(t *testing.T, c *clustertest.NATSCluster) {
	ncA, jsA := connect(t, c.URLs(), "candidate-a")
	ncB, jsB := connect(t, c.URLs(), "candidate-b")
	ensure(t, c, jsA)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kvA, err := jsA.KeyValue(ctx, BucketLeader)
	if err != nil {
		t.Fatal(err)
	}
	kvB, err := jsB.KeyValue(ctx, BucketLeader)
	if err != nil {
		t.Fatal(err)
	}

	chA := campaign(ctx, kvA, "coordinator", "a")
	chB := campaign(ctx, kvB, "coordinator", "b")
	var first elected
	var rest <-chan elected
	select {
	case first = <-chA:
		rest = chB
	case first = <-chB:
		rest = chA
	case <-time.After(10 * time.Second):
		t.Fatal("no candidate elected within 10 s")
	}
	if first.err != nil {
		t.Fatal(first.err)
	}
	winner := first.l
	id, rev, err := Holder(ctx, kvA, "coordinator")
	if err != nil || id != winner.ID() || rev < winner.Term() {
		t.Fatalf("Holder = %q rev %d, %v; want %q at revision >= %d", id, rev, err, winner.ID(), winner.Term())
	}
	// For longer than the TTL the winner keeps renewing and the other
	// candidate stays a standby.
	select {
	case e := <-rest:
		t.Fatalf("second leader %+v while %s leads", e, winner.ID())
	case <-winner.Lost():
		t.Fatalf("winner lost leadership: %v", winner.Err())
	case <-time.After(testTTL + testTTL/2):
	}
	if _, rev2, _ := Holder(ctx, kvA, "coordinator"); rev2 <= rev {
		t.Fatalf("key revision %d after 1.5 TTL, was %d: the leader did not renew", rev2, rev)
	}

	// Kill the winner's connection: it cannot renew, and the standby takes
	// over within the TTL.
	winnerConn := ncA
	if winner.ID() == "b" {
		winnerConn = ncB
	}
	died := time.Now()
	winnerConn.Close()
	var second elected
	select {
	case second = <-rest:
	case <-time.After(testTTL + 3*time.Second):
		t.Fatalf("standby not elected within %v of the leader's death", testTTL+3*time.Second)
	}
	if second.err != nil {
		t.Fatal(second.err)
	}
	took := second.at.Sub(died)
	t.Logf("standby %s took over %v after the leader's connection closed (TTL %v)", second.l.ID(), took, testTTL)
	if took > testTTL+time.Second {
		t.Fatalf("takeover took %v, want within the TTL %v (+1 s for the watch and the -race build)", took, testTTL)
	}
	if second.l.Term() <= winner.Term() {
		t.Fatalf("new term %d not above the old %d", second.l.Term(), winner.Term())
	}
	select {
	case <-winner.Lost():
		if !errors.Is(winner.Err(), ErrNotLeader) {
			t.Fatalf("old leader's Err = %v, want ErrNotLeader", winner.Err())
		}
	case <-time.After(testTTL):
		t.Fatal("old leader did not notice it lost leadership")
	}
	if err := second.l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	// A KV read may be answered by a replica that has not applied the
	// delete yet (direct get): allow it a moment, bounded.
	var id2 string
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if id2, _, err = Holder(ctx, leaderKV(t, second.l, kvA, kvB), "coordinator"); err != nil {
			t.Fatal(err)
		}
		if id2 == "" || time.Now().After(end) {
			break
		}
	}
	if id2 != "" {
		t.Fatalf("3 s after Resign the key is still held by %q", id2)
	}
}

// leaderKV returns the bucket handle of the candidate whose
// connection is still open: the one that leads now.
func leaderKV(t *testing.T, l *Leader, kvA, kvB jetstream.KeyValue) jetstream.KeyValue {
	t.Helper()
	if l.ID() == "a" {
		return kvA
	}
	return kvB
}

func testDeposedLeaderIsFenced(t *testing.T, c *clustertest.NATSCluster) {
	_, jsA := connect(t, c.URLs(), "old-leader")
	_, jsB := connect(t, c.URLs(), "new-leader")
	_, jsAdmin := connect(t, c.URLs(), "admin")
	s := ensure(t, c, jsA)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kvA, _ := jsA.KeyValue(ctx, BucketLeader)
	kvB, _ := jsB.KeyValue(ctx, BucketLeader)

	a, err := Elect(ctx, kvA, "chain", "a", testTTL)
	if err != nil {
		t.Fatal(err)
	}
	subject := SubjectChain + ".sim"
	appA, err := Claim(ctx, jsA, StreamChain, subject, a.Term(), a.ID())
	if err != nil {
		t.Fatal(err)
	}
	for h := 1; h <= 2; h++ {
		if _, err := appA.Append(ctx, fmt.Appendf(nil, "block %d by a", h), nil, fmt.Sprintf("block-%d", h)); err != nil {
			t.Fatalf("leader a appending block %d: %v", h, err)
		}
	}
	chB := campaign(ctx, kvB, "chain", "b")

	// a's key vanishes as if it had expired while a was paused (the
	// standby is watching and takes over at once).
	kvAdmin, _ := jsAdmin.KeyValue(ctx, BucketLeader)
	if err := kvAdmin.Delete(ctx, "chain"); err != nil {
		t.Fatal(err)
	}
	var eb elected
	select {
	case eb = <-chB:
	case <-time.After(testTTL):
		t.Fatal("standby not elected within the TTL of the key's deletion")
	}
	if eb.err != nil {
		t.Fatal(eb.err)
	}
	b := eb.l
	appB, err := Claim(ctx, jsB, StreamChain, subject, b.Term(), b.ID())
	if err != nil {
		t.Fatal(err)
	}

	// The deposed leader, unaware, appends block 3: refused.
	_, err = appA.Append(ctx, []byte("block 3 by a"), nil, "block-3a")
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("deposed leader's append: err = %v, want ErrFenced", err)
	}
	if want := fmt.Sprintf("expecting last sequence %d", appA.Last()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "CHAIN") {
		t.Fatalf("fenced error %q does not name the stream and %q", err, want)
	}
	t.Logf("deposed append: %v", err)
	// Its renewal is refused too, and it learns it lost.
	err = a.Renew(ctx)
	if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "taken over") {
		t.Fatalf("deposed leader's renew: err = %v, want ErrNotLeader (taken over)", err)
	}
	t.Logf("deposed renew: %v", err)
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost not closed after the refused renewal")
	}
	if _, err := appB.Append(ctx, []byte("block 3 by b"), nil, "block-3b"); err != nil {
		t.Fatalf("new leader's append: %v", err)
	}

	// The stream is one linear history: a's two blocks, b's marker, b's block.
	info, err := s.Chain.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.Chain.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(HeaderKind) == "term" {
			got = append(got, "term "+m.Header.Get(HeaderTerm)+" "+m.Header.Get(HeaderLeader))
		} else {
			got = append(got, string(m.Data))
		}
	}
	want := []string{
		fmt.Sprintf("term %d a", a.Term()), "block 1 by a", "block 2 by a",
		fmt.Sprintf("term %d b", b.Term()), "block 3 by b",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("CHAIN holds\n %q\nwant\n %q", got, want)
	}
	// Appending the same block again (a caller retrying what was stored)
	// is refused and stores no second copy.
	if _, err := appB.Append(ctx, []byte("block 3 by b"), nil, "block-3b"); !errors.Is(err, ErrFenced) {
		t.Fatalf("re-append of a stored block: err = %v", err)
	}
	if info, err := s.Chain.Info(ctx); err != nil || info.State.Msgs != uint64(len(want)) {
		t.Fatalf("CHAIN holds %d messages after the re-append (%v), want %d", info.State.Msgs, err, len(want))
	}
	b.Resign(ctx)
}

func testElectRejectsBadArguments(t *testing.T, c *clustertest.NATSCluster) {
	_, js := connect(t, c.URLs(), "bad")
	s := ensure(t, c, js)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		id   string
		ttl  time.Duration
		want string
	}{
		{"", testTTL, "empty candidate id"},
		{"x", 0, "ttl 0s: want > 0"},
		{"x", 3 * testTTL, "ttl 6s is longer than bucket powcoord-leader's TTL 2s"},
	} {
		if _, err := Elect(ctx, s.Leader, "k", tc.id, tc.ttl); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Elect(id %q, ttl %v): err = %v, want %q", tc.id, tc.ttl, err, tc.want)
		}
	}
	if _, err := Elect(ctx, s.Leader, "bad key*", "x", testTTL); err == nil || !strings.Contains(err.Error(), "bad key*") {
		t.Errorf("bad key: err = %v", err)
	}
}
