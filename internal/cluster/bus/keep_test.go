package bus

import (
	"context"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/clustertest"
)

// TestEnsureStreamsKeepExisting: a front-end or ledger (KeepExisting)
// started with other settings leaves the coordinator's leader TTL and
// replicas alone.
func TestEnsureStreamsKeepExisting(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := Connect(ctx, c.URLs(), "keep-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureStreams(ctx, js, StreamsConfig{Replicas: 1, LeaderTTL: 7 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s, err := EnsureStreams(ctx, js, StreamsConfig{Replicas: 1, KeepExisting: true}) // its default TTL is 3 s
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Leader.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 7*time.Second {
		t.Fatalf("leader bucket TTL %v after a KeepExisting call, want the coordinator's 7s", st.TTL())
	}
	// Without KeepExisting the settings are applied (the coordinator's call).
	if s, err = EnsureStreams(ctx, js, StreamsConfig{Replicas: 1, LeaderTTL: 4 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.Leader.Status(ctx); st.TTL() != 4*time.Second {
		t.Fatalf("leader bucket TTL %v, want 4s", st.TTL())
	}
}
