package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestNATSClusterKillRestart(t *testing.T) {
	c := StartNATSCluster(t, 3)
	urls := c.URLs()
	if len(urls) != 3 {
		t.Fatalf("URLs() = %v, want 3", urls)
	}
	seen := map[string]bool{}
	for _, u := range urls {
		if seen[u] {
			t.Fatalf("duplicate URL %s in %v", u, urls)
		}
		seen[u] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("AccountInfo: %v", err)
	}
	if info.Streams != 0 {
		t.Fatalf("fresh cluster has %d streams", info.Streams)
	}
	// The cluster reports all three servers as peers of the meta group.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatalf("creating an R3 stream: %v", err)
	}
	before := c.Servers[1].URL()
	c.Servers[1].Kill()
	if c.Servers[1].Running() {
		t.Fatal("Running() after Kill")
	}
	c.Servers[1].Start()
	if got := c.Servers[1].URL(); got != before {
		t.Fatalf("URL after restart = %s, want %s", got, before)
	}
	nc2, err := nats.Connect(before)
	if err != nil {
		t.Fatalf("connecting to the restarted server: %v", err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	// The restarted server was T's leader or not; while T elects a new one
	// (seconds after a SIGKILL) API requests go unanswered: ask again.
	var s jetstream.Stream
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		s, err = js2.Stream(actx, "T")
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream T through the restarted server: %v\n%s", err, c.Logs())
		}
	}
	if n := len(s.CachedInfo().Cluster.Replicas) + 1; n != 3 {
		t.Fatalf("stream T has %d replicas, want 3", n)
	}
}

func TestPostgres(t *testing.T) {
	p := StartPostgres(t)
	u1 := p.CreateDatabase(t)
	u2 := p.CreateDatabase(t)
	if u1 == u2 {
		t.Fatalf("two databases with one URL %s", u1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u2)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != "powcoord_test_2" {
		t.Fatalf("current_database() = %q, want powcoord_test_2", db)
	}
}
