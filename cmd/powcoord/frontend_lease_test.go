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

// TestFrontendLeaseTTLIsTheClusters (issue 20, defect 4): the lease TTL
// is the cluster's. A front-end started with --lease-ttl 2s on a cluster
// whose first front-end made it 1s is refused at start with an error
// naming both values, and the bucket keeps 1s (each front-end used to
// rewrite it with its own, so that the other's key expired between its
// renewals and two front-ends served one prefix). A second front-end with
// the same 1s, and a third with none (it takes the cluster's), run beside
// the first: each holds its own prefix through several renewals of every
// key, with no key expiring or changing hands.
func TestFrontendLeaseTTLIsTheClusters(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir := t.TempDir() // before commands: removed after the front-ends stopped
	start := commands(t, ctx)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", "",
		"--block-difficulty", "1000", "--block-time", "10s")
	started := func(id string, out *lockedBuffer) string {
		t.Helper()
		re := regexp.MustCompile(`frontend ` + id + `: Stratum on \S+, extranonce1 prefix (\d+)/8 bits`)
		for {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				return m[1]
			}
			select {
			case <-ctx.Done():
				t.Fatalf("front-end %s did not start; output:\n%s\n%s", id, out.String(), c.Logs())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	frontend := func(id string, ttl ...string) []string {
		return append([]string{"frontend", "--cluster", urls, "--replicas", "1", "--id", id, "--stratum", "127.0.0.1:0", "--http", "",
			"--data", dataDir + "/" + id, "--wait", "60s"}, ttl...)
	}
	outA := &lockedBuffer{}
	start(outA, frontend("feA", "--lease-ttl", "1s")...)
	prefixA := started("feA", outA)

	// A disagreeing TTL: refused at start, before it leases anything.
	outB := &lockedBuffer{}
	bctx, bcancel := context.WithCancel(ctx)
	refused := make(chan error, 1)
	go func() { refused <- run(bctx, frontend("feB", "--lease-ttl", "2s"), outB, io.Discard) }()
	re := regexp.MustCompile(`frontend feB: Stratum on`)
	var err error
wait:
	for {
		select {
		case err = <-refused:
			break wait
		case <-ctx.Done():
			bcancel()
			t.Fatalf("front-end with --lease-ttl 2s neither refused nor started")
		case <-time.After(20 * time.Millisecond):
			if re.MatchString(outB.String()) {
				bcancel()
				<-refused
				t.Fatalf("front-end with --lease-ttl 2s started on a cluster whose lease TTL is 1s; output:\n%s", outB.String())
			}
		}
	}
	bcancel()
	if err == nil || !strings.Contains(err.Error(), "--lease-ttl 2s") || !strings.Contains(err.Error(), "TTL 2s disagrees with the cluster's lease TTL 1s") {
		t.Fatalf("front-end with --lease-ttl 2s on a 1s cluster: %v; want an error naming 2s and the cluster's 1s", err)
	}

	nc, err := bus.Connect(ctx, c.URLs(), "lease-ttl-test")
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
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != time.Second {
		t.Fatalf("bucket %s TTL %v after the refused front-end, want the cluster's 1s", lease.Bucket, st.TTL())
	}

	// Watch every key from now on, then start two agreeing front-ends.
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	outC, outD := &lockedBuffer{}, &lockedBuffer{}
	start(outC, frontend("feC", "--lease-ttl", "1s")...)
	start(outD, frontend("feD")...) // no --lease-ttl: the cluster's
	prefixC, prefixD := started("feC", outC), started("feD", outD)
	if prefixA == prefixC || prefixA == prefixD || prefixC == prefixD {
		t.Fatalf("prefixes feA %s, feC %s, feD %s: want three distinct ones", prefixA, prefixC, prefixD)
	}
	holder := map[string]string{}
	for id, p := range map[string]string{"feA": prefixA, "feC": prefixC, "feD": prefixD} {
		n, _ := strconv.Atoi(p)
		holder[lease.Key(uint32(n))] = id
	}
	// Renewals come every TTL/3; wait for 5 writes of each key (feC's and
	// feD's create and 4 renewals; about 1.7 s): an expiry, a delete or
	// another holder on any of them fails.
	const renewals = 5
	seen := map[string]int{}
	for {
		done := true
		for k := range holder {
			done = done && seen[k] >= renewals
		}
		if done {
			break
		}
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			id, ok := holder[e.Key()]
			if !ok {
				t.Fatalf("key %s (%v, %q) written: no front-end leased it", e.Key(), e.Operation(), e.Value())
			}
			if e.Operation() != jetstream.KeyValuePut {
				t.Fatalf("key %s of %s: %v after %d renewals, want only renewals", e.Key(), id, e.Operation(), seen[e.Key()])
			}
			if string(e.Value()) != id {
				t.Fatalf("key %s held by %q, want %s", e.Key(), e.Value(), id)
			}
			seen[e.Key()]++
		case <-ctx.Done():
			t.Fatalf("renewals seen %v, want %d of each of %v", seen, renewals, holder)
		}
	}
	t.Logf("feA %s, feC %s, feD %s: writes of each key %v, with the cluster's TTL 1s", prefixA, prefixC, prefixD, seen)
}
