package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/lease"
	"github.com/powcoord/powcoord/internal/cluster/sharelog"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// commands runs powcoord commands in this process (run, as main does)
// until ctx ends or the test is over; then it stops them and fails the
// test if one returned an error.
func commands(t *testing.T, ctx context.Context) func(stdout io.Writer, args ...string) {
	rctx, stop := context.WithCancel(ctx)
	var exits []chan error
	t.Cleanup(func() {
		stop()
		for _, d := range exits {
			if err := <-d; err != nil {
				t.Errorf("exit: %v", err)
			}
		}
	})
	return func(stdout io.Writer, args ...string) {
		done := make(chan error, 1)
		exits = append(exits, done)
		go func() { done <- run(rctx, args, stdout, io.Discard) }()
	}
}

// TestClusterFrontends runs a 3-server NATS cluster, one cluster
// coordinator, two front-ends and an agent on each, all in this process:
// the front-ends lease distinct extranonce1 prefixes, every share in
// SHARES carries its front-end's prefix and no hash appears twice, and
// GET /api/cluster lists both front-ends with one session each; then a
// ledger writer started on the cluster moves the shares into PostgreSQL
// and GET /api/cluster lists its heartbeat.
func TestClusterFrontends(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 3)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir := t.TempDir() // before commands: removed after the front-ends stopped
	startCmd := commands(t, ctx)
	start := func(_ string, out io.Writer, args ...string) { startCmd(out, args...) }

	coordHTTP := freeAddr(t)
	start("coordinator", io.Discard, "coordinator", "--cluster", urls, "--http", coordHTTP, "--leader-ttl", "2s", "--wait", "60s",
		"--block-difficulty", "1000", "--block-time", "10s")
	type fe struct {
		id      string
		out     *lockedBuffer
		stratum string
		prefix  int
	}
	fes := []*fe{{id: "feA", out: &lockedBuffer{}}, {id: "feB", out: &lockedBuffer{}}}
	for _, f := range fes {
		start(f.id, f.out, "frontend", "--cluster", urls, "--id", f.id, "--stratum", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", filepath.Join(dataDir, f.id),
			"--share-difficulty", "0.0001", "--shares-per-minute", "0", "--wait", "60s")
	}
	re := regexp.MustCompile(`frontend (\S+): Stratum on (\S+), extranonce1 prefix (\d+)/8 bits`)
	for _, f := range fes {
		for {
			if m := re.FindStringSubmatch(f.out.String()); m != nil {
				f.stratum = m[2]
				f.prefix, _ = strconv.Atoi(m[3])
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("front-end %s did not start; output:\n%s\n%s", f.id, f.out.String(), c.Logs())
			case <-time.After(20 * time.Millisecond):
			}
		}
		start("agent-"+f.id, io.Discard, "agent", "--url", "stratum+tcp://"+f.stratum, "--user", "w."+f.id, "--threads", "1", "--stats-interval", "1h")
	}
	if fes[0].prefix == fes[1].prefix {
		t.Fatalf("both front-ends leased prefix %d", fes[0].prefix)
	}

	// Both front-ends listed with one session each, and shares from both.
	var st struct {
		Coordinator  struct{ Role string }
		Coordinators []struct{ ID, State string }
		Frontends    []struct {
			ID       string
			Stratum  string
			Sessions int
			Accepted uint64
			Prefix   *uint32
		}
	}
	for {
		ok := getJSON("http://"+coordHTTP+"/api/cluster", &st) == nil && len(st.Frontends) == 2
		for _, f := range st.Frontends {
			ok = ok && f.Sessions == 1 && f.Accepted >= 5 && f.Prefix != nil
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/api/cluster never listed both front-ends with 1 session and 5 shares: %+v", st)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for i, f := range st.Frontends {
		want := fes[i]
		if f.ID != want.id || f.Stratum != want.stratum || int(*f.Prefix) != want.prefix {
			t.Errorf("/api/cluster front-end %d: id %s stratum %s prefix %d, want %s %s %d", i, f.ID, f.Stratum, *f.Prefix, want.id, want.stratum, want.prefix)
		}
	}
	if st.Coordinator.Role != "active" || len(st.Coordinators) != 1 || st.Coordinators[0].State != "active" {
		t.Errorf("/api/cluster coordinators: %+v (this one %s), want one, active", st.Coordinators, st.Coordinator.Role)
	}
	// The cluster dashboard page reads that API.
	if resp, err := http.Get("http://" + coordHTTP + "/"); err != nil {
		t.Error(err)
	} else {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(page, []byte("<h2>Front-ends</h2>")) || !bytes.Contains(page, []byte("fetch('api/status')")) {
			t.Errorf("cluster dashboard: %d, %d bytes", resp.StatusCode, len(page))
		}
	}

	// Every share in SHARES: no hash twice, extranonce1 from its front-end's prefix.
	nc, err := bus.Connect(ctx, c.URLs(), "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, bus.StreamShares)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	per := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("SHARES message %d: %v", seq, err)
		}
		shares, err := sharelog.DecodeShares(m.Data)
		if err != nil {
			t.Fatalf("SHARES message %d: %v", seq, err)
		}
		feID := strings.TrimPrefix(m.Subject, bus.SubjectShares+".")
		for _, sh := range shares {
			h := sh.Hash.String()
			if seen[h] {
				t.Fatalf("share hash %s twice in SHARES", h)
			}
			seen[h] = true
			per[feID]++
			for _, f := range fes {
				if f.id == feID && !strings.HasPrefix(sh.Extranonce1, fmt.Sprintf("%02x", f.prefix)) {
					t.Fatalf("share of %s with extranonce1 %s: want prefix %02x (%d/%d bits)", feID, sh.Extranonce1, f.prefix, f.prefix, lease.Bits)
				}
			}
		}
	}
	if per["feA"] < 5 || per["feB"] < 5 {
		t.Fatalf("shares per front-end in SHARES: %v, want at least 5 from each", per)
	}
	t.Logf("prefixes feA %d, feB %d; SHARES holds %d distinct shares: %v", fes[0].prefix, fes[1].prefix, len(seen), per)

	// A ledger writer (started last: it consumes SHARES, read above)
	// moves them into PostgreSQL and is listed by its heartbeat.
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	ledgerOut := &lockedBuffer{}
	start("ledger", ledgerOut, "ledger", "--cluster", urls, "--postgres", dbURL, "--http", "127.0.0.1:0")
	led, err := pgledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	ledgerHTTP := regexp.MustCompile(`ledger metrics on http://(\S+)/metrics`)
	var cl struct {
		Ledgers []struct {
			ID, Role, HTTP string
			Lag            *uint64 `json:"lag_messages"`
		}
	}
	var stored int64
	for {
		m := ledgerHTTP.FindStringSubmatch(ledgerOut.String())
		stored, _ = led.ShareCount(ctx)
		ok := m != nil && getJSON("http://"+coordHTTP+"/api/cluster", &cl) == nil && len(cl.Ledgers) == 1 && stored >= int64(len(seen))
		if ok {
			l := cl.Ledgers[0]
			if l.Role != "ledger" || !strings.HasPrefix(l.ID, "ledger-") || l.HTTP != m[1] || l.Lag == nil {
				t.Fatalf("/api/cluster ledger: %+v (lag %v), want role ledger, id ledger-..., http %s, a lag", l, l.Lag, m[1])
			}
			t.Logf("/api/cluster lists ledger %s (lag %d); PostgreSQL holds %d shares", l.ID, *l.Lag, stored)
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ledger not listed in /api/cluster, or PostgreSQL holds %d of the %d shares: %+v; ledger output:\n%s", stored, len(seen), cl, ledgerOut.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
