package members_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/members"
	"github.com/powcoord/powcoord/internal/clustertest"
)

func connect(t *testing.T, ctx context.Context, c *clustertest.NATSCluster, name string) (func(), jetstream.KeyValue) {
	t.Helper()
	nc, err := bus.Connect(ctx, c.URLs(), name)
	if err != nil {
		t.Fatal(err)
	}
	js, err := bus.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	kv, err := members.Ensure(ctx, js, 3)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return nc.Close, kv
}

// waitList polls List until ok accepts it, failing after limit.
func waitList(t *testing.T, ctx context.Context, kv jetstream.KeyValue, limit time.Duration, what string, ok func([]members.Member) bool) []members.Member {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ms, err := members.List(ctx, kv)
		if err == nil && ok(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last list %+v (%v)", what, limit, ms, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ids(ms []members.Member) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Role+"/"+m.ID)
	}
	return out
}

// TestHeartbeat runs two heartbeaters, each on its own connection, on a
// 3-server NATS cluster: both are listed with exactly their fields; the
// one whose context ends leaves the list at once (its key deleted); the
// one whose connection dies leaves within the bucket's TTL.
func TestHeartbeat(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	// A failure bound only (a pass takes about 4 s): in a full -race run
	// beside other NATS clusters on 2 cores, one took 61 s.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	closeR, reader := connect(t, ctx, c, "members-reader")
	defer closeR()
	closeA, kvA := connect(t, ctx, c, "members-a")
	defer closeA()
	closeB, kvB := connect(t, ctx, c, "members-b")
	defer closeB()

	prefix, lag := uint32(7), uint64(42)
	actx, stopA := context.WithCancel(ctx)
	bctx, stopB := context.WithCancel(ctx)
	var wgA, wgB sync.WaitGroup
	defer wgB.Wait()
	defer stopB()
	before := time.Now().UTC()
	wgA.Go(func() {
		members.Heartbeat(actx, kvA, "fe-a", members.RoleFrontend, nil, func() members.Member {
			// ID, Role and Time are Heartbeat's to set.
			return members.Member{ID: "wrong", Role: "wrong", Stratum: "127.0.0.1:3333", HTTP: "127.0.0.1:9101",
				Sessions: 3, SharesPerSecond: 1.5, Accepted: 99, Prefix: &prefix, PrefixBits: 8}
		})
	})
	wgB.Go(func() {
		members.Heartbeat(bctx, kvB, "ledger-b", members.RoleLedger, nil, func() members.Member {
			return members.Member{HTTP: "127.0.0.1:9102", LagMessages: &lag}
		})
	})

	ms := waitList(t, ctx, reader, 10*time.Second, "both members listed", func(ms []members.Member) bool { return len(ms) == 2 })
	after := time.Now().UTC()
	// Sorted by role: frontend before ledger.
	a, b := ms[0], ms[1]
	if a.ID != "fe-a" || a.Role != members.RoleFrontend || a.Stratum != "127.0.0.1:3333" || a.HTTP != "127.0.0.1:9101" ||
		a.Sessions != 3 || a.SharesPerSecond != 1.5 || a.Accepted != 99 || a.Prefix == nil || *a.Prefix != 7 || a.PrefixBits != 8 ||
		a.LagMessages != nil || a.State != "" {
		t.Errorf("front-end heartbeat: %+v", a)
	}
	if b.ID != "ledger-b" || b.Role != members.RoleLedger || b.HTTP != "127.0.0.1:9102" || b.LagMessages == nil || *b.LagMessages != 42 ||
		b.Stratum != "" || b.Sessions != 0 || b.Accepted != 0 || b.Prefix != nil || b.PrefixBits != 0 || b.State != "" {
		t.Errorf("ledger heartbeat: %+v", b)
	}
	for _, m := range ms {
		if m.Time.Before(before.Add(-time.Second)) || m.Time.After(after.Add(time.Second)) || m.Time.Location() != time.UTC {
			t.Errorf("%s heartbeat time %v, want UTC between %v and %v", m.ID, m.Time, before, after)
		}
	}

	// A stopped heartbeater deletes its key: gone from the list at once
	// (Heartbeat returns only after the delete).
	stopA()
	wgA.Wait()
	if ms, err := members.List(ctx, reader); err != nil || len(ms) != 1 || ms[0].ID != "ledger-b" {
		t.Fatalf("after fe-a stopped: %v (%v), want only ledger/ledger-b", ids(ms), err)
	}
	if _, err := reader.Get(ctx, "fe-a"); !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
		t.Errorf("key fe-a after its heartbeater stopped: %v, want deleted", err)
	}

	// A heartbeater whose connection dies writes no more; its key expires
	// with the bucket's TTL (3 s after its last write, at most a second
	// before the connection closed). Allow generous slack for a loaded
	// machine, but no more than a few TTLs.
	closeB()
	died := time.Now()
	waitList(t, ctx, reader, 3*members.TTL, "ledger-b gone after its connection closed", func(ms []members.Member) bool { return len(ms) == 0 })
	t.Logf("ledger-b left the list %v after its connection closed (TTL %v)", time.Since(died).Round(10*time.Millisecond), members.TTL)
	stopB()
}
