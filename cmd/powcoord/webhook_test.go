package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/agent"
	"github.com/powcoord/powcoord/internal/store"
)

// TestWebhooks: a coordinator with two webhooks, one on a 127.0.0.1
// server that records what it gets and one on a listener that accepts
// and never answers. The agent's blocks arrive at the first as JSON,
// byte for byte what the found-block record says, and new all-time best
// shares too; the dead endpoint holds nothing up (blocks keep coming);
// /metrics counts the posts.
func TestWebhooks(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer good.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := dead.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()

	dir := filepath.Join(t.TempDir(), "data")
	f := testFlags(dir)
	f.webhooks = urlList{"http://" + dead.Addr().String() + "/hook", good.URL + "/hook?token=secret"}
	f.webhookFormat, f.webhookBestShare = "json", true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := startCoordinator(ctx, f, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{URLs: []string{"stratum+tcp://" + inst.lns.V1.Addr().String()}, User: "ann.rig", Pass: "x", Threads: 1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(actx) })
	blockBodies := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, b := range bodies {
			if strings.HasPrefix(b, `{"event":"block"`) {
				out = append(out, b)
			}
		}
		return out
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(blockBodies()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d block webhooks after 2 minutes", len(blockBodies()))
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline: real hashing
	}
	stopAgent()
	wg.Wait()
	// The posts are asynchronous: wait until the good endpoint has had
	// the alert of the store's final record and /metrics counts every
	// post it received.
	goodHost := strings.TrimPrefix(good.URL, "http://")
	var metrics string
	settled := func() bool {
		var rec float64
		for _, b := range inst.store.BestShares() {
			if b.Kind == store.BestWorker && b.Name == "ann.rig" && b.Scope == store.BestAllTime {
				rec = b.Difficulty
			}
		}
		resp, err := http.Get(inst.httpURL() + "metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(body)
		mu.Lock()
		defer mu.Unlock()
		okLine := fmt.Sprintf(`powcoord_webhook_posts_total{result="ok",webhook=%q} %d`+"\n", goodHost, len(bodies))
		return strings.Contains(metrics, okLine) && len(bodies) > 0 &&
			strings.Contains(strings.Join(bodies, ""), fmt.Sprintf(`"difficulty":%s,`, strconv.FormatFloat(rec, 'g', -1, 64)))
	}
	for deadline := time.Now().Add(20 * time.Second); !settled(); {
		if time.Now().After(deadline) {
			t.Fatalf("webhooks did not settle in 20 s; /metrics:\n%s", metrics)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline: posts are asynchronous
	}

	// Every block webhook is the found-block record, byte for byte.
	found, err := inst.store.FoundBlocks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	byHash := map[string]store.FoundBlock{}
	for _, fb := range found {
		byHash[fb.Hash.String()] = fb
	}
	for _, b := range blockBodies() {
		var ev struct{ Hash string }
		json.Unmarshal([]byte(b), &ev)
		fb, ok := byHash[ev.Hash]
		if !ok {
			t.Fatalf("webhook for block %s, which the found-block record does not hold", ev.Hash)
		}
		ts, _ := json.Marshal(fb.UpdatedAt.UTC())
		// A share on a job gone stale that meets the target is submitted
		// too; the chain refuses it, and the webhook says so.
		state := `"accepted":true`
		if fb.State != store.FoundAccepted {
			reason, _ := json.Marshal(fb.Reason)
			state = `"accepted":false,"reason":` + string(reason)
		}
		want := fmt.Sprintf(`{"event":"block","height":%d,"hash":"%s","finder":"ann.rig",%s,"time":%s}`, fb.Height, fb.Hash, state, ts)
		if b != want {
			t.Errorf("block webhook\n got %s\nwant %s", b, want)
		}
	}
	// Best-share webhooks: each higher than the one before, the last one
	// the all-time record. A share the coordinator read just before the
	// agent stopped can set a record after the wait above: wait for the
	// store's record and the last webhook to agree first.
	storeRecord := func() float64 {
		for _, b := range inst.store.BestShares() {
			if b.Kind == store.BestWorker && b.Name == "ann.rig" && b.Scope == store.BestAllTime {
				return b.Difficulty
			}
		}
		return 0
	}
	lastBest := func() float64 {
		mu.Lock()
		defer mu.Unlock()
		best := 0.0
		for _, b := range bodies {
			var ev struct {
				Event      string
				Difficulty float64
			}
			if json.Unmarshal([]byte(b), &ev) == nil && ev.Event == "best_share" {
				best = max(best, ev.Difficulty)
			}
		}
		return best
	}
	for deadline := time.Now().Add(20 * time.Second); storeRecord() != lastBest() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling with a deadline: posts are asynchronous
	}
	mu.Lock()
	var last float64
	n := 0
	for _, b := range bodies {
		if !strings.HasPrefix(b, `{"event":"best_share"`) {
			continue
		}
		var ev struct {
			Worker               string
			Difficulty, Previous float64
		}
		json.Unmarshal([]byte(b), &ev)
		if ev.Worker != "ann.rig" || ev.Previous != last || ev.Difficulty <= last {
			t.Errorf("best-share webhook %s after a record of %v", b, last)
		}
		last = ev.Difficulty
		n++
	}
	mu.Unlock()
	if n == 0 {
		t.Fatal("no best-share webhook")
	}
	if rec := storeRecord(); rec != last {
		t.Errorf("last best-share webhook %v, the store's record %v", last, rec)
	}
	// /metrics: the dead endpoint's queue is stuck behind its first
	// event, nothing delivered.
	if want := fmt.Sprintf(`powcoord_webhook_posts_total{result="ok",webhook=%q} 0`, dead.Addr().String()); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if strings.Contains(metrics, "secret") {
		t.Error("/metrics shows the webhook URL's token")
	}
	cancel()
	inst.wait()
}

// TestWorkerAlertFlagsRefused: the worker alert and history flags are
// checked before anything starts, each error naming the flag and value.
func TestWorkerAlertFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--worker-offline-after", "30s"}, "--worker-offline-after 30s: want at least 1m, or 0 for no offline alerts"},
		{[]string{"--worker-offline-after", "-5m"}, "--worker-offline-after -5m0s: want at least 1m"},
		{[]string{"--worker-drop-below", "1"}, "--worker-drop-below 1: want a fraction above 0 and below 1, or 0 for no drop alerts"},
		{[]string{"--worker-drop-below", "-0.2"}, "--worker-drop-below -0.2: want a fraction above 0 and below 1"},
		{[]string{"--worker-history-retention", "12h"}, "--worker-history-retention 12h0m0s: must be at least 24h0m0s"},
	} {
		var out, errb strings.Builder
		err := run(context.Background(), append([]string{"coordinator", "--data", t.TempDir()}, tc.args...), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("coordinator %q: error %v, want it to say %s", tc.args, err, tc.want)
		}
	}
}
