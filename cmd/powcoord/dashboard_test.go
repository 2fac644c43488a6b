package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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
	go func() {
		done <- run(ctx, []string{"demo", "--http", "127.0.0.1:0", "--agent-rates", "1x,2x", "--base-rate", "200k",
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

	// Best shares: one row per address (the agents' names), every one
	// with an all-time best; the workers table has the best columns.
	waitFor("the best shares by address", `document.getElementById("best-addresses").rows.length === 2 && [...document.querySelectorAll("#best-addresses tr td:nth-child(4)")].every(td => Number(td.textContent) > 0)`)
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
