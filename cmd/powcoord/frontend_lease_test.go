package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/lease"
	"github.com/powcoord/powcoord/internal/clustertest"
)

// stratumSubscribe dials addr, sends mining.subscribe and returns the
// connection, its reader and the extranonce1 the server handed out.
func stratumSubscribe(addr string) (net.Conn, *bufio.Reader, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, "", err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, `{"id":1,"method":"mining.subscribe","params":["lease-test/1"]}`+"\n"); err != nil {
		conn.Close()
		return nil, nil, "", err
	}
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			conn.Close()
			return nil, nil, "", fmt.Errorf("reading the subscribe answer: %w", err)
		}
		var msg struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			conn.Close()
			return nil, nil, "", fmt.Errorf("answer %q: %w", line, err)
		}
		if msg.ID == nil || *msg.ID != 1 {
			continue // a notification
		}
		var res []json.RawMessage
		var en1 string
		if err := json.Unmarshal(msg.Result, &res); err != nil || len(res) < 2 || json.Unmarshal(res[1], &en1) != nil {
			conn.Close()
			return nil, nil, "", fmt.Errorf("subscribe answer %q: want [subscriptions, extranonce1, size]", line)
		}
		conn.SetDeadline(time.Time{})
		return conn, r, en1, nil
	}
}

type feStatus struct {
	code  int
	Lease *struct {
		Prefix   uint32
		Bits     int
		Key      string
		Revision uint64
	}
}

func getFEStatus(addr string) (feStatus, error) {
	var st feStatus
	resp, err := http.Get("http://" + addr + "/api/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	st.code = resp.StatusCode
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestFrontendLeaseLost runs a cluster coordinator and one front-end on a
// NATS server, connects a raw Stratum client, then deletes the
// front-end's prefix key (with the revision it holds) behind its back and
// claims it for another holder: the front-end's next renewal is refused,
// it closes the session, leases the next free prefix and serves miners
// anew with extranonce1 values starting with it; /api/status shows the new lease (or 503 in
// between) and /metrics counts 2 leases.
func TestFrontendLeaseLost(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir := t.TempDir() // before commands: removed after the front-end stopped
	start := commands(t, ctx)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", freeAddr(t),
		"--block-difficulty", "1000", "--block-time", "10s")
	feHTTP := freeAddr(t)
	out := &lockedBuffer{}
	start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", "feL", "--stratum", "127.0.0.1:0", "--http", feHTTP, "--data", dataDir,
		"--share-difficulty", "0.0001", "--shares-per-minute", "0", "--wait", "60s")
	re := regexp.MustCompile(`frontend feL: Stratum on (\S+), extranonce1 prefix (\d+)/8 bits`)
	var stratum string
	var prefix int
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			stratum = m[1]
			prefix, _ = strconv.Atoi(m[2])
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("front-end did not start; output:\n%s\n%s", out.String(), c.Logs())
		case <-time.After(20 * time.Millisecond):
		}
	}

	st, err := getFEStatus(feHTTP)
	if err != nil || st.code != http.StatusOK || st.Lease == nil || st.Lease.Prefix != uint32(prefix) || st.Lease.Bits != lease.Bits || st.Lease.Key != lease.Key(uint32(prefix)) {
		t.Fatalf("/api/status before: %d %+v (%v), want 200 with lease of prefix %d", st.code, st.Lease, err, prefix)
	}
	oldRev := st.Lease.Revision

	conn, r, en1, err := stratumSubscribe(stratum)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if want := fmt.Sprintf("%02x", prefix); !strings.HasPrefix(en1, want) {
		t.Fatalf("extranonce1 %s: want prefix %s", en1, want)
	}

	// Take the key away with the revision the front-end holds.
	nc, err := bus.Connect(ctx, c.URLs(), "lease-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, lease.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, lease.Key(uint32(prefix)))
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value()) != "feL" {
		t.Fatalf("key %s holds %q, want feL", e.Key(), e.Value())
	}
	if err := kv.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision())); err != nil {
		t.Fatalf("deleting %s at revision %d: %v", e.Key(), e.Revision(), err)
	}
	deleted := time.Now()
	// And hold the prefix as someone else, so the front-end must lease
	// the next one.
	if _, err := kv.Create(ctx, e.Key(), []byte("squatter")); err != nil {
		t.Fatalf("claiming %s after the delete: %v", e.Key(), err)
	}

	// The session is closed: the client reads EOF (notifications first).
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, err := r.ReadBytes('\n'); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("session still open 30 s after the lease key was deleted")
			}
			break
		}
	}
	t.Logf("session closed %v after the key was deleted", time.Since(deleted).Round(time.Millisecond))

	// A new lease, and a new session with its prefix.
	var newPrefix uint32
	saw503 := false
	for {
		st, err := getFEStatus(feHTTP)
		if err == nil && st.code == http.StatusServiceUnavailable && st.Lease == nil {
			saw503 = true
		} else if err == nil && st.code == http.StatusOK && st.Lease != nil && st.Lease.Revision > oldRev {
			newPrefix = st.Lease.Prefix
			if st.Lease.Key != lease.Key(newPrefix) || st.Lease.Bits != lease.Bits {
				t.Fatalf("/api/status new lease %+v", st.Lease)
			}
			break
		} else if err != nil {
			t.Fatalf("/api/status: %d %+v %v", st.code, st.Lease, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/api/status never showed a new lease; last %d %+v %v; output:\n%s", st.code, st.Lease, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	var conn2 net.Conn
	for {
		conn2, _, en1, err = stratumSubscribe(stratum)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no new session after the new lease: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer conn2.Close()
	if want := fmt.Sprintf("%02x", newPrefix); !strings.HasPrefix(en1, want) {
		t.Fatalf("extranonce1 %s after the new lease of prefix %d: want prefix %s", en1, newPrefix, want)
	}
	if newPrefix != uint32(prefix)+1 {
		t.Fatalf("new lease of prefix %d, want %d (the lowest free one)", newPrefix, prefix+1)
	}
	if e, err := kv.Get(ctx, lease.Key(newPrefix)); err != nil || string(e.Value()) != "feL" {
		t.Fatalf("key %s after the new lease: %v %v, want feL", lease.Key(newPrefix), e, err)
	}

	resp, err := http.Get("http://" + feHTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\npowcoord_frontend_leases_total 2\n", "\npowcoord_frontend_lease_held 1\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", strings.TrimSpace(want), grepLines(string(body), "powcoord_frontend_"))
		}
	}
	t.Logf("prefix %d (revision %d) lost; leased prefix %d again, new extranonce1 %s; 503 seen in between: %v", prefix, oldRev, newPrefix, en1, saw503)
}

func grepLines(s, sub string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			b.WriteString(l)
		}
	}
	return b.String()
}
