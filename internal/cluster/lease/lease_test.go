package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// testTTL is short: the tests wait for real expiries on a real cluster.
const testTTL = time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestCluster runs the tests that need a NATS cluster on one 3-server
// cluster, in order (each leaves the bucket empty).
func TestCluster(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *clustertest.NATSCluster)
	}{
		{"ConcurrentLeasersGetDistinctPrefixes", testConcurrentDistinct},
		{"ClosedConnectionFreesPrefix", testClosedConnectionFreesPrefix},
		{"DeposedHolderRenewFails", testDeposedRenewFails},
		{"TTLIsTheClusters", testTTLIsTheClusters},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.f(t, c) }) {
			return
		}
	}
}

func connect(t *testing.T, c *clustertest.NATSCluster, name string) (*nats.Conn, jetstream.KeyValue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, c.URLs(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, _, err := Ensure(ctx, js, testTTL, 3)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Logs())
	}
	return nc, kv
}

func acquire(t *testing.T, kv jetstream.KeyValue, id string) *Lease {
	t.Helper()
	// The lease lives as long as the context given to Acquire.
	l, err := Acquire(t.Context(), kv, id, testTTL, quiet)
	if err != nil {
		t.Fatalf("acquire as %s: %v", id, err)
	}
	return l
}

func testConcurrentDistinct(t *testing.T, c *clustertest.NATSCluster) {
	const n = 20
	leases := make([]*Lease, n)
	kvs := make([]jetstream.KeyValue, n)
	for i := range n {
		_, kvs[i] = connect(t, c, fmt.Sprintf("leaser-%d", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			leases[i], errs[i] = Acquire(t.Context(), kvs[i], fmt.Sprintf("fe-%d", i), testTTL, quiet)
		})
	}
	wg.Wait()
	var got []int
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("leaser %d: %v", i, errs[i])
		}
		got = append(got, int(leases[i].Prefix()))
	}
	slices.Sort(got)
	for i, p := range got {
		if p != i {
			t.Fatalf("prefixes %v: want 0..%d, each once (the lowest free ones)", got, n-1)
		}
	}
	// Renewals keep them all through 2 TTLs.
	time.Sleep(2 * testTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := Holders(ctx, kvs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != n {
		t.Fatalf("%d holders after 2 TTLs, want %d: %v", len(h), n, h)
	}
	for i, l := range leases {
		if l.Err() != nil {
			t.Errorf("lease %d (prefix %d) lost: %v", i, l.Prefix(), l.Err())
		}
		if h[l.Prefix()] != fmt.Sprintf("fe-%d", i) {
			t.Errorf("prefix %d held by %q, want fe-%d", l.Prefix(), h[l.Prefix()], i)
		}
	}
	for _, l := range leases {
		if err := l.Release(ctx); err != nil {
			t.Error(err)
		}
	}
	if h, err := Holders(ctx, kvs[0]); err == nil && len(h) != 0 {
		t.Errorf("holders after every release: %v, want none", h)
	}
}

func testClosedConnectionFreesPrefix(t *testing.T, c *clustertest.NATSCluster) {
	ncA, kvA := connect(t, c, "holder-a")
	_, kvB := connect(t, c, "holder-b")
	a := acquire(t, kvA, "a")
	if a.Prefix() != 0 {
		t.Fatalf("first lease on an empty bucket: prefix %d, want 0", a.Prefix())
	}
	closed := time.Now()
	ncA.Close()
	select {
	case <-a.Lost():
	case <-time.After(2 * testTTL):
		t.Fatal("the lease of a closed connection was not reported lost within 2 TTLs")
	}
	lostAfter := time.Since(closed)
	if !errors.Is(a.Err(), bus.ErrNotLeader) {
		t.Fatalf("lost lease's error %v, want bus.ErrNotLeader", a.Err())
	}
	// The key was not deleted (the connection is gone): it expires.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		id, _, err := bus.Holder(ctx, kvB, Key(0))
		if err != nil {
			t.Fatal(err)
		}
		if id == "" {
			break
		}
		if id != "a" {
			t.Fatalf("prefix 0 held by %q, want a until it expires", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	freeAfter := time.Since(closed)
	if freeAfter > testTTL+time.Second {
		t.Errorf("prefix 0 free %v after its holder's connection closed, want within the TTL %v (plus 1 s for the servers' expiry timers)", freeAfter, testTTL)
	}
	b := acquire(t, kvB, "b")
	if b.Prefix() != 0 {
		t.Fatalf("lease after the expiry: prefix %d, want 0", b.Prefix())
	}
	t.Logf("closed connection: lease lost after %v, prefix free after %v (TTL %v), then leased again", lostAfter, freeAfter, testTTL)
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func testDeposedRenewFails(t *testing.T, c *clustertest.NATSCluster) {
	_, kvA := connect(t, c, "deposed-a")
	_, kvB := connect(t, c, "deposed-b")
	a := acquire(t, kvA, "a")
	if a.Prefix() != 0 {
		t.Fatalf("prefix %d, want 0", a.Prefix())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// As if a's key expired while it was cut off: the key goes, b claims it.
	if err := kvB.Delete(ctx, Key(0)); err != nil {
		t.Fatal(err)
	}
	// Wait until the key list no longer shows it: on three servers a
	// listing right after the delete may still be served from before it,
	// and b would lease prefix 1 instead.
	for {
		keys, err := kvB.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for k := range keys.Keys() {
			listed = listed || k == Key(0)
		}
		if !listed {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("key %s still listed after its delete: %v", Key(0), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	b := acquire(t, kvB, "b")
	if b.Prefix() != 0 {
		t.Fatalf("b's prefix %d, want 0 (freed)", b.Prefix())
	}
	err := a.Renew(ctx)
	if !errors.Is(err, bus.ErrNotLeader) {
		t.Fatalf("deposed holder's renew: %v, want an error wrapping bus.ErrNotLeader", err)
	}
	select {
	case <-a.Lost():
	default:
		t.Fatal("deposed holder's Lost is not closed after its renew failed")
	}
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("new holder's renew: %v", err)
	}
	if id, _, err := bus.Holder(ctx, kvB, Key(0)); err != nil || id != "b" {
		t.Fatalf("prefix 0 held by %q (%v), want b", id, err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := bus.Holder(ctx, kvB, Key(0)); id != "b" {
		t.Fatalf("the deposed holder's release took prefix 0 from b: held by %q", id)
	}
	b.Release(ctx)
}

// testTTLIsTheClusters: the bucket made with testTTL keeps it; Ensure
// with another TTL is refused naming both, and with none returns the
// bucket's.
func testTTLIsTheClusters(t *testing.T, c *clustertest.NATSCluster) {
	_, kv := connect(t, c, "ttl") // made with testTTL
	nc, err := bus.Connect(t.Context(), c.URLs(), "ttl-2")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = Ensure(ctx, js, 3*testTTL, 3)
	if want := "lease: TTL 3s disagrees with the cluster's lease TTL 1s (KV bucket powcoord-prefixes)"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Ensure with TTL 3s on a 1s bucket: %v; want an error starting %q", err, want)
	}
	_, ttl, err := Ensure(ctx, js, 0, 3)
	if err != nil || ttl != testTTL {
		t.Fatalf("Ensure with no TTL: %v, %v; want the bucket's %v", ttl, err, testTTL)
	}
	if st, err := kv.Status(ctx); err != nil || st.TTL() != testTTL {
		t.Fatalf("bucket TTL after the refused Ensure: %v (%v), want %v", st, err, testTTL)
	}
}

func TestEnsureBadArguments(t *testing.T) {
	if _, _, err := Ensure(context.Background(), nil, 10*time.Millisecond, 3); err == nil || err.Error() != "lease: TTL 10ms: want at least 100ms" {
		t.Errorf("Ensure with TTL 10ms: %v", err)
	}
	if _, _, err := Ensure(context.Background(), nil, time.Second, 0); err == nil || err.Error() != "lease: 0 replicas: want 1 to 5" {
		t.Errorf("Ensure with 0 replicas: %v", err)
	}
	if Key(7) != "prefix-007" || Count != 256 {
		t.Errorf("Key(7) %q, Count %d", Key(7), Count)
	}
}
