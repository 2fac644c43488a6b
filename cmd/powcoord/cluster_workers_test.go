package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/powcoord/powcoord/internal/cluster/clusterapi"
	"github.com/powcoord/powcoord/internal/clustertest"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/ledger/pgledger"
	"github.com/powcoord/powcoord/internal/web"
	"github.com/prometheus/client_golang/prometheus"
)

// TestClusterWorkersAPI: a cluster coordinator with --postgres (solo
// payouts) lists every front-end's workers from the ledger: once the
// miners stopped and the ledger writer drained, each worker's shares and
// work in GET /api/workers are exactly what the front-end that served it
// counted as accepted, and GET /api/best groups the workers' bests by
// address. Bad spans are refused with the value named.
func TestClusterWorkersAPI(t *testing.T) {
	c := clustertest.StartNATSCluster(t, 1)
	pg := clustertest.StartPostgres(t)
	dbURL := pg.CreateDatabase(t)
	urls := strings.Join(c.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	data := t.TempDir() // before commands: removed after the front-ends stopped
	start := commands(t, ctx)
	actx, stopAgents := context.WithCancel(ctx)
	startAgent := commands(t, actx)

	var why string
	waitFor := waiter(t, ctx, &why, c.Logs)
	coordHTTP := freeAddr(t)
	start(io.Discard, "ledger", "--cluster", urls, "--replicas", "1", "--postgres", dbURL)
	start(io.Discard, "coordinator", "--cluster", urls, "--replicas", "1", "--http", coordHTTP, "--postgres", dbURL,
		"--block-difficulty", "1e-3", "--block-time", "5s")
	stratumRe := regexp.MustCompile(`Stratum on (\S+),`)
	feHTTP := map[string]string{}
	feStratum := map[string]string{}
	for _, id := range []string{"feW1", "feW2"} {
		out := &lockedBuffer{}
		feHTTP[id] = freeAddr(t)
		start(out, "frontend", "--cluster", urls, "--replicas", "1", "--id", id, "--stratum", "127.0.0.1:0", "--http", feHTTP[id],
			"--data", filepath.Join(data, id), "--share-difficulty", "2e-5", "--shares-per-minute", "0", "--wait", "60s")
		waitFor("front-end "+id+" start", func() bool {
			if m := stratumRe.FindStringSubmatch(out.String()); m != nil {
				feStratum[id] = m[1]
				return true
			}
			return false
		})
	}
	servedBy := map[string]string{"alice.rig1": "feW1", "alice.rig2": "feW2", "bob": "feW2"}
	for w, fe := range servedBy {
		startAgent(io.Discard, "agent", "--url", "stratum+tcp://"+feStratum[fe], "--user", w, "--threads", "1", "--stats-interval", "1h")
	}
	// The front-ends' own per-worker counts.
	feWorkers := func() (map[string]coordinator.WorkerStats, error) {
		out := map[string]coordinator.WorkerStats{}
		for id, addr := range feHTTP {
			var st frontendStatus
			if err := getJSON("http://"+addr+"/api/status", &st); err != nil {
				return nil, err
			}
			if st.Coordinator == nil {
				return nil, fmt.Errorf("front-end %s is not serving", id)
			}
			for _, w := range st.Coordinator.Workers {
				if servedBy[w.Name] != id {
					return nil, fmt.Errorf("worker %s on %s, want on %s", w.Name, id, servedBy[w.Name])
				}
				out[w.Name] = w
			}
		}
		return out, nil
	}
	var fw map[string]coordinator.WorkerStats
	waitFor("30 accepted shares of each worker", func() bool {
		var err error
		fw, err = feWorkers()
		why = fmt.Sprintf("%+v %v", fw, err)
		if err != nil || len(fw) != 3 {
			return false
		}
		for _, w := range fw {
			if w.Accepted < 30 {
				return false
			}
		}
		return true
	})
	stopAgents()
	led, err := pgledger.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	// Until every accepted share is stored (the miners are gone, so the
	// front-ends' counts stay as they are).
	waitFor("the ledger drained", func() bool {
		var err error
		if fw, err = feWorkers(); err != nil {
			why = err.Error()
			return false
		}
		var acc uint64
		for _, w := range fw {
			acc += w.Accepted
		}
		n, err := led.ShareCount(ctx)
		why = fmt.Sprintf("stored %d of %d accepted (%v)", n, acc, err)
		return err == nil && uint64(n) == acc
	})

	var ws web.Workers
	if err := getJSON("http://"+coordHTTP+"/api/workers?minutes=60", &ws); err != nil {
		t.Fatal(err)
	}
	if ws.Minutes != 60 || len(ws.Workers) != 3 {
		t.Fatalf("/api/workers?minutes=60: %+v, want the 3 workers over 60 minutes", ws)
	}
	// Asked again at once, the answer is the one just computed (the
	// same span start), not a second scan of the ledger.
	var again web.Workers
	if err := getJSON("http://"+coordHTTP+"/api/workers?minutes=60", &again); err != nil || !again.Since.Equal(ws.Since) {
		t.Errorf("/api/workers asked again: since %s (%v), want the cached %s", again.Since, err, ws.Since)
	}
	for _, w := range ws.Workers {
		f := fw[w.Worker]
		if uint64(w.Shares) != f.Accepted || math.Abs(w.Work-f.Work) > 1e-9*f.Work {
			t.Errorf("worker %s: /api/workers %d shares, work %g; its front-end %s accepted %d, work %g", w.Worker, w.Shares, w.Work, servedBy[w.Worker], f.Accepted, f.Work)
		}
		if want := w.Work * math.Exp2(32) / ws.Seconds; ws.Seconds < 3600 || ws.Seconds >= 3660 || math.Abs(w.Hashrate-want) > 1e-9*want {
			t.Errorf("worker %s: hashrate %g over %g s, want work × 2^32 / the span's 3600 to 3660 s = %g", w.Worker, w.Hashrate, ws.Seconds, want)
		}
		// The worker's history (GET /api/workers/{name}, from the
		// ledger's per-minute rollups) holds the same shares.
		var h web.WorkerHistory
		if err := getJSON("http://"+coordHTTP+"/api/workers/"+w.Worker+"?scope=worker&minutes=60", &h); err != nil {
			t.Fatal(err)
		}
		var acc int64
		var work float64
		for _, m := range h.Series {
			acc += m.Accepted
			work += m.Work
		}
		if h.Name != w.Worker || h.Scope != web.ScopeWorker || acc != w.Shares || math.Abs(work-w.Work) > 1e-9*w.Work {
			t.Errorf("GET /api/workers/%s: %s %s, %d shares and work %g in its series; /api/workers says %d, %g", w.Worker, h.Name, h.Scope, acc, work, w.Shares, w.Work)
		}
		if d := w.LastShare.Sub(f.LastShare); d < -time.Second || d > time.Second {
			t.Errorf("worker %s: last share %s, its front-end's %s", w.Worker, w.LastShare, f.LastShare)
		}
	}
	// Spans out of range or not whole minutes are refused, naming the value.
	for _, bad := range []string{"0", "1441", "ten", "-5"} {
		resp, err := http.Get("http://" + coordHTTP + "/api/workers?minutes=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), fmt.Sprintf("minutes: %q is not a whole number of minutes from 1 to 1440", bad)) {
			t.Errorf("minutes=%s: %d %s, want 400 naming the value", bad, resp.StatusCode, body)
		}
	}

	var best coordinator.BestShares
	if err := getJSON("http://"+coordHTTP+"/api/best", &best); err != nil {
		t.Fatal(err)
	}
	if len(best.Workers) != 3 || len(best.Addresses) != 2 || best.Addresses[0].Name != "alice" || best.Addresses[1].Name != "bob" {
		t.Fatalf("/api/best: %+v, want 3 workers and the addresses alice and bob", best)
	}
	byName := map[string]coordinator.BestOf{}
	for _, b := range best.Workers {
		if b.AllTime == nil || b.Session != nil {
			t.Fatalf("/api/best worker %+v: want an all-time best and no session span", b)
		}
		byName[b.Name] = b
	}
	r1, r2 := byName["alice.rig1"].AllTime, byName["alice.rig2"].AllTime
	want := r1
	if r2.Difficulty > r1.Difficulty {
		want = r2
	}
	if got := best.Addresses[0].AllTime; got == nil || *got != *want {
		t.Errorf("address alice's all-time best %+v, want the better of its workers' %+v and %+v", got, r1, r2)
	}
	if got := best.Addresses[1].AllTime; got == nil || *got != *byName["bob"].AllTime {
		t.Errorf("address bob's all-time best %+v, want its one worker's %+v", got, byName["bob"].AllTime)
	}
	// Each agent held one session for all its shares, so its
	// front-end's session best is the ledger's all-time best.
	for w, f := range fw {
		if got := byName[w].AllTime.Difficulty; math.Abs(got-f.BestSession) > 1e-9*f.BestSession {
			t.Errorf("%s: all-time best %g in the ledger, session best %g on its front-end %s", w, got, f.BestSession, servedBy[w])
		}
	}
	// The cluster dashboard shows the same workers, in a real browser.
	chrome := chromiumPath()
	if chrome == "" {
		t.Log("no chromium on PATH: the dashboard's workers table is not checked in a browser")
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+coordHTTP+"/")); err != nil {
		t.Fatalf("opening the cluster dashboard in chromium: %v", err)
	}
	js := `Array.from(document.querySelectorAll('#workers tbody tr')).map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent).join(', ')`
	wantRows := fmt.Sprintf("alice.rig1 %d, alice.rig2 %d, bob %d", fw["alice.rig1"].Accepted, fw["alice.rig2"].Accepted, fw["bob"].Accepted)
	var got string
	for deadline := time.Now().Add(30 * time.Second); ; {
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[json.RawMessage](js))
		if err == nil && json.Unmarshal(raw, &got) == nil && got == wantRows {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster dashboard workers table: %q (%v), want %q", got, err, wantRows)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterWorkersAPIWithoutLedger: without --postgres the cluster's
// per-worker endpoints say how to get them.
func TestClusterWorkersAPIWithoutLedger(t *testing.T) {
	srv := httptest.NewServer(clusterHandler(&clusterapi.Reader{}, nil, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	for _, path := range []string{"/api/workers", "/api/best"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "start it with --postgres URL") {
			t.Errorf("GET %s without a ledger: %d %s", path, resp.StatusCode, body)
		}
	}
}
