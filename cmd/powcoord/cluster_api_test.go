package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/bus"
	"github.com/powcoord/powcoord/internal/cluster/chainstore"
	"github.com/powcoord/powcoord/internal/cluster/clusterapi"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/prometheus/client_golang/prometheus"
)

// TestClusterAPI runs a NATS server, an active and a standby cluster
// coordinator with --http, two front-ends and three agents (one on the
// first, two on the second) mining the embedded chain. GET /api/status of
// the active one sums the front-ends' sessions (3) and lists both; once
// the agents stopped, its tip is the last block of its GET /api/blocks and
// of the chain in CHAIN, and the standby's /api/status names the active
// coordinator and reads the same tip from CHAIN. /api/blocks is the chain
// (heights from 0, each prev_hash the block before's hash, each hash the
// header's) and takes the single coordinator's ?last, ?from, ?limit and
// their errors.
func TestClusterAPI(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	data := t.TempDir() // before commands: removed after the front-ends stopped
	start := commands(t, ctx)
	actx, stopAgents := context.WithCancel(ctx)
	startAgent := commands(t, actx)

	var why string // what the last wait saw
	waitFor := waiter(t, ctx, &why, c.Logs)
	status := func(addr string) (clusterapi.Status, error) {
		var st clusterapi.Status
		err := getJSON("http://"+addr+"/api/status", &st)
		return st, err
	}
	coordID := regexp.MustCompile(`coordinator (\S+) on cluster`)
	startCoord := func() (string, string) {
		addr, out := freeAddr(t), &lockedBuffer{}
		start(out, "coordinator", "--cluster", urls, "--replicas", "1", "--http", addr, "--leader-ttl", "2s",
			"--block-difficulty", "1e-4", "--block-time", "5s")
		var id string
		waitFor("coordinator start", func() bool {
			m := coordID.FindStringSubmatch(out.String())
			if m != nil {
				id = m[1]
			}
			return m != nil
		})
		return id, addr
	}
	activeID, activeHTTP := startCoord()
	waitFor("first coordinator active", func() bool {
		st, err := status(activeHTTP)
		return err == nil && st.Role == "active" && st.TipFrom == "source"
	})
	standbyID, standbyHTTP := startCoord()

	stratumRe := regexp.MustCompile(`Stratum on (\S+),`)
	feIDs := []string{"feS1", "feS2"}
	var stratum []string
	for _, id := range feIDs {
		out := &lockedBuffer{}
		start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", id, "--stratum", "127.0.0.1:0",
			"--data", filepath.Join(data, id), "--share-difficulty", "1e-5", "--shares-per-minute", "0", "--wait", "60s")
		waitFor("front-end "+id+" start", func() bool {
			m := stratumRe.FindStringSubmatch(out.String())
			if m != nil {
				stratum = append(stratum, m[1])
			}
			return m != nil
		})
	}
	for i, fe := range []int{0, 1, 1} {
		startAgent(io.Discard, "agent", "--url", "stratum+tcp://"+stratum[fe], "--user", fmt.Sprintf("w.rig%d", i), "--threads", "1", "--stats-interval", "1h")
	}

	// While the three agents mine: 3 sessions, summed over both front-ends.
	var st clusterapi.Status
	waitFor("3 sessions on 2 front-ends, 4 blocks", func() bool {
		var err error
		st, err = status(activeHTTP)
		why = fmt.Sprintf("%+v (%v)", st, err)
		return err == nil && st.Sessions == 3 && len(st.Frontends) == 2 && st.TipHeight >= 4
	})
	if st.Frontends[0].ID != feIDs[0] || st.Frontends[0].Sessions != 1 || st.Frontends[0].Stratum != stratum[0] || st.Frontends[0].Prefix == nil ||
		st.Frontends[1].ID != feIDs[1] || st.Frontends[1].Sessions != 2 || st.Frontends[1].Stratum != stratum[1] || st.Frontends[1].Prefix == nil {
		t.Fatalf("/api/status front-ends %+v, want %s (1 session on %s) and %s (2 on %s), each with a prefix", st.Frontends, feIDs[0], stratum[0], feIDs[1], stratum[1])
	}
	if sum := st.Frontends[0].Accepted + st.Frontends[1].Accepted; st.Accepted != sum || sum == 0 {
		t.Errorf("/api/status accepted %d, front-ends' sum %d", st.Accepted, sum)
	}
	if st.Role != "active" || st.Coordinator.ID != activeID || st.Active == nil || st.Active.ID != "coordinator-"+activeID || st.Active.HTTP != activeHTTP ||
		len(st.Coordinators) != 2 || st.Source == nil || st.Source.Kind != "embedded" || st.Difficulty == nil || st.Bits == nil {
		t.Fatalf("active /api/status: role %s id %s, active %+v, %d coordinators, source %+v, difficulty %v, want active %s at %s, 2 coordinators, the embedded source and a difficulty",
			st.Role, st.Coordinator.ID, st.Active, len(st.Coordinators), st.Source, st.Difficulty, activeID, activeHTTP)
	}

	// Stop the miners; then the chain stays as it is.
	stopAgents()
	waitFor("no sessions", func() bool {
		st, err := status(activeHTTP)
		why = fmt.Sprintf("%+v (%v)", st, err)
		return err == nil && st.Sessions == 0
	})
	nc, err := bus.Connect(ctx, c.URLs(), "test-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []web.Block
	// A block found just before the agents stopped may still be on its
	// way to the chain: read until the status, /api/blocks and CHAIN agree
	// (a broken build never gets there), then check each.
	waitFor("status, /api/blocks and CHAIN agree", func() bool {
		st, err = status(activeHTTP)
		if err != nil {
			why = err.Error()
			return false
		}
		blocks = nil
		if err := getJSON("http://"+activeHTTP+"/api/blocks", &blocks); err != nil {
			why = err.Error()
			return false
		}
		inChain, err := chainstore.Reader(js).Blocks(ctx, 0, 0)
		if err != nil {
			why = err.Error()
			return false
		}
		n := len(blocks)
		why = fmt.Sprintf("status tip %d %s; /api/blocks %d blocks; CHAIN %d blocks", st.TipHeight, st.TipHash, n, len(inChain))
		if n == 0 || len(inChain) != n {
			return false
		}
		last := inChain[n-1]
		return st.TipHeight == last.Height && st.TipHash == last.Hash.String() && blocks[n-1].Hash == st.TipHash
	})
	t.Logf("agreed: %s", why)
	n := len(blocks)
	if st.Height != st.TipHeight+1 || st.PrevHash != st.TipHash || st.TipHeight != int64(n-1) {
		t.Errorf("status height %d prev %s tip %d %s, want height tip+1 on the tip, tip %d", st.Height, st.PrevHash, st.TipHeight, st.TipHash, n-1)
	}
	inChain, err := chainstore.Reader(js).Blocks(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		if b.Height != int64(i) {
			t.Fatalf("/api/blocks[%d] has height %d", i, b.Height)
		}
		if b.Hash != inChain[i].Hash.String() || b.Header != hex.EncodeToString(inChain[i].Header[:]) || b.Finder != inChain[i].Finder {
			t.Fatalf("/api/blocks[%d] %s (finder %q), CHAIN has %s (finder %q)", i, b.Hash, b.Finder, inChain[i].Hash, inChain[i].Finder)
		}
		raw, _ := hex.DecodeString(b.Header)
		if h := chainmath.DoubleSHA256(raw); h.String() != b.Hash {
			t.Fatalf("/api/blocks[%d] hash %s, its header hashes to %s", i, b.Hash, h)
		}
		if i > 0 && b.PrevHash != blocks[i-1].Hash {
			t.Fatalf("/api/blocks[%d] prev_hash %s, block %d is %s", i, b.PrevHash, i-1, blocks[i-1].Hash)
		}
		if i > 0 && !strings.HasPrefix(b.Finder, "w.rig") {
			t.Errorf("/api/blocks[%d] finder %q, want one of the agents", i, b.Finder)
		}
	}

	var last2 []web.Block
	if err := getJSON("http://"+activeHTTP+"/api/blocks?last=2", &last2); err != nil || len(last2) != 2 ||
		last2[0].Hash != blocks[n-2].Hash || last2[1].Hash != blocks[n-1].Hash || last2[1].Height != int64(n-1) {
		t.Errorf("/api/blocks?last=2: heights %v (%v), want %d and %d", heights(last2), err, n-2, n-1)
	}
	var some []web.Block
	if err := getJSON("http://"+activeHTTP+"/api/blocks?from=2&limit=2", &some); err != nil || len(some) != 2 ||
		some[0].Height != 2 || some[1].Height != 3 || some[1].Hash != blocks[3].Hash {
		t.Errorf("/api/blocks?from=2&limit=2: heights %v (%v), want 2 and 3", heights(some), err)
	}
	for _, q := range []string{"limit=x", "from=-1", "last=2.5"} {
		resp, err := http.Get("http://" + activeHTTP + "/api/blocks?" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name, val, _ := strings.Cut(q, "=")
		if want := fmt.Sprintf("%s: %q is not a non-negative integer\n", name, val); resp.StatusCode != 400 || string(body) != want {
			t.Errorf("/api/blocks?%s: %d %q, want 400 %q", q, resp.StatusCode, body, want)
		}
	}

	// The standby reads the same chain from CHAIN and names the active one.
	sb, err := status(standbyHTTP)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Role != "standby" || sb.Coordinator.ID != standbyID || sb.Active == nil || sb.Active.ID != "coordinator-"+activeID || sb.Active.HTTP != activeHTTP ||
		sb.TipFrom != "chain" || sb.TipHeight != st.TipHeight || sb.TipHash != st.TipHash || sb.Height != st.Height || sb.PrevHash != st.PrevHash ||
		sb.Source != nil || sb.ChainError != "" || len(sb.Frontends) != 2 {
		t.Errorf("standby /api/status: role %s id %s active %+v, tip %d %s from %s (error %q), %d front-ends; want standby %s naming %s at %s, tip %d %s from chain, 2 front-ends",
			sb.Role, sb.Coordinator.ID, sb.Active, sb.TipHeight, sb.TipHash, sb.TipFrom, sb.ChainError, len(sb.Frontends), standbyID, activeID, activeHTTP, st.TipHeight, st.TipHash)
	}
	// Its next-block difficulty is the active one's, read from the job.
	if sb.Difficulty == nil || sb.Bits == nil || *sb.Bits != *st.Bits || *sb.Difficulty != *st.Difficulty {
		t.Errorf("standby /api/status bits %v difficulty %v, want the active one's %s %g", sb.Bits, sb.Difficulty, *st.Bits, *st.Difficulty)
	}
	var sbBlocks []web.Block
	if err := getJSON("http://"+standbyHTTP+"/api/blocks", &sbBlocks); err != nil || len(sbBlocks) != n || sbBlocks[n-1].Hash != blocks[n-1].Hash || sbBlocks[0].Hash != blocks[0].Hash {
		t.Errorf("standby /api/blocks: %d blocks (%v), want the active one's %d", len(sbBlocks), err, n)
	}
	// /api/cluster is unchanged: the same members without the totals.
	var cl clusterapi.Cluster
	if err := getJSON("http://"+standbyHTTP+"/api/cluster", &cl); err != nil || cl.Coordinator.Role != "standby" || len(cl.Frontends) != 2 || len(cl.Coordinators) != 2 {
		t.Errorf("standby /api/cluster: %+v (%v)", cl, err)
	}
}

func heights(bs []web.Block) []int64 {
	var out []int64
	for _, b := range bs {
		out = append(out, b.Height)
	}
	return out
}

// TestClusterAPINodeBlocks: a cluster coordinator following a node
// (--node, so no CHAIN view) answers GET /api/blocks 404 saying why.
func TestClusterAPINodeBlocks(t *testing.T) {
	h := clusterHandler(&clusterapi.Reader{}, nil, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/blocks?last=2", nil))
	if want := "GET /api/blocks: this cluster follows a node (--node) and stores no chain of its own; ask the node for its blocks\n"; rec.Code != 404 || rec.Body.String() != want {
		t.Fatalf("/api/blocks with --node: %d %q, want 404 %q", rec.Code, rec.Body.String(), want)
	}
}

// waiter returns a wait that polls ok every 50 ms until it holds, failing
// the test when ctx ends with what, *why (what ok last saw; reset at each
// wait) and the logs.
func waiter(t *testing.T, ctx context.Context, why *string, logs func() string) func(what string, ok func() bool) {
	return func(what string, ok func() bool) {
		t.Helper()
		*why = ""
		for !ok() {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: timed out; last seen: %s\n%s", what, *why, logs())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
