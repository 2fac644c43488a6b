package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/powcoord/powcoord/internal/store"
)

// chromiumPath finds a Chromium to drive: $POWCOORD_CHROMIUM, else
// chromium or chromium-browser on PATH.
func chromiumPath() string {
	if p := os.Getenv("POWCOORD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// lineWriter is a goroutine-safe writer that hands every complete line
// to a channel as well as keeping the whole output.
type lineWriter struct {
	mu    sync.Mutex
	all   bytes.Buffer
	part  []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.part[:i]):
		default:
		}
		w.part = w.part[i+1:]
	}
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// TestDashboardInChromium runs a real demo and opens its dashboard in
// headless Chromium: the charts must hold data points, the blocks table
// must grow while the test watches, and the simulation summary must show
// both agents. A screenshot goes to $POWCOORD_ARTIFACTS (default: a
// temporary directory).
func TestDashboardInChromium(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("no chromium on PATH (CI installs Debian's chromium; or set POWCOORD_CHROMIUM): dashboard browser test skipped")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{lines: make(chan string, 16)}
	var logs bytes.Buffer
	done := make(chan error, 1)
	// Three hours of worker history before the demo starts
	// (seedWorkerHistory).
	data := t.TempDir()
	seedWorkerHistory(t, data)
	go func() {
		done <- run(ctx, []string{"demo", "--data", data, "--http", "127.0.0.1:0", "--agent-rates", "1x,2x", "--base-rate", "200k",
			"--block-time", "1s", "--block-difficulty", "1e-4", "--share-difficulty", "1e-4", "--log-level", "warn",
			"--payout", "pplns", "--pool-fee", "1%", "--pool-address", "pool"}, out, &syncWriter{w: &logs})
	}()
	var url string
	select {
	case line := <-out.lines:
		if _, rest, ok := strings.Cut(line, "dashboard at "); ok {
			url = strings.Fields(rest)[0]
		}
	case err := <-done:
		t.Fatalf("demo ended before printing its URL: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo printed no dashboard URL in 30 s")
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("dashboard URL %q, want http://127.0.0.1:PORT/", url)
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1300),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// The first Run starts the browser; it gets no timeout of its own.
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s in chromium: %v", url, err)
	}

	eval := func(js string, v any) {
		t.Helper()
		raw, err := chromedp.Run(bctx, chromedp.Evaluate[json.RawMessage](js))
		if err != nil {
			t.Fatalf("evaluating %s: %v", js, err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("evaluating %s: result %s: %v", js, raw, err)
		}
	}
	// waitFor polls js (a boolean expression) in the page until it holds.
	waitFor := func(what, js string) {
		t.Helper()
		_, err := chromedp.Run(bctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)))
		if err != nil {
			var state string
			eval(`JSON.stringify({sse: document.body.dataset.sse, rate: document.getElementById("chart-hashrate").dataset.points, blocks: document.getElementById("blocks").rows.length, conn: document.getElementById("conn").textContent})`, &state)
			t.Fatalf("dashboard: %s did not happen in 90 s (%v); page state %s; demo logs:\n%s", what, err, state, logs.String())
		}
	}
	points := func(id string) int {
		var n int
		eval(fmt.Sprintf(`Number(document.getElementById(%q).dataset.points)`, id), &n)
		return n
	}

	waitFor("the event stream opening", `document.body.dataset.sse === "open"`)
	waitFor("the hashrate chart getting 3 points", `Number(document.getElementById("chart-hashrate").dataset.points) >= 3`)
	waitFor("a first block", `document.getElementById("blocks").rows.length >= 1`)
	var rows0 int
	eval(`document.getElementById("blocks").rows.length`, &rows0)
	waitFor(fmt.Sprintf("the blocks table growing past %d rows", rows0), fmt.Sprintf(`document.getElementById("blocks").rows.length >= %d`, rows0+3))
	waitFor("the block intervals chart getting bars", `Number(document.getElementById("chart-intervals").dataset.points) >= 2`)
	waitFor("the simulation summary", `!document.getElementById("simulation").hidden && document.getElementById("sim-agents").rows.length === 2`)

	// The payout panels: the PPLNS window lists both agents with what the
	// next block pays them, and the income chart and table fill.
	waitFor("the payout window listing both agents", `document.getElementById("payout-window").rows.length === 2`)
	var nextPays string
	eval(`[...document.querySelectorAll("#payout-window tr td:nth-child(4)")].map(td => td.textContent).join(" ")`, &nextPays)
	if strings.Count(nextPays, "BTC") != 2 {
		t.Errorf("payout window's next-block amounts %q, want two BTC amounts", nextPays)
	}
	waitFor("the income panel", `!document.getElementById("income").hidden && document.getElementById("sim-income").rows.length === 2`)
	waitFor("the income chart getting points", `Number(document.getElementById("chart-income").dataset.points) >= 4`)

	// Best shares: one row per address (the agents' names, and alice and
	// bob of the seeded history), every one with an all-time best; the
	// workers table has the best columns.
	waitFor("the best shares by address", `document.getElementById("best-addresses").rows.length === 4 && [...document.querySelectorAll("#best-addresses tr td:nth-child(4)")].every(td => Number(td.textContent) > 0)`)
	var bestCols string
	eval(`[...document.querySelectorAll("#workers tr td:nth-child(10)")].map(td => td.textContent).join(" ")`, &bestCols)
	if strings.Contains(bestCols, "–") || bestCols == "" {
		t.Errorf("workers table all-time best column %q, want a difficulty for every worker", bestCols)
	}

	// Two series of at least 3 one-second samples each.
	waitFor("the difficulty chart getting 6 points", `Number(document.getElementById("chart-difficulty").dataset.points) >= 6`)
	if n := points("chart-shares"); n != 2 {
		t.Errorf("share chart has %d bars, want 2 (one per agent)", n)
	}
	var top, second int
	eval(`Number(document.querySelector("#blocks tr:nth-child(1)").dataset.height)`, &top)
	eval(`Number(document.querySelector("#blocks tr:nth-child(2)").dataset.height)`, &second)
	if top <= second {
		t.Errorf("blocks table: first row height %d, second %d; want newest first", top, second)
	}
	var finders string
	eval(`[...document.querySelectorAll("#blocks tr td:nth-child(3)")].map(td => td.textContent).join(" ")`, &finders)
	if !strings.Contains(finders, "agent") {
		t.Errorf("blocks table finders %q, want agent names", finders)
	}

	// The worker history panel lists the workers with shares in the last
	// day (the demo's agents and the seeded ones) and their addresses;
	// alice.rig1's chart has a point for each of its three seeded hours'
	// minutes and its averages; bob's 1 h average is its last hour's
	// 100 kH/s.
	waitFor("the worker history choices", `document.getElementById("history-worker").options.length === 5`)
	var choices string
	eval(`[...document.getElementById("history-worker").options].map(o => o.value).join(" ")`, &choices)
	if choices != "agent1 agent2 alice alice.rig1 bob" {
		t.Errorf("worker history choices %q, want agent1 agent2 alice alice.rig1 bob", choices)
	}
	choose := func(name string) {
		t.Helper()
		var ok bool
		eval(fmt.Sprintf(`(() => { const s = document.getElementById("history-worker"); s.value = %q; return s.dispatchEvent(new Event("change")); })()`, name), &ok)
		waitFor("the worker history chart of "+name, fmt.Sprintf(`document.getElementById("chart-worker-history").dataset.worker === %q && Number(document.getElementById("chart-worker-history").dataset.points) >= 175`, name))
	}
	row := func(n int) []string {
		var s string
		eval(fmt.Sprintf(`[...document.querySelectorAll("#history-averages tr:nth-child(%d) td")].map(td => td.textContent).join("|")`, n), &s)
		return strings.Split(s, "|")
	}
	choose("alice.rig1")
	if acc := row(2); len(acc) != 6 || acc[0] != "accepted" || acc[1] != "1" || acc[2] != "5" || acc[3] != "60" {
		t.Errorf("alice.rig1's accepted shares over 1m 5m 1h 1d 7d: %q, want 1, 5 and 60 (one a minute)", acc)
	}
	if r := row(1); len(r) != 6 || r[3] != "200 kH/s" {
		t.Errorf("alice.rig1's hashrate averages %q, want 200 kH/s over the last hour", r)
	}
	choose("bob")
	// The day's average is (60 × 100 + 120 × 400) / 1440 = 37.5 kH/s
	// read in the minute of the seeding; each minute later adds one more
	// seeded 100 kH/s minute (+0.07 kH/s): at most three are allowed.
	var day float64
	if r := row(1); len(r) != 6 || r[3] != "100 kH/s" {
		t.Errorf("bob's hashrate averages %q, want 100 kH/s over the last hour", r)
	} else if _, err := fmt.Sscanf(r[4], "%g kH/s", &day); err != nil || day < 37.5 || day > 37.5+3*100.0/1440+0.05 {
		t.Errorf("bob's day average %q, want (60 × 100 + 120 × 400) / 1440 = 37.5 kH/s (up to 37.7 when minutes passed since the seeding)", r[4])
	}
	shot, err := chromedp.Run(bctx, chromedp.Screenshot("#worker-history"))
	if err != nil {
		t.Fatalf("screenshot of the worker history: %v", err)
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("POWCOORD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot: %s (%d bytes)", path, len(png))
	if err := os.WriteFile(filepath.Join(dir, "worker-history.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("screenshot is not a PNG")
	}

	bcancel()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30 s of cancellation")
	}
	if s := out.String(); !strings.Contains(s, "simulation summary:") || !strings.Contains(s, "agent2") || !strings.Contains(s, "pplns total") {
		t.Errorf("demo output has no simulation summary:\n%s", s)
	}
}

// seedWorkerHistory records a share a minute for alice.rig1 (200 kH/s)
// and bob (400 kH/s, 100 kH/s from an hour ago on) into the store under
// dir, from three hours ago to ten minutes ahead (so that the last hour
// holds seeded minutes only while the test runs; difficulty: rate × 60 s
// / 2^32).
func seedWorkerHistory(t *testing.T, dir string) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "powcoord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Minute)
	var shares []store.Share
	for i := -10; i <= 180; i++ {
		at := now.Add(-time.Duration(i)*time.Minute + 30*time.Second)
		bob := 400e3
		if i <= 60 {
			bob = 100e3
		}
		for _, w := range []struct {
			name string
			rate float64
		}{{"alice.rig1", 200e3}, {"bob", bob}} {
			d := w.rate * 60 / math.Exp2(32)
			shares = append(shares, store.Share{Time: at, Worker: w.name, Difficulty: d, Achieved: d, Nonce: uint32(len(shares))})
		}
	}
	if err := st.RecordShares(context.Background(), shares); err != nil {
		t.Fatal(err)
	}
}

// syncWriter serializes writes from the demo's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
