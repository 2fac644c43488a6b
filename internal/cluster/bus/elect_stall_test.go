//go:build unix

package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// A leader whose server stops answering (paused, not gone: the
// connection stays up and a renewal waits for its reply) still knows by
// 9/10 of the TTL after its last renewal that it no longer leads.
func TestLeaderLostWhenServerStalls(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := Connect(ctx, c.URLs(), "stall-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "stall", TTL: ttl, LimitMarkerTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Elect(ctx, kv, "k", "me", ttl)
	if err != nil {
		t.Fatal(err)
	}
	c.Servers[0].Pause()
	defer c.Servers[0].Resume()
	paused := time.Now()
	before := l.ValidUntil()
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatalf("still leader 10 s after the server stalled (valid until %v)", before)
	}
	lostAt := time.Now()
	if !errors.Is(l.Err(), ErrNotLeader) {
		t.Fatalf("err %v, want ErrNotLeader", l.Err())
	}
	if late := lostAt.Sub(l.ValidUntil()); late > 500*time.Millisecond {
		t.Fatalf("lost %v after the lease ran out (%v)", late, l.Err())
	}
	t.Logf("server paused; leadership lost %v later, %v after the lease ran out: %v", lostAt.Sub(paused).Round(time.Millisecond), lostAt.Sub(l.ValidUntil()).Round(time.Millisecond), l.Err())
}
