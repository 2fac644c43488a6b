package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
)

func TestLedgerBadFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"", "--cluster is required"},
		{"--cluster http://h:1 --postgres postgres://x@h/db", `--cluster "http://h:1": bus: NATS server URL "http://h:1": scheme "http"`},
		{"--cluster nats://h:1", "--postgres is required"},
		{"--cluster nats://h:1 --postgres postgres://x@h/db --batch 0", "--batch 0: want 1 to 4096"},
		{"--cluster nats://h:1 --postgres postgres://x@h/db --transactions 65", "--transactions 65: want 1 to 64"},
		{"--cluster nats://h:1 --postgres postgres://x@h/db --log-level loud", `"loud"`},
		{"--cluster nats://h:1 --postgres postgres://x@h/db extra", `unexpected argument "extra"`},
		// Unreachable PostgreSQL: named, without its password.
		{"--cluster nats://127.0.0.1:1 --postgres postgres://pool:s3cret@127.0.0.1:1/powcoord --wait 2s", "postgres://pool:xxxxx@127.0.0.1:1/powcoord"},
		{"--cluster nats://127.0.0.1:1 --postgres host=127.0.0.1_port=1_password=s3cret --wait 2s", "password=xxxxx"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out, errb bytes.Buffer
		args := strings.Fields(tc.args)
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "_", " ")
		}
		err := run(ctx, append([]string{"ledger"}, args...), &out, &errb)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ledger %s: error %v, want it to say %s (and no password)", tc.args, err, tc.want)
		}
	}
}

func TestLedgerHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"ledger", "--help"}, &out, &errb); err == nil {
		t.Fatal("--help returned nil, want flag.ErrHelp")
	}
	help := errb.String()
	for _, want := range []string{"Examples:", "powcoord ledger --cluster nats://", "-cluster", "-postgres", "-http", "-durable", "-batch", "-replicas", "-wait", "-log-level", "powcoord_ledger_lag_messages"} {
		if !strings.Contains(help, want) {
			t.Errorf("ledger --help does not mention %q:\n%s", want, help)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLedgerCommand runs `powcoord ledger` on a 3-server cluster and a
// real PostgreSQL: shares recorded through a sharelog end up in the
// database exactly once, and /metrics shows the lag falling to 0.
func TestLedgerCommand(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Unreachable cluster, reachable database: the error names the URL.
	var eo, ee bytes.Buffer
	err := run(ctx, []string{"ledger", "--cluster", "nats://127.0.0.1:1", "--postgres", dbURL, "--wait", "2s"}, &eo, &ee)
	if err == nil || !strings.Contains(err.Error(), `--cluster "nats://127.0.0.1:1": bus: connecting to NATS at nats://127.0.0.1:1`) {
		t.Fatalf("unreachable cluster: %v", err)
	}

	nc, err := bus.Connect(ctx, c.URLs(), "ledger-cmd-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	l, err := sharelog.New(js, sharelog.Config{Frontend: "fe"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		sh := ledger.Share{Time: time.Unix(1700000000, 0), Worker: "w.rig", JobID: "1", NTime: 1, Nonce: uint32(i), Difficulty: 1, Achieved: 2, Hash: sha256.Sum256(b[:])}
		// Every share twice: the ledger must hold each once.
		for range 2 {
			if err := l.RecordShare(ctx, sh); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.Close()

	rctx, stop := context.WithCancel(ctx)
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(rctx, []string{"ledger", "--cluster", strings.Join(c.URLs(), ","), "--postgres", dbURL, "--http", "127.0.0.1:0"}, out, io.Discard)
	}()
	led, err := pgledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	addr := regexp.MustCompile(`ledger metrics on (http://\S+/metrics)`)
	var lagZero bool
	for !lagZero {
		select {
		case err := <-done:
			t.Fatalf("ledger exited early: %v", err)
		case <-ctx.Done():
			t.Fatalf("shares not stored in time; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
		m := addr.FindStringSubmatch(out.String())
		if m == nil {
			continue
		}
		resp, err := http.Get(m[1])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lagZero = strings.Contains(string(body), "\npowcoord_ledger_lag_messages 0\n")
	}
	if got, err := led.ShareCount(ctx); err != nil || got != n {
		t.Fatalf("ledger holds %d shares (%v), want %d", got, err, n)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ledger exited with %v", err)
	}
}
