package web_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/powcoord/powcoord/internal/chainmath"
	"github.com/powcoord/powcoord/internal/coordinator"
	"github.com/powcoord/powcoord/internal/sim"
	"github.com/powcoord/powcoord/internal/stratum"
	"github.com/powcoord/powcoord/internal/web"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readEvents parses the stream into ch until it ends.
func readEvents(body io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		}
	}
}

func nextEvent(t *testing.T, ch <-chan sseEvent, name string) sseEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended while waiting for %q", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event in 30 s", name)
		}
	}
}

// TestEventsAndHistory mines a block over raw Stratum while watching
// /api/events, and checks the block event against the block's own hash,
// then the history the charts load first.
func TestEventsAndHistory(t *testing.T) {
	const blockDiff = 2e-5
	p := startPool(t, blockDiff, 1e-6, 50*time.Millisecond)
	resp, err := http.Get(p.http.URL + "/api/events")
	mustf(t, err, "GET /api/events")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	events := make(chan sseEvent, 64)
	go readEvents(resp.Body, events)

	var first struct {
		Status coordinator.Status `json:"status"`
		Sample web.Sample         `json:"sample"`
	}
	mustf(t, json.Unmarshal([]byte(nextEvent(t, events, "status").data), &first), "decoding a status event")
	height := first.Status.Height
	if height < 1 || first.Sample.Height != height || first.Sample.Difficulty != first.Status.Difficulty {
		t.Fatalf("status event: height %d sample %+v", height, first.Sample)
	}

	const user = "finder.rig"
	m := dialMiner(t, p.stratum, user)
	nbits, _ := stratum.ParseHex32("nbits", m.job.NBits)
	bt, err := chainmath.CompactToBig(nbits)
	mustf(t, err, "nbits %s", m.job.NBits)
	blockTgt := chainmath.TargetFromBig(bt)
	var found chainmath.Hash
	var sh share
	for n := uint32(0); ; n++ {
		if n == 1<<26 {
			t.Fatal("no block in 2^26 nonces")
		}
		h := m.header(en2(m, 1), n)
		found = h.Hash()
		if blockTgt.Meets(&found) {
			sh = share{en2: en2(m, 1), nonce: n}
			break
		}
	}
	if _, e := m.callErr("mining.submit", m.params(user, sh)); e != nil {
		t.Fatalf("block share: %v", e)
	}
	var b web.Block
	mustf(t, json.Unmarshal([]byte(nextEvent(t, events, "block").data), &b), "decoding a block event")
	if b.Height != height || b.Hash != found.String() || b.Finder != user {
		t.Errorf("block event: height %d hash %s finder %q, want %d %s %q", b.Height, b.Hash, b.Finder, height, found.String(), user)
	}
	if b.Interval == nil {
		t.Error("block event without the interval since its parent")
	}
	// The next status event is already on the new tip.
	var after struct {
		Status coordinator.Status `json:"status"`
	}
	for after.Status.Height != height+1 {
		mustf(t, json.Unmarshal([]byte(nextEvent(t, events, "status").data), &after), "decoding a status event")
	}
	if after.Status.BlocksFound != 1 {
		t.Errorf("blocks_found = %d, want 1", after.Status.BlocksFound)
	}

	fams := scrape(t, p.http.URL+"/metrics")
	blocks := map[string]float64{}
	if f := fams["powcoord_blocks_total"]; f != nil {
		for _, mt := range f.Metric {
			blocks[label(mt, "result")] = mt.GetCounter().GetValue()
		}
	}
	if blocks["accepted"] != 1 || blocks["rejected"] != 0 {
		t.Errorf("powcoord_blocks_total = %v, want 1 accepted and none rejected", blocks)
	}

	hr, err := http.Get(p.http.URL + "/api/history")
	mustf(t, err, "GET /api/history")
	defer hr.Body.Close()
	var h web.History
	mustf(t, json.NewDecoder(hr.Body).Decode(&h), "decoding /api/history")
	if h.IntervalSeconds != 0.05 || h.TargetBlockSeconds != 2 {
		t.Errorf("history interval %v target %v, want 0.05 and 2", h.IntervalSeconds, h.TargetBlockSeconds)
	}
	if len(h.Samples) < 2 {
		t.Fatalf("history has %d samples, want several", len(h.Samples))
	}
	for i := 1; i < len(h.Samples); i++ {
		if h.Samples[i].Time <= h.Samples[i-1].Time {
			t.Fatalf("history samples %d and %d out of order: %d, %d", i-1, i, h.Samples[i-1].Time, h.Samples[i].Time)
		}
	}
	if last := h.Samples[len(h.Samples)-1]; last.Height != height+1 {
		t.Errorf("newest sample at height %d, want %d", last.Height, height+1)
	}
	if _, ok := h.Samples[len(h.Samples)-1].Workers[user]; !ok {
		t.Errorf("newest sample has no hashrate for %q: %v", user, h.Samples[len(h.Samples)-1].Workers)
	}
}

// TestDashboardFiles checks that / serves the embedded page and its
// scripts.
func TestDashboardFiles(t *testing.T) {
	p := startPool(t, 1e3, 1e-3, time.Hour)
	for path, want := range map[string]string{
		"/":               `id="chart-hashrate"`,
		"/app.js":         `new EventSource("/api/events")`,
		"/charts.js":      "data-points",
		"/style.css":      "canvas",
		"/api/simulation": "null",
	} {
		resp, err := http.Get(p.http.URL + path)
		mustf(t, err, "GET %s", path)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, body without %q", path, resp.Status, want)
		}
	}
	resp, err := http.Get(p.http.URL + "/nope.js")
	mustf(t, err, "GET /nope.js")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope.js: %s, want 404", resp.Status)
	}
	p.web.SetSimulation(func() sim.Summary { return sim.Summary{Blocks: 7, MeanInterval: 9.5} })
	resp, err = http.Get(p.http.URL + "/api/simulation")
	mustf(t, err, "GET /api/simulation")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"blocks": 7`) || !strings.Contains(string(body), `"mean_interval_seconds": 9.5`) {
		t.Errorf("/api/simulation = %s, want the registered summary (blocks 7, mean interval 9.5)", body)
	}
}
