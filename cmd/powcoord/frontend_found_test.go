package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/cluster/clusterapi"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/store"
	"github.com/powcoord/powcoord/internal/stratum"
)

// A block found through a front-end while it is cut off from NATS is not
// lost: it waits in the front-end's found-block record through the lease
// it loses meanwhile, and reaches the chain once the cluster is back.
func TestFrontendKeepsBlockFoundWhileCutOff(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	data := t.TempDir() // before commands: removed after the front-end stopped
	start := commands(t, ctx)
	coordHTTP := freeAddr(t)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", coordHTTP,
		"--block-difficulty", "1e-6", "--block-time", "1h")
	out := &lockedBuffer{}
	start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", "feF", "--stratum", "127.0.0.1:0",
		"--data", data, "--lease-ttl", "2s", "--share-difficulty", "1e-7", "--shares-per-minute", "0", "--wait", "60s")
	re := regexp.MustCompile(`frontend feF: Stratum on (\S+),`)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("front-end did not start; output:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tip := func() (int64, string) {
		resp, err := http.Get("http://" + coordHTTP + "/api/cluster")
		if err != nil {
			return -1, ""
		}
		defer resp.Body.Close()
		var st clusterapi.Cluster
		if json.NewDecoder(resp.Body).Decode(&st) != nil || st.Source == nil {
			return -1, ""
		}
		return st.Source.TipHeight, st.Source.TipHash
	}
	startHeight, _ := tip()

	conn, r, en1Hex, err := stratumSubscribe(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, `{"id":2,"method":"mining.authorize","params":["finder.rig","x"]}`+"\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var job *stratum.Job
	for job == nil {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("waiting for a notify: %v", err)
		}
		var m struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if json.Unmarshal(line, &m) == nil && m.Method == "mining.notify" {
			if job, err = stratum.ParseJob(m.Params); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Find a block on it (difficulty 1e-6: a few thousand hashes).
	en1, _ := hex.DecodeString(en1Hex)
	en2 := []byte{0, 0, 0, 1}
	target, err := job.BlockTarget()
	if err != nil {
		t.Fatal(err)
	}
	var nonce uint32
	var hash chainmath.Hash
	for ; ; nonce++ {
		h := job.Header(en1, en2, job.NTime, nonce, 0, 0)
		hash = h.Hash()
		if target.Meets(&hash) {
			break
		}
	}

	// Cut the front-end off: the only NATS server dies. Then send the
	// block.
	c.Servers[0].Kill()
	fmt.Fprintf(conn, `{"id":3,"method":"mining.submit","params":["finder.rig","%s","%s","%08x","%08x"]}`+"\n",
		job.ID, hex.EncodeToString(en2), job.NTime, nonce)
	// The answer is false (the share cannot be made durable) or the
	// session closes when the lease runs out; either way the block must
	// be in the front-end's record as pending.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := r.ReadBytes('\n')
		if err != nil || strings.Contains(string(line), `"id":3`) {
			t.Logf("submit while cut off: %q %v", strings.TrimSpace(string(line)), err)
			break
		}
	}
	spool, err := store.Open(filepath.Join(data, "found-blocks.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	found, err := spool.FoundBlocks(ctx, "")
	if err != nil || len(found) != 1 || found[0].Hash != hash || found[0].State != store.FoundPending {
		t.Fatalf("front-end's found-block record while cut off: %+v, %v; want block %s pending", found, err, hash)
	}
	// Wait until the lease is surely gone (2 s TTL), then bring NATS
	// back: the front-end leases again and offers the pending block.
	time.Sleep(3 * time.Second) // past the 2 s lease TTL: the old term has ended
	c.Servers[0].Start()
	for {
		h, th := tip()
		if th == hash.String() {
			if h != startHeight+1 {
				t.Fatalf("our block is the tip at height %d, want %d", h, startHeight+1)
			}
			break
		}
		select {
		case <-ctx.Done():
			f, _ := spool.FoundBlocks(context.Background(), "")
			t.Fatalf("block %s never reached the chain (tip %d %s); record %+v; output:\n%s", hash, h, th, f, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		found, err = spool.FoundBlocks(ctx, store.FoundAccepted)
		if err == nil && len(found) == 1 && found[0].Hash == hash {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("found-block record after the block reached the chain: %+v %v", found, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("block %s found while cut off reached the chain at height %d after NATS came back", hash, startHeight+1)
}
